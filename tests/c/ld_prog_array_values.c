/* A PROG_ARRAY declared libbpf-style with __array(values, ...): no value_size field, the
 * values point at functions. libbpf sets value_size 4 (program fds); so must we. */
#include "obj_bpf.h"

struct {
    __uint(type, 3); /* BPF_MAP_TYPE_PROG_ARRAY */
    __uint(max_entries, 2);
    __uint(key_size, 4);
    __array(values, int(void *));
} jumps SEC(".maps");

SEC("socket")
int jumper(void *skb)
{
    bpf_tail_call(skb, &jumps, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
