/* verify tests: each program gets its own verdict. `bad` uses a map value without a NULL check,
 * so the verifier rejects it; it comes first, so libbpf's all-or-nothing load never tries the
 * others. `good` (same section, same map, with the check) and `also_good` are accepted.
 * `-DONLY=N` keeps only the Nth program: the tests load each one alone with bpftool. */
#include "obj_bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} values SEC(".maps");

#if !defined(ONLY) || ONLY == 1
SEC("socket")
int bad(void *skb)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&values, &key);
    return (int)*v;
}
#endif

#if !defined(ONLY) || ONLY == 2
SEC("socket")
int good(void *skb)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&values, &key);
    return v ? (int)*v : 0;
}
#endif

#if !defined(ONLY) || ONLY == 3
SEC("xdp")
int also_good(void *ctx)
{
    return 2; /* XDP_PASS */
}
#endif

char _license[] SEC("license") = "GPL";
