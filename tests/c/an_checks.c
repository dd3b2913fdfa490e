/* Static checks tests (tests/test_checks.py). The license is -DAN_LICENSE="..." (default GPL). */
#include "obj_bpf.h"

#ifndef AN_LICENSE
#define AN_LICENSE "GPL"
#endif

/* An indirect call: clang-19 emits `callx rN` (any -mcpu) for a call through a function pointer
 * loaded from a table it cannot see through (volatile). */
typedef int (*fn_t)(int);
static __noinline int inc(int x) { return x + 1; }
static __noinline int dec(int x) { return x - 1; }
volatile fn_t table[2] = {inc, dec};

SEC("socket")
int callx_prog(u32 *skb)
{
    fn_t f = table[skb[0] & 1];
    return f(skb[1]);
}

/* A call to a function nothing defines. */
extern int not_defined_anywhere(int x);

SEC("socket")
int undef_prog(u32 *skb)
{
    return not_defined_anywhere(skb[0]);
}

/* A GPL-only helper (bpf_trace_printk, 6). */
SEC("kprobe/do_nanosleep")
int printk_prog(void *ctx)
{
    char fmt[] = "hi\n";
    bpf_trace_printk(fmt, sizeof(fmt));
    return 0;
}

/* Clean: helpers, a BPF-to-BPF call, nothing to report. */
static __noinline int add_pid(u64 x) { return (int)(x + bpf_get_current_pid_tgid()); }

SEC("kprobe/do_sys_open")
int clean_prog(void *ctx)
{
    return add_pid(bpf_ktime_get_ns());
}

char _license[] SEC("license") = AN_LICENSE;
