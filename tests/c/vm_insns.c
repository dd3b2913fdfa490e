/* Kernel profiles against real kernels (tests/test_vm_profiles.py): the instruction limit of a
 * privileged load, 1,000,000 since 5.2. Straight-line code: every instruction is processed
 * once, so the program's size is also what the verifier processes. -DINSNS=N sets the number
 * of `r0 = 0` in the asm block; the return adds `r0 = 0; exit`: N + 2 instructions in all. */
#include "obj_bpf.h"

#define STR_(x) #x
#define STR(x) STR_(x)

SEC("socket")
int straight_line(void *skb)
{
    asm volatile(".rept " STR(INSNS) "\n\tr0 = 0\n\t.endr" ::: "r0");
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
