/* Abstract interpreter corpus (tests/test_absint.py): return values. bad_* return a constant
 * outside their program type's range (check_return_code), ok_* are their correct twins, any_*
 * depend on the kernel version or return a range the kernel's bounds decide: not judged. */
#include "obj_bpf.h"

struct __sk_buff { u32 len, pkt_type, mark; };

/* cgroup_skb: 0 drops, 1 passes; egress may return 2 and 3 (congestion notification) */
SEC("cgroup_skb/ingress") int bad_skb_two(struct __sk_buff *skb) { return 2; }
SEC("cgroup_skb/ingress") int ok_skb_one(struct __sk_buff *skb) { return 1; }
SEC("cgroup_skb/ingress") int bad_skb_minus1(struct __sk_buff *skb) { return -1; }
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, u32);
} allowed SEC(".maps");

SEC("cgroup/skb") int bad_skb_shot(struct __sk_buff *skb)
{
    u32 k = 0;
    if (!bpf_map_lookup_elem(&allowed, &k))
        return 2; /* TC_ACT_SHOT is not a cgroup_skb verdict */
    return 1;
}
SEC("cgroup/skb") int ok_skb_deny(struct __sk_buff *skb)
{
    u32 k = 0;
    if (!bpf_map_lookup_elem(&allowed, &k))
        return 0;
    return 1;
}
SEC("cgroup_skb/egress") int bad_egress_four(struct __sk_buff *skb) { return 4; }
SEC("cgroup_skb/egress") int ok_egress_cn(struct __sk_buff *skb) { return 3; }
SEC("cgroup_skb/ingress") int ok_skb_masked(struct __sk_buff *skb) { return skb->len & 1; }
/* [0, 3] outside [0, 1]: refused, but with the kernel's bounds, not a constant */
SEC("cgroup_skb/ingress") int any_skb_range(struct __sk_buff *skb) { return skb->len & 3; }

/* cgroup_sock, cgroup_sock_addr */
SEC("cgroup/sock_create") int bad_sock_create(void *ctx) { return 2; }
SEC("cgroup/sock_create") int ok_sock_create(void *ctx) { return 0; }
SEC("cgroup/connect4") int bad_connect_eperm(void *ctx) { return -1; }
SEC("cgroup/connect4") int ok_connect_deny(void *ctx) { return 0; }
SEC("cgroup/recvmsg4") int bad_recvmsg_zero(void *ctx) { return 0; }
SEC("cgroup/recvmsg4") int ok_recvmsg_one(void *ctx) { return 1; }
SEC("cgroup/bind4") int bad_bind_four(void *ctx) { return 4; }
SEC("cgroup/bind4") int ok_bind_three(void *ctx) { return 3; }
/* [1, 1] since 6.7, [0, 1] before: refused here, accepted by 6.6 */
SEC("cgroup/getpeername4") int any_getpeername_zero(void *ctx) { return 0; }
SEC("cgroup/getsockname6") int bad_getsockname_two(void *ctx) { return 2; }
SEC("cgroup/getsockname6") int ok_getsockname_one(void *ctx) { return 1; }

/* the other [0, 1] types */
SEC("sockops") int bad_sockops(void *ctx) { return 2; }
SEC("sockops") int ok_sockops(void *ctx) { return 1; }
SEC("cgroup/sysctl") int bad_sysctl(void *ctx) { return 2; }
SEC("cgroup/dev") int bad_dev(void *ctx) { return -1; }
SEC("cgroup/dev") int ok_dev(void *ctx) { return 1; }
SEC("cgroup/getsockopt") int bad_getsockopt(void *ctx) { return 2; }
SEC("sk_lookup") int bad_sk_lookup(void *ctx) { return 2; }
SEC("sk_lookup") int ok_sk_lookup(void *ctx) { return 1; }

/* no range checked: any value */
SEC("xdp") int ok_xdp_any(void *ctx) { return 7; }
SEC("tc") int ok_tc_any(void *ctx) { return 99; }
SEC("socket") int ok_socket_any(void *ctx) { return -5; }

char _license[] SEC("license") = "GPL";
