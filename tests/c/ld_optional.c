/* libbpf's "do not load unless asked" marker: a section name starting with '?'. */
#include "obj_bpf.h"

SEC("?socket")
int optional_prog(void *skb)
{
    return 1;
}

SEC("socket")
int always(void *skb)
{
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
