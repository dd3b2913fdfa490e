/* Kernel profiles against real kernels (tests/test_vm_profiles.py): which kprobe-type programs
 * get private stacks. Two nested 304-byte frames (608 bytes on one stack) load only where the
 * frames get private stacks: on 6.18, kprobe.multi and kprobe.session programs, not plain
 * kprobes, kretprobes or uprobes (of any kind); on 6.1 and 6.12 (before private stacks), none. */
#include "obj_bpf.h"

static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *src) = (void *)113;

static __noinline int inner(void *src)
{
    u8 buf[304];
    bpf_probe_read_kernel(buf, sizeof(buf), src);
    return buf[0];
}

static __noinline int outer(void *src)
{
    u8 buf[304];
    bpf_probe_read_kernel(buf, sizeof(buf), src);
    return buf[0] + inner(src);
}

#define PROBE(sec, name) SEC(sec) int name(void *ctx) { return outer(ctx) & 0; }
PROBE("kprobe/do_nanosleep", kprobe_608)
PROBE("kretprobe/do_nanosleep", kretprobe_608)
PROBE("kprobe.multi/do_nanosleep", kprobe_multi_608)
PROBE("kprobe.session/do_nanosleep", kprobe_session_608)
PROBE("uprobe.multi//bin/true:main", uprobe_multi_608)

char _license[] SEC("license") = "GPL";
