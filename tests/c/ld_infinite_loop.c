/* The kernel rejects it with "infinite loop detected at insn N", then dumps the two states. */
#include "obj_bpf.h"
SEC("socket")
int spins(void *skb)
{
    volatile int x = 0;
    while (x == 0)
        ;
    return x;
}
char LICENSE[] SEC("license") = "GPL";
