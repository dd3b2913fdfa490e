/* Kernel profiles against real kernels (tests/test_vm_profiles.py): kfuncs by release. The
 * numbers iterator (bpf_iter_num_*, 6.4) and the RCU read lock kfuncs (6.2) are in 6.12 and
 * the host but not in 6.1; the key kfuncs of tracing programs (bpf_lookup_system_key,
 * bpf_key_put, 6.1) are in all three. */
#include "obj_bpf.h"

struct bpf_iter_num { u64 __opaque[1]; } __attribute__((aligned(8)));
struct bpf_key;

extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end) __ksym;
extern int *bpf_iter_num_next(struct bpf_iter_num *it) __ksym;
extern void bpf_iter_num_destroy(struct bpf_iter_num *it) __ksym;
extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;
extern struct bpf_key *bpf_lookup_system_key(u64 id) __ksym;
extern void bpf_key_put(struct bpf_key *key) __ksym;

SEC("socket")
int iter_num(void *skb)
{
    struct bpf_iter_num it;
    int sum = 0, *v;

    bpf_iter_num_new(&it, 0, 4);
    while ((v = bpf_iter_num_next(&it)))
        sum += *v;
    bpf_iter_num_destroy(&it);
    return sum & 0;
}

SEC("socket")
int rcu_lock(void *skb)
{
    bpf_rcu_read_lock();
    bpf_rcu_read_unlock();
    return 0;
}

SEC("tp_btf/sched_process_exec")
int system_key(u64 *ctx)
{
    struct bpf_key *key = bpf_lookup_system_key(1); /* VERIFY_USE_SECONDARY_KEYRING */

    if (key)
        bpf_key_put(key);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
