/* Programs whose load names a kernel BTF type (attach_btf_id): tp_btf and iter load on this
 * machine's kernel; fentry and lsm need BPF trampolines (which this guest lacks: EPERM before
 * verification); a target the kernel does not have is refused by name. The verifier checks
 * tp_btf programs against the target's prototype: sched_process_exec has 3 arguments, so
 * reading the 8th is rejected. -DTRUTH keeps only what bpftool can load alone. */
#include "obj_bpf.h"

SEC("tp_btf/sched_process_exec")
int on_exec(u64 *ctx)
{
    return 0;
}

SEC("tp_btf/sched_process_exec")
int eighth_arg(u64 *ctx)
{
    return ctx[7] != 0;
}

SEC("iter/task")
int on_task(void *ctx)
{
    return 0;
}

#ifndef TRUTH
SEC("fentry/do_nanosleep")
int on_sleep(u64 *ctx)
{
    return 0;
}

SEC("lsm/file_open")
int on_open(u64 *ctx)
{
    return 0;
}

SEC("tp_btf/no_such_tracepoint")
int missing(u64 *ctx)
{
    return 0;
}
#endif

char LICENSE[] SEC("license") = "GPL";
