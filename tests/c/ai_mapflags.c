/* Abstract interpreter corpus (tests/test_absint_mapflags.py): map access flags. A map created
 * with BPF_F_WRONLY_PROG may only be written by the program, one with BPF_F_RDONLY_PROG only
 * read (check_map_access_type), whether the map is a BTF .maps or a legacy "maps" definition;
 * helpers that read or write map memory are held to the same capabilities. bad_* break them,
 * ok_* are their correct twins, any_* are left alone whatever the kernel says. */
#include "obj_bpf.h"

#define BPF_F_RDONLY_PROG (1U << 7)
#define BPF_F_WRONLY_PROG (1U << 8)

static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static long (*bpf_skb_load_bytes)(const void *skb, u32 off, void *to, u32 len) = (void *)26;
static long (*bpf_get_current_comm)(void *buf, u32 size) = (void *)16;
typedef unsigned short u16;

struct rec { u64 bytes; u32 pkts, flags; u64 last; };  /* 24 bytes */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __uint(map_flags, BPF_F_WRONLY_PROG);
    __type(key, u32);
    __type(value, u64);
} wo_hash SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __uint(map_flags, BPF_F_WRONLY_PROG);
    __type(key, u32);
    __type(value, struct rec);
} wo_array SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __uint(map_flags, BPF_F_RDONLY_PROG);
    __type(key, u32);
    __type(value, struct rec);
} ro_array SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, u64);
    __type(value, struct rec);
} rw_hash SEC(".maps");

struct bpf_map_def SEC("maps") wo_legacy = {
    .type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 16, .max_entries = 8,
    .map_flags = BPF_F_WRONLY_PROG,
};

struct bpf_map_def SEC("maps") ro_legacy = {
    .type = BPF_MAP_TYPE_PERCPU_ARRAY, .key_size = 4, .value_size = 12, .max_entries = 8,
    .map_flags = BPF_F_RDONLY_PROG,
};

const volatile u32 limits[4] = { 1, 2, 3, 4 };  /* .rodata */
u64 scratch[4];                                 /* .bss */

/* -- loads from a write-only map ------------------------------------------------------- */

SEC("socket") int bad_wo_load(void *skb)
{
    u32 k = 0;
    u64 *v = bpf_map_lookup_elem(&wo_hash, &k);
    if (!v)
        return 0;
    return *v;
}
SEC("socket") int ok_wo_store(void *skb)
{
    u32 k = 0;
    u64 *v = bpf_map_lookup_elem(&wo_hash, &k);
    if (!v)
        return 0;
    *v = 7;
    return 0;
}

/* a counter in a write-only map: `+=` reads it first */
SEC("socket") int bad_wo_counter(void *skb)
{
    u32 k = 1;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    r->pkts += 1;
    return 0;
}
SEC("socket") int ok_wo_counter(void *skb)
{
    u32 k = 1;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    r->pkts = 1;
    r->last = bpf_ktime_get_ns();
    return 0;
}

SEC("socket") int bad_wo_var_index(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    u32 i = bpf_ktime_get_ns() & 1;
    return ((volatile u32 *)r)[2 + i];
}
SEC("socket") int ok_wo_var_index(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    u32 i = bpf_ktime_get_ns() & 1;
    ((volatile u32 *)r)[2 + i] = 0;
    return 0;
}

SEC("socket") int bad_wo_legacy(void *skb)
{
    u32 k = 3;
    u32 *v = bpf_map_lookup_elem(&wo_legacy, &k);
    if (!v)
        return 0;
    return v[3];
}
SEC("socket") int ok_wo_legacy(void *skb)
{
    u32 k = 3;
    u32 *v = bpf_map_lookup_elem(&wo_legacy, &k);
    if (!v)
        return 0;
    v[3] = 1;
    return 0;
}

/* -- stores into a read-only map -------------------------------------------------------- */

SEC("socket") int bad_ro_array(void *skb)
{
    u32 k = 2;
    struct rec *r = bpf_map_lookup_elem(&ro_array, &k);
    if (!r)
        return 0;
    r->flags = 1;
    return 0;
}
SEC("socket") int ok_ro_array(void *skb)
{
    u32 k = 2;
    struct rec *r = bpf_map_lookup_elem(&ro_array, &k);
    if (!r)
        return 0;
    return r->flags;
}

SEC("socket") int bad_ro_legacy(void *skb)
{
    u32 k = 0;
    u32 *v = bpf_map_lookup_elem(&ro_legacy, &k);
    if (!v)
        return 0;
    v[2] = 5;
    return 0;
}
SEC("socket") int ok_ro_legacy(void *skb)
{
    u32 k = 0;
    u32 *v = bpf_map_lookup_elem(&ro_legacy, &k);
    if (!v)
        return 0;
    return v[2];
}

/* -- helpers reading or writing map memory ---------------------------------------------- */

/* the value bpf_map_update_elem copies is read from the write-only map */
SEC("socket") int bad_wo_update_from(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    u64 key = 1;
    bpf_map_update_elem(&rw_hash, &key, r, 0);
    return 0;
}
SEC("socket") int ok_wo_update_into(void *skb)
{
    struct rec r = { 1, 2, 3, 4 };
    u32 k = 0;
    bpf_map_update_elem(&wo_array, &k, &r, 0);
    return 0;
}

/* a key read from the write-only map */
SEC("socket") int bad_wo_key(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    struct rec *o = bpf_map_lookup_elem(&rw_hash, &r->last);
    return o ? 1 : 0;
}
SEC("socket") int bad_wo_delete_key(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    bpf_map_delete_elem(&rw_hash, &r->bytes);
    return 0;
}
SEC("socket") int ok_rw_key(void *skb)
{
    u64 k = 0;
    struct rec *r = bpf_map_lookup_elem(&rw_hash, &k);
    if (!r)
        return 0;
    bpf_map_delete_elem(&rw_hash, &r->last);
    return 0;
}

/* bpf_skb_load_bytes writes the packet bytes into the read-only map */
SEC("socket") int bad_ro_load_bytes(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&ro_array, &k);
    if (!r)
        return 0;
    bpf_skb_load_bytes(skb, 0, &r->last, 8);
    return 0;
}
SEC("socket") int ok_wo_load_bytes(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    bpf_skb_load_bytes(skb, 0, &r->last, 8);
    return 0;
}
SEC("socket") int bad_rodata_load_bytes(void *skb)
{
    bpf_skb_load_bytes(skb, 14, (void *)&limits[1], 4);
    return 0;
}
SEC("socket") int ok_bss_load_bytes(void *skb)
{
    bpf_skb_load_bytes(skb, 14, &scratch[1], 4);
    return 0;
}

/* the verifier prints the access's fixed offset, not the variable part (r7 + [8, 20]) */
SEC("socket") int bad_wo_var_min(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    u64 i = bpf_ktime_get_ns();
    asm volatile("%0 &= 3; %0 <<= 2; %0 += 8; %1 += %0" : "+r"(i), "+r"(r));
    return *(volatile u32 *)r;
}
SEC("socket") int ok_wo_var_min(void *skb)
{
    u32 k = 0;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    u64 i = bpf_ktime_get_ns();
    asm volatile("%0 &= 3; %0 <<= 2; %0 += 8; %1 += %0" : "+r"(i), "+r"(r));
    *(volatile u32 *)r = 0;
    return 0;
}

/* bpf_get_current_comm fills its buffer: not a read-only map's value */
SEC("kprobe/do_nanosleep") int bad_ro_comm(void *ctx)
{
    u32 k = 1;
    struct rec *r = bpf_map_lookup_elem(&ro_array, &k);
    if (!r)
        return 0;
    bpf_get_current_comm(r, 16);
    return 0;
}
SEC("kprobe/do_nanosleep") int ok_wo_comm(void *ctx)
{
    u32 k = 1;
    struct rec *r = bpf_map_lookup_elem(&wo_array, &k);
    if (!r)
        return 0;
    bpf_get_current_comm(r, 16);
    return 0;
}

/* the program may not update or delete elements of a read-only map (it may look them up) */
SEC("socket") int bad_ro_update(void *skb)
{
    struct rec r = { 1, 2, 3, 4 };
    u32 k = 0;
    bpf_map_update_elem(&ro_array, &k, &r, 0);
    return 0;
}
SEC("socket") int ok_rw_update(void *skb)
{
    struct rec r = { 1, 2, 3, 4 };
    u64 k = 0;
    bpf_map_update_elem(&rw_hash, &k, &r, 0);
    return 0;
}
SEC("socket") int bad_ro_legacy_delete(void *skb)
{
    u32 k = 3;
    bpf_map_delete_elem(&ro_legacy, &k);
    return 0;
}
/* a u64 spilled on the stack: its first four bytes are the u32 key */
SEC("socket") int bad_ro_delete_spilled_key(void *skb)
{
    u64 k = 1;
    bpf_map_delete_elem(&ro_array, &k);
    return 0;
}
SEC("socket") int ok_wo_delete(void *skb)
{
    u32 k = 0;
    bpf_map_delete_elem(&wo_hash, &k);
    return 0;
}
/* the key's bytes are not all written: the kernel may refuse the key first (not judged) */
SEC("socket") int any_ro_delete_short_key(void *skb)
{
    u16 k = 3;
    bpf_map_delete_elem(&ro_legacy, &k);
    return 0;
}

char _license[] SEC("license") = "GPL";
