/* Abstract interpreter corpus (tests/test_absint.py): global data and read-only maps. Globals
 * are reached with ld_imm64 (a map value of the one-entry array holding .rodata/.data/.bss);
 * .rodata and maps created with BPF_F_RDONLY_PROG are read-only to the program. bad_* store
 * into them or access a global section out of its bounds, ok_* are their correct twins. */
#include "obj_bpf.h"

#define BPF_F_RDONLY_PROG (1U << 7)

struct cfg { u32 port, proto; u64 limit; };

const volatile struct cfg config = { 80, 6, 1000 }; /* .rodata */
const volatile u64 thresholds[4] = { 1, 2, 3, 4 };  /* .rodata */
const volatile u32 drop_all = 0;                    /* .rodata */
u32 counter = 1;                                    /* .data */
u64 hits[4];                                        /* .bss */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __uint(map_flags, BPF_F_RDONLY_PROG);
    __type(key, u32);
    __type(value, u64);
} frozen SEC(".maps");

/* stores into .rodata */
SEC("socket") int bad_ro_field(void *ctx) { ((volatile struct cfg *)&config)->limit = 10; return 0; }
SEC("socket") int ok_ro_field(void *ctx) { return config.limit; }
SEC("socket") int bad_ro_elem(void *ctx) { ((volatile u64 *)thresholds)[2] = 9; return 0; }
SEC("socket") int ok_ro_elem(void *ctx) { return thresholds[2]; }
SEC("socket") int bad_ro_var_index(void *ctx)
{
    u32 i = bpf_ktime_get_ns() & 3;
    ((volatile u64 *)thresholds)[i] = 0;
    return 0;
}
SEC("socket") int ok_ro_var_index(void *ctx)
{
    u32 i = bpf_ktime_get_ns() & 3;
    return thresholds[i];
}
SEC("socket") int bad_ro_flag(void *ctx) { *(volatile u32 *)&drop_all = 1; return 0; }
/* drop_all is 0 in the frozen map: the kernel knows it and skips the bad access */
SEC("socket") int ok_ro_dead_code(void *ctx)
{
    volatile u64 *h = hits;
    if (drop_all)
        return h[9];
    return 0;
}

/* .data and .bss are writable */
SEC("socket") int ok_data_store(void *ctx) { counter += 1; return 0; }
SEC("socket") int ok_bss_store(void *ctx) { hits[3] = 5; return 0; }

/* out of the section's bounds (the kernel checks the section, not the variable) */
SEC("socket") int bad_bss_past(void *ctx) { volatile u64 *h = hits; h[4] = 5; return 0; }
SEC("socket") int bad_data_past(void *ctx) { return ((volatile u32 *)&counter)[1]; }
SEC("socket") int bad_bss_var_index(void *ctx)
{
    u32 i = bpf_ktime_get_ns() & 7;
    ((volatile u64 *)hits)[i] = 1;
    return 0;
}
SEC("socket") int ok_bss_var_index(void *ctx)
{
    u32 i = bpf_ktime_get_ns() & 3;
    hits[i] = 1;
    return 0;
}
SEC("socket") int bad_bss_negative(void *ctx) { volatile u64 *h = hits; return h[-1]; }

/* a map created with BPF_F_RDONLY_PROG */
SEC("socket") int bad_frozen_map(void *ctx)
{
    u32 k = 0;
    u64 *v = bpf_map_lookup_elem(&frozen, &k);
    if (!v)
        return 0;
    *v = 1;
    return 0;
}
SEC("socket") int ok_frozen_map(void *ctx)
{
    u32 k = 0;
    u64 *v = bpf_map_lookup_elem(&frozen, &k);
    if (!v)
        return 0;
    return *v;
}

char _license[] SEC("license") = "GPL";
