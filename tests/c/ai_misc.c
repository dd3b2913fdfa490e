/* Abstract interpreter corpus (tests/test_absint.py): XDP context accesses and pointer
 * arithmetic the verifier refuses (bad_*), with their correct twins (ok_*). */
#include "obj_bpf.h"

struct xdp_md {
    u32 data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} m SEC(".maps");

SEC("xdp") int bad_ctx_past(struct xdp_md *ctx) { return *(u32 *)((u8 *)ctx + 24); }
SEC("xdp") int bad_ctx_egress(struct xdp_md *ctx) { return ctx->egress_ifindex; }
SEC("xdp/devmap") int ok_ctx_egress(struct xdp_md *ctx) { return ctx->egress_ifindex; }
SEC("xdp") int bad_ctx_u64(struct xdp_md *ctx) { return (int)*(u64 *)((u8 *)ctx + 8); }
SEC("xdp") int bad_ctx_u16(struct xdp_md *ctx) { return *(unsigned short *)((u8 *)ctx + 12); }
SEC("xdp") int ok_ctx_u32(struct xdp_md *ctx) { return ctx->ingress_ifindex + ctx->rx_queue_index; }
SEC("xdp") int bad_ctx_write(struct xdp_md *ctx)
{
    u32 q = ctx->ingress_ifindex;
    asm volatile("*(u32 *)(%0 + 16) = %1" :: "r"(ctx), "r"(q) : "memory");
    return 2;
}

/* data_end moved */
SEC("xdp") int bad_end_arith(struct xdp_md *ctx)
{
    u8 *d = (u8 *)(long)ctx->data, *e = (u8 *)(long)ctx->data_end;
    asm volatile("%0 += -4" : "+r"(e));
    if (d + 4 > e)
        return 1;
    return d[0];
}
SEC("xdp") int ok_end_arith(struct xdp_md *ctx)
{
    u8 *d = (u8 *)(long)ctx->data, *e = (u8 *)(long)ctx->data_end;
    if (d + 8 > e)
        return 1;
    return d[4];
}

/* offsetting a lookup result before the null check */
SEC("xdp") int bad_null_arith(struct xdp_md *ctx)
{
    u32 k = 0;
    u64 *v = bpf_map_lookup_elem(&m, &k);
    asm volatile("%0 += 4" : "+r"(v));
    if (!v)
        return 0;
    return *(u32 *)v;
}
SEC("xdp") int ok_null_arith(struct xdp_md *ctx)
{
    u32 k = 0;
    u64 *v = bpf_map_lookup_elem(&m, &k);
    if (!v)
        return 0;
    return *((u32 *)v + 1);
}

/* tagging a pointer */
SEC("xdp") int bad_ptr_or(struct xdp_md *ctx)
{
    u8 *d = (u8 *)(long)ctx->data, *e = (u8 *)(long)ctx->data_end;
    if (d + 8 > e)
        return 1;
    asm volatile("%0 |= 1" : "+r"(d));
    return 0;
}
SEC("xdp") int bad_ptr_and(struct xdp_md *ctx)
{
    u32 k = 0;
    u64 *v = bpf_map_lookup_elem(&m, &k);
    if (!v)
        return 0;
    asm volatile("%0 &= -8" : "+r"(v));
    return *v;
}
SEC("xdp") int ok_ptr_and(struct xdp_md *ctx)
{
    u32 k = 0;
    u64 *v = bpf_map_lookup_elem(&m, &k);
    if (!v)
        return 0;
    return *v & -8;
}
SEC("xdp") int bad_ptr_mul(struct xdp_md *ctx)
{
    u8 *d = (u8 *)(long)ctx->data;
    asm volatile("%0 *= 2" : "+r"(d));
    return 0;
}

/* pointer + pointer: refused whatever the pointers (pointer - pointer is a scalar) */
SEC("xdp") int bad_ptr_add_ptr(struct xdp_md *ctx)
{
    u8 *d = (u8 *)(long)ctx->data, *e = (u8 *)(long)ctx->data_end;
    asm volatile("%0 += %1" : "+r"(d) : "r"(e));
    return d != 0;
}
SEC("xdp") int ok_ptr_sub_ptr(struct xdp_md *ctx)
{
    u8 *d = (u8 *)(long)ctx->data, *e = (u8 *)(long)ctx->data_end;
    return (e - d) > 64 ? 1 : 2;
}

/* a context field read through a moved context pointer: only ctx + constant in the load */
#define MOVED_CTX(sec, name, off)                                                          \
    SEC(sec) int name(void *ctx)                                                           \
    {                                                                                      \
        u8 *p = ctx;                                                                       \
        asm volatile("%0 += " #off : "+r"(p));                                             \
        return *(volatile u32 *)p & 0;                                                     \
    }
MOVED_CTX("xdp", bad_ctx_moved, 4)
MOVED_CTX("socket", bad_skb_moved, 8)
MOVED_CTX("kprobe/do_nanosleep", bad_regs_moved, 16)
SEC("socket") int ok_skb_moved(void *ctx) { return *(volatile u32 *)((u8 *)ctx + 8) & 0; }

/* a bounded loop over checked bytes: many states, no finding */
SEC("xdp") int ok_loop(struct xdp_md *ctx)
{
    u8 *d = (u8 *)(long)ctx->data, *e = (u8 *)(long)ctx->data_end;
    u32 sum = 0;
    for (int i = 0; i < 64; i++) {
        if (d + i + 1 > e)
            break;
        sum += d[i];
    }
    return sum & 3;
}

/* a BPF-to-BPF call: the path stops there (the callee is not judged) */
static __noinline int peek(u8 *d, u8 *e)
{
    if (d + 2 > e)
        return 0;
    return d[1];
}
SEC("xdp") int ok_subprog(struct xdp_md *ctx)
{
    return peek((u8 *)(long)ctx->data, (u8 *)(long)ctx->data_end);
}

char _license[] SEC("license") = "GPL";
