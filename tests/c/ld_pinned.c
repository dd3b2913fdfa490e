/* A map pinned by name (libbpf's LIBBPF_PIN_BY_NAME, Aya's PinningType::ByName): every load of
 * the session shares it. */
#include "obj_bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
    __uint(pinning, 1);
} shared SEC(".maps");

SEC("socket")
int bump(void *skb)
{
    u32 key = 0;
    u64 *value = bpf_map_lookup_elem(&shared, &key);
    if (value)
        __sync_fetch_and_add(value, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
