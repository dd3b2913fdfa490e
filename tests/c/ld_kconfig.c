/* .kconfig externs, filled in by the loader from the running kernel (libbpf's way): the
 * program returns CONFIG_BPF_JIT + CONFIG_HZ on kernels from 5.10, 0 before; a __weak config
 * the kernel does not have reads 0. -DUNSET adds a strong one the kernel does not have. */
#include "obj_bpf.h"

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern _Bool CONFIG_BPF_JIT __kconfig __attribute__((weak));
extern int CONFIG_HZ __kconfig;
extern int CONFIG_PYTEST_EBPF_NO_SUCH_OPTION __kconfig __attribute__((weak));
#ifdef UNSET
extern int CONFIG_PYTEST_EBPF_STRONG_MISSING __kconfig;
#endif

SEC("socket")
int from_kconfig(void *skb)
{
    if (LINUX_KERNEL_VERSION < 0x050a00)
        return 0;
#ifdef UNSET
    return CONFIG_PYTEST_EBPF_STRONG_MISSING;
#endif
    return CONFIG_BPF_JIT + CONFIG_HZ + CONFIG_PYTEST_EBPF_NO_SUCH_OPTION;
}

char LICENSE[] SEC("license") = "GPL";
