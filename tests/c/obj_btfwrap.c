/* BTF map definitions wrapped the way older aya-ebpf `btf_maps` emitted them:
 * `Array(UnsafeCell<ArrayDef<...>>)`, i.e. single-member structs around the libbpf-style
 * definition struct. */
#include "obj_bpf.h"

struct array_def {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, 10);
    __uint(map_flags, 0);
};

struct unsafe_cell {
    struct array_def value;
};

struct aya_array {
    struct unsafe_cell inner;
};

struct aya_array ARRAY SEC(".maps");

SEC("xdp")
int use_array(void *ctx)
{
    u32 key = 0;
    return bpf_map_lookup_elem(&ARRAY, &key) ? 2 : 1;
}

char LICENSE[] SEC("license") = "GPL";
