/* A global memset, as Rust's compiler_builtins leaves one in `.text`: the kernel verifies a
 * global function alone against its BTF prototype and refuses this one ("Global function
 * memset() doesn't return scalar"); aya-obj makes memset/memcpy/memmove/memcmp static in the BTF
 * before loading, so the kernel verifies it in its caller's context and loads the program.
 * Compile with -fno-builtin (clang would turn the loop into a call to memset itself). */
#include "obj_bpf.h"

__noinline void *memset(void *s, int c, unsigned long n)
{
    volatile u8 *p = s;
    for (unsigned long i = 0; i < n; i++)
        p[i] = c;
    return s;
}

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u8[16]);
} buffers SEC(".maps");

SEC("socket")
int clears(void *skb)
{
    u32 zero = 0;
    u8 *buf = bpf_map_lookup_elem(&buffers, &zero);
    if (!buf)
        return 0;
    memset(buf, 0, 16); /* a map value: the kernel lets a function return that pointer */
    return buf[3];
}

char LICENSE[] SEC("license") = "GPL";
