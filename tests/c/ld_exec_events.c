/* A tp_btf program (attach target: the kernel's sched_process_exec) that writes the pid of
 * every task that execs into a ring buffer: attached, it sees a process the test starts. */
#include "obj_bpf.h"


struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096 * 4);
} execs SEC(".maps");

SEC("tp_btf/sched_process_exec")
int on_exec(u64 *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    bpf_ringbuf_output(&execs, &pid, sizeof(pid), 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
