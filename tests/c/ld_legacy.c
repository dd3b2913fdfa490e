/* Loader tests: a legacy `maps` section (struct bpf_map_def), which libbpf 1.0+ refuses. */
#include "obj_bpf.h"

struct bpf_map_def SEC("maps") legacy_counts = {
    .type = BPF_MAP_TYPE_ARRAY,
    .key_size = sizeof(u32),
    .value_size = sizeof(u64),
    .max_entries = 4,
};

/* counts[0] += 3, returns the new value. */
SEC("socket")
int legacy_prog(void *skb)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&legacy_counts, &key);
    if (!v)
        return 0;
    *v += 3;
    return (int)*v;
}

char _license[] SEC("license") = "GPL";
