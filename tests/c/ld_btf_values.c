/* A map whose value is a struct (signed and unsigned ints, bitfields, an array, a nested
 * struct): decoded through BTF by MapHandle.value(), as bpftool's formatted dump shows it. */
#include "obj_bpf.h"

struct inner {
    u32 a;
    u32 b;
};

struct stats {
    u32 count;
    short delta;
    u8 flags : 3;
    u8 mode : 5;
    u64 hist[3];
    struct inner in;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct stats);
} stats SEC(".maps");

SEC("socket")
int fill(void *skb)
{
    u32 key = 0;
    struct stats *s = bpf_map_lookup_elem(&stats, &key);
    if (!s)
        return 0;
    s->count = 7;
    s->delta = -3;
    s->flags = 5;
    s->mode = 17;
    s->hist[0] = 1;
    s->hist[2] = 1ULL << 40;
    s->in.b = 99;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
