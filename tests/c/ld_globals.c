/* Loader tests: BTF .maps, global data, shared .text subprograms, a bpf_loop callback. */
#include "obj_bpf.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

u64 data_var = 5;              /* .data */
const volatile u32 ro_var = 7; /* .rodata */
u64 bss_var;                   /* .bss */

/* Adds `by` to counts[key] and returns the new value. */
static __noinline u64 bump(u32 key, u64 by)
{
    u64 *v = bpf_map_lookup_elem(&counts, &key);
    if (v) {
        *v += by;
        return *v;
    }
    bpf_map_update_elem(&counts, &key, &by, 0);
    return by;
}

static int add_index(u32 index, void *ctx)
{
    *(u64 *)ctx += index;
    return 0;
}

/* Returns data_var + ro_var (12 on the first run), counts[1] += that. */
SEC("socket")
int prog_a(void *skb)
{
    bss_var += 1;
    data_var += ro_var;
    return (int)bump(1, data_var);
}

/* Returns 0+1+...+9 = 45 plus the number of prog_a runs (bss_var); counts[2] += 45. */
SEC("socket")
int prog_b(void *skb)
{
    u64 sum = 0;
    bpf_loop(10, add_index, &sum, 0);
    bump(2, sum);
    return (int)(sum + bss_var);
}

char _license[] SEC("license") = "GPL";
