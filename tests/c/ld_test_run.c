/* One program of each type the kernel can test-run (BPF_PROG_TEST_RUN) without trampolines:
 * raw_tracepoint (ctx: its arguments), syscall (ctx), cgroup_skb, tc, flow_dissector, socket
 * filter (data: a packet). */
#include "obj_bpf.h"
struct __sk_buff { u32 len; };
SEC("raw_tp/sys_enter") int rt(u64 *ctx) { return ctx[1] == 42 ? 7 : 3; }
SEC("syscall") int sc(void *ctx) { return 9; }
SEC("cgroup_skb/ingress") int cs(struct __sk_buff *skb) { return 1; }
SEC("tc") int tcp(struct __sk_buff *skb) { return skb->len; }
SEC("flow_dissector") int fd(struct __sk_buff *skb) { return 0; }
SEC("socket") int sf(struct __sk_buff *skb) { return skb->len; }
char LICENSE[] SEC("license") = "GPL";
