/* Kernel profiles against real kernels (tests/test_vm_profiles.py): a subprogram that tail-calls
 * may only be reached with less than 256 bytes of stack in the frames above it, the frames
 * rounded as the kernel rounds them (32 bytes before 6.9, 16 with the JIT since). XDP frames
 * get no private stacks, so the rounding alone decides. */
#include "obj_bpf.h"

struct xdp_md { u32 data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex; };

static long (*bpf_xdp_load_bytes)(void *ctx, u32 off, void *buf, u32 len) = (void *)189;

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 1);
    __uint(key_size, 4);
    __uint(value_size, 4);
} jumps SEC(".maps");

/* The tail-calling subprogram: 8 bytes of its own, not counted against the 256. */
static __noinline int tailer(struct xdp_md *ctx)
{
    u8 buf[8];
    if (bpf_xdp_load_bytes(ctx, 0, buf, sizeof(buf)))
        return 0;
    bpf_tail_call(ctx, &jumps, 0);
    return buf[0];
}

/* An entry whose frame is exactly N bytes above the tail-calling subprogram. */
#define TENTRY(name, n)                                                                    \
    SEC("xdp") int name(struct xdp_md *ctx)                                                \
    {                                                                                      \
        u8 buf[n];                                                                         \
        if (bpf_xdp_load_bytes(ctx, 0, buf, sizeof(buf)))                                  \
            return 2;                                                                      \
        return 2 + ((buf[0] + tailer(ctx)) & 0);                                           \
    }
/* 216: 224 rounded to 32 or 16, below 256 everywhere */
TENTRY(xdp_tail_216, 216)
/* 232: 256 rounded to 32 (rejected before 6.9), 240 rounded to 16 (loads) */
TENTRY(xdp_tail_232, 232)
/* 264: 288 or 272, at least 256 everywhere */
TENTRY(xdp_tail_264, 264)

char LICENSE[] SEC("license") = "GPL";
