/* Context accesses a program's kind may not make (tests/test_helper_types.py,
 * tests/test_vm_profiles.py): the kernel refuses each bad_* with "invalid bpf_context access
 * off=N size=M"; its ok_* twin makes the access the kind allows. Offsets are written out: the
 * point is the layout the kernel checks, not a header's. */
#include "obj_bpf.h"

#define AT(type, ctx, off) (*(volatile type *)((char *)(ctx) + (off)))

/* __sk_buff.mark (offset 8): a socket filter may read it, only tc may write it */
SEC("socket") int bad_write_mark(void *skb) { AT(u32, skb, 8) = 1; return 0; }
SEC("tc") int ok_write_mark(void *skb) { AT(u32, skb, 8) = 1; return 0; }

/* __sk_buff.len (offset 0) is a u32: no 8-byte load */
SEC("socket") int bad_wide_len(void *skb) { return AT(u64, skb, 0) > 64; }
SEC("socket") int ok_wide_len(void *skb) { return AT(u32, skb, 0) > 64; }

/* struct pt_regs on x86-64 is 168 bytes: offset 168 is past it */
SEC("kprobe/do_nanosleep") int bad_past_regs(void *regs) { return AT(u64, regs, 168) & 0; }
SEC("kprobe/do_nanosleep") int ok_past_regs(void *regs) { return AT(u64, regs, 160) & 0; }

/* a tracepoint's first 8 bytes (the common fields) are not readable */
SEC("tracepoint/syscalls/sys_enter_getpid") int bad_tp_common(void *ctx) { return AT(u64, ctx, 0) & 0; }
SEC("tracepoint/syscalls/sys_enter_getpid") int ok_tp_common(void *ctx) { return AT(u64, ctx, 8) & 0; }

char _license[] SEC("license") = "GPL";
