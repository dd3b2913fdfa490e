/* Kernel profiles against real kernels (tests/test_vm_profiles.py): built with -mcpu=v4 the
 * sign-extending load is a cpu v4 instruction (kernels have them since 6.6); built with
 * -mcpu=v3 the same source loads everywhere. */
#include "obj_bpf.h"

SEC("socket")
int signed_load(void *skb)
{
    volatile signed char c = 1;
    long wide = c; /* ldxsb with cpu v4; ldxb and shifts with v3 */
    return wide > 0;
}

char LICENSE[] SEC("license") = "GPL";
