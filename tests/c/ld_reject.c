/* Loader tests: the verifier rejects `no_null_check` (map value used without a NULL check). */
#include "obj_bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} values SEC(".maps");

SEC("socket")
int no_null_check(void *skb)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&values, &key);
    return (int)*v;
}

char _license[] SEC("license") = "GPL";
