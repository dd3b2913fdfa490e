/* Typed ksyms: a per-CPU kernel variable named through the kernel's BTF (ld_imm64 with
 * BPF_PSEUDO_BTF_ID, as libbpf links it); the kernel then resolves its address (this guest's
 * kernel cannot, and says so for both loaders). -DMISSING adds one the kernel lacks. */
#include "obj_bpf.h"

extern const int bpf_prog_active __ksym;
static void *(*bpf_this_cpu_ptr)(const void *percpu_ptr) = (void *)154;

SEC("tp_btf/sched_process_exec")
int active(u64 *ctx)
{
    const int *value = bpf_this_cpu_ptr(&bpf_prog_active);
    return *value > 0;
}

#ifdef MISSING
extern const int pytest_ebpf_no_such_ksym __ksym;

SEC("tp_btf/sched_process_exec")
int missing(u64 *ctx)
{
    const int *value = bpf_this_cpu_ptr(&pytest_ebpf_no_such_ksym);
    return *value;
}
#endif

char LICENSE[] SEC("license") = "GPL";
