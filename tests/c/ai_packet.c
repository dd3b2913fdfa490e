/* Abstract interpreter corpus (tests/test_absint.py): packet bounds. bad_* programs read past
 * the bytes their check covers (the kernel refuses them); ok_* are their correct twins. */
#include "obj_bpf.h"

typedef unsigned short u16;

struct xdp_md {
    u32 data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex;
};

#define DATA(ctx) ((u8 *)(long)(ctx)->data)
#define END(ctx) ((u8 *)(long)(ctx)->data_end)

/* no check at all */
SEC("xdp") int bad_nocheck(struct xdp_md *ctx) { return DATA(ctx)[0]; }

/* data + 10 > end: return; then byte 12 */
SEC("xdp") int bad_gt(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 10 > e)
        return 1;
    return d[12];
}
SEC("xdp") int ok_gt(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 13 > e)
        return 1;
    return d[12];
}

/* data + 14 <= end: read a u32 at 12 (needs 16) */
SEC("xdp") int bad_le(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 14 <= e)
        return *(u32 *)(d + 12);
    return 0;
}
SEC("xdp") int ok_le(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 16 <= e)
        return *(u32 *)(d + 12);
    return 0;
}

/* end < data + 8: return (the operands the other way round) */
SEC("xdp") int bad_end_lt(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (e < d + 8)
        return 1;
    return *(u16 *)(d + 7);
}
SEC("xdp") int ok_end_lt(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (e < d + 8)
        return 1;
    return *(u16 *)(d + 6);
}

/* end >= data + 4 */
SEC("xdp") int bad_end_ge(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (e >= d + 4)
        return d[4];
    return 0;
}
SEC("xdp") int ok_end_ge(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (e >= d + 4)
        return d[3];
    return 0;
}

/* data + 20 < end (strict: 21 bytes are there) */
SEC("xdp") int bad_lt(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 20 < e)
        return *(u16 *)(d + 20);
    return 0;
}
SEC("xdp") int ok_lt(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 20 < e)
        return d[20];
    return 0;
}

/* data + 6 >= end: return */
SEC("xdp") int bad_ge(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 6 >= e)
        return 1;
    return *(u32 *)(d + 4);
}
SEC("xdp") int ok_ge(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 6 >= e)
        return 1;
    return *(u16 *)(d + 4) + d[6];
}

/* a header pointer checked with its own end, then a field past it */
struct eth { u8 dst[6], src[6]; u16 proto; };
SEC("xdp") int bad_struct(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    struct eth *eth = (struct eth *)d;
    if ((u8 *)(eth + 1) > e)
        return 1;
    return *(u16 *)(d + sizeof(*eth));
}
SEC("xdp") int ok_struct(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    struct eth *eth = (struct eth *)d;
    if ((u8 *)(eth + 1) > e)
        return 1;
    return eth->proto;
}

/* a bounded variable offset: the check covers 2 bytes, the read takes 4 */
SEC("xdp") int bad_var(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 1 > e)
        return 0;
    u8 *p = d + (d[0] & 15);
    if (p + 2 > e)
        return 0;
    return *(u32 *)p;
}
SEC("xdp") int ok_var(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 1 > e)
        return 0;
    u8 *p = d + (d[0] & 15);
    if (p + 4 > e)
        return 0;
    return *(u32 *)p;
}

/* a write: the check covers 1 byte, the store writes 2 */
SEC("xdp") int bad_write(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 1 > e)
        return 1;
    *(u16 *)d = 0;
    return 2;
}
SEC("xdp") int ok_write(struct xdp_md *ctx)
{
    u8 *d = DATA(ctx), *e = END(ctx);
    if (d + 2 > e)
        return 1;
    *(u16 *)d = 0;
    return 2;
}

/* TC: __sk_buff data/data_end */
struct __sk_buff {
    u32 len, pkt_type, mark, queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto,
        priority, ingress_ifindex, ifindex, tc_index, cb[5], hash, tc_classid, data, data_end;
};
SEC("tc") int bad_tc(struct __sk_buff *skb)
{
    u8 *d = (u8 *)(long)skb->data, *e = (u8 *)(long)skb->data_end;
    if (d + 34 > e)
        return 0;
    return *(u32 *)(d + 32);
}
SEC("tc") int ok_tc(struct __sk_buff *skb)
{
    u8 *d = (u8 *)(long)skb->data, *e = (u8 *)(long)skb->data_end;
    if (d + 36 > e)
        return 0;
    return *(u32 *)(d + 32);
}

char _license[] SEC("license") = "GPL";
