/* Loader tests: a BTF map wrapped the way Aya wraps them (struct { struct def __0; }), which
 * libbpf refuses ("unknown attribute") and the native loader unwraps. */
#include "obj_bpf.h"

struct counter_def {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, u32);
    __type(value, u64);
};

struct wrapped_counter {
    struct counter_def __0;
} WRAPPED SEC(".maps");

/* WRAPPED[1] += 1, returns the new value. */
SEC("socket")
int wrapped_prog(void *skb)
{
    u32 key = 1;
    u64 *v = bpf_map_lookup_elem(&WRAPPED, &key);
    if (!v)
        return 0;
    *v += 1;
    return (int)*v;
}

char _license[] SEC("license") = "GPL";
