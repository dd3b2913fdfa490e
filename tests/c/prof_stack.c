/* Kernel profile tests (tests/test_profiles.py): call chains near the 512-byte stack limit,
 * where kernels differ: frame rounding (32, or 16 with the JIT since 6.9) and the x86-64 JIT's
 * private stacks for tracing program types (6.13), which a tail call turns off. */
#include "obj_bpf.h"

struct xdp_md { u32 data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex; };

static long (*bpf_xdp_load_bytes)(void *ctx, u32 off, void *buf, u32 len) = (void *)189;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *src) = (void *)113;

struct {
    __uint(type, 3); /* BPF_MAP_TYPE_PROG_ARRAY */
    __uint(max_entries, 1);
    __uint(key_size, 4);
    __uint(value_size, 4);
} jumps SEC(".maps");

/* An XDP frame of exactly N bytes: a buffer only reached through a helper argument. */
#define XFRAME(name, n)                                                                    \
    static __noinline int name(struct xdp_md *ctx)                                         \
    {                                                                                      \
        u8 buf[n];                                                                         \
        if (bpf_xdp_load_bytes(ctx, 0, buf, sizeof(buf)))                                  \
            return 0;                                                                      \
        return buf[0];                                                                     \
    }
XFRAME(x456, 456)
XFRAME(x472, 472)

/* XDP entries with a 40-byte frame: 40 + 456 is 48 + 464 = 512 with 16-byte rounding (loads),
 * 64 + 480 = 544 with 32 (rejected); 40 + 472 is 48 + 480 = 528 with 16 (rejected). */
#define XENTRY(name, callee)                                                               \
    SEC("xdp") int name(struct xdp_md *ctx)                                                \
    {                                                                                      \
        u8 buf[40];                                                                        \
        if (bpf_xdp_load_bytes(ctx, 0, buf, sizeof(buf)))                                  \
            return 2;                                                                      \
        return 2 + ((buf[0] + callee(ctx)) & 0);                                           \
    }
XENTRY(xdp_40_456, x456)
XENTRY(xdp_40_472, x472)

/* Two nested 304-byte frames: 608 bytes on one stack. */
static __noinline int t304_inner(void *src)
{
    u8 buf[304];
    bpf_probe_read_kernel(buf, sizeof(buf), src);
    return buf[0];
}

static __noinline int t304(void *src)
{
    u8 buf[304];
    bpf_probe_read_kernel(buf, sizeof(buf), src);
    return buf[0] + t304_inner(src);
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int tp_304_304(void *ctx)
{
    return t304(ctx) & 0;
}

SEC("kprobe/do_nanosleep")
int kprobe_304_304_tail(void *ctx)
{
    bpf_tail_call(ctx, &jumps, 0);
    return t304(ctx) & 0;
}

static __noinline int x304_inner(struct xdp_md *ctx)
{
    u8 buf[304];
    if (bpf_xdp_load_bytes(ctx, 0, buf, sizeof(buf)))
        return 0;
    return buf[0];
}

static __noinline int x304(struct xdp_md *ctx)
{
    u8 buf[304];
    if (bpf_xdp_load_bytes(ctx, 0, buf, sizeof(buf)))
        return 0;
    return buf[0] + x304_inner(ctx);
}

SEC("xdp")
int xdp_304_304(struct xdp_md *ctx)
{
    return 2 + (x304(ctx) & 0);
}

char LICENSE[] SEC("license") = "GPL";
