/* Calls to kernel functions (kfuncs, resolved against the kernel's BTF as libbpf and Aya do):
 * a balanced RCU read section loads; one left open is rejected by the verifier; a kfunc the
 * kernel does not have is refused by name. -DTRUTH leaves that one out (libbpf refuses the
 * whole object for it). */
#include "obj_bpf.h"

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

SEC("socket")
int balanced(void *skb)
{
    bpf_rcu_read_lock();
    bpf_rcu_read_unlock();
    return 0;
}

SEC("socket")
int left_open(void *skb)
{
    bpf_rcu_read_lock();
    return 0;
}

#ifndef TRUTH
extern void bpf_no_such_kfunc(void) __ksym;

SEC("socket")
int missing(void *skb)
{
    bpf_no_such_kfunc();
    return 0;
}
#endif

char LICENSE[] SEC("license") = "GPL";
