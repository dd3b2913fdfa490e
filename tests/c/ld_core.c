/* CO-RE: a local task_struct with a layout the kernel does not have (pytest_pad first, and a
 * field the kernel lacks). Relocated against the kernel's BTF, p->pid reads the real pid (the
 * program sends it through a ring buffer); a field the kernel lacks poisons its instruction:
 * behind bpf_core_field_exists() the code is dead and the program loads, without the guard
 * the verifier refuses it ("invalid func unknown#195896080"), as with libbpf. */
#include "obj_bpf.h"

struct task_struct {
    int pytest_pad;
    int pid;
    int pytest_no_such_field;
} __attribute__((preserve_access_index));

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} pids SEC(".maps");

SEC("tp_btf/sched_process_exec")
int exec_pid(u64 *ctx)
{
    struct task_struct *p = (void *)ctx[0];
    u32 pid = p->pid;
    bpf_ringbuf_output(&pids, &pid, sizeof(pid), 0);
    return 0;
}

SEC("tp_btf/sched_process_exec")
int guarded(u64 *ctx)
{
    struct task_struct *p = (void *)ctx[0];
    if (__builtin_preserve_field_info(p->pytest_no_such_field, 2 /* FIELD_EXISTS */))
        return p->pytest_no_such_field;
    return 0;
}

SEC("tp_btf/sched_process_exec")
int unguarded(u64 *ctx)
{
    struct task_struct *p = (void *)ctx[0];
    return p->pytest_no_such_field;
}

char LICENSE[] SEC("license") = "GPL";
