/* Calls that a loader must resolve: an undefined extern function, a kfunc declared in .ksyms
 * and a .kconfig extern variable. */
#include "obj_bpf.h"

extern int undefined_helper(int x);
extern int bpf_kfunc_example(u32 value) __ksym;
extern u32 LINUX_KERNEL_VERSION __kconfig;

SEC("fentry/tcp_connect")
int fentry_connect(void *ctx)
{
    return undefined_helper(1) + bpf_kfunc_example(LINUX_KERNEL_VERSION);
}

SEC("lsm/file_open")
int lsm_open(void *ctx)
{
    return bpf_kfunc_example(2);
}

char LICENSE[] SEC("license") = "GPL";
