/* Abstract interpreter corpus (tests/test_absint.py): map values. bad_* use a lookup result
 * before its null check or outside its value; ok_* are their correct twins. */
#include "obj_bpf.h"

struct val { u64 a, b; u32 c, arr[3]; };  /* 32 bytes */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, struct val);
} vals SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

SEC("socket") int bad_nonull(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    return v->c;
}

/* if (!v) return: the early return */
SEC("socket") int ok_not_v(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    if (!v)
        return 0;
    return v->c;
}

/* if (v) {...}: the access outside the check */
SEC("socket") int bad_if_v(void *skb)
{
    u32 k = 1;
    u64 *c = bpf_map_lookup_elem(&counts, &k);
    if (c)
        *c += 1;
    k = 2;
    u64 *d = bpf_map_lookup_elem(&counts, &k);
    return *d;
}
SEC("socket") int ok_if_v(void *skb)
{
    u32 k = 1;
    u64 *c = bpf_map_lookup_elem(&counts, &k);
    if (c)
        *c += 1;
    k = 2;
    u64 *d = bpf_map_lookup_elem(&counts, &k);
    if (d)
        return *d;
    return 0;
}

/* a store before the check */
SEC("socket") int bad_store(void *skb)
{
    u32 k = 3;
    u64 *c = bpf_map_lookup_elem(&counts, &k);
    *c = 7;
    return 0;
}
SEC("socket") int ok_store(void *skb)
{
    u32 k = 3;
    u64 *c = bpf_map_lookup_elem(&counts, &k);
    if (c == 0)
        return 0;
    *c = 7;
    return 0;
}

/* constant offsets past the value (32 bytes) */
SEC("socket") int bad_off(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    if (!v)
        return 0;
    return v->arr[3];
}
SEC("socket") int ok_off(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    if (!v)
        return 0;
    return v->arr[2];
}
SEC("socket") int bad_off_u64(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    if (!v)
        return 0;
    return *(u64 *)((u8 *)v + 28);
}
SEC("socket") int ok_off_u64(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    if (!v)
        return 0;
    return *(u64 *)((u8 *)v + 24);
}
SEC("socket") int bad_off_neg(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    if (!v)
        return 0;
    return *((u32 *)v - 1);
}

/* a bounded index: 0..7 into arr[3] */
SEC("socket") int bad_index(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    if (!v)
        return 0;
    u32 i = v->c;
    if (i > 7)
        return 0;
    return v->arr[i];
}
SEC("socket") int ok_index(void *skb)
{
    u32 k = 0;
    struct val *v = bpf_map_lookup_elem(&vals, &k);
    if (!v)
        return 0;
    u32 i = v->c;
    if (i > 2)
        return 0;
    return v->arr[i];
}

/* an array map with a constant in-range key: the kernel (6.14+) knows the value is there, older
 * kernels want the check; the interpreter judges neither */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} arr SEC(".maps");

SEC("socket") int any_array_const_key(void *skb)
{
    u32 k = 1;
    u64 *v = bpf_map_lookup_elem(&arr, &k);
    return *v;
}
SEC("socket") int ok_array_checked(void *skb)
{
    u32 k = 1;
    u64 *v = bpf_map_lookup_elem(&arr, &k);
    if (!v)
        return 0;
    return *v;
}

char _license[] SEC("license") = "GPL";
