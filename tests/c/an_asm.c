/* Static checks tests: a C program calling a function written in assembly, which has no
 * .BTF.ext func_info record and whose last instruction is not exit (it falls through). */
#include "obj_bpf.h"

extern int asm_leaf(int x);

asm("  .text\n"
    "  .globl asm_leaf\n"
    "  .type asm_leaf,@function\n"
    "asm_leaf:\n"
    "  r0 = r1\n"
    "  r0 += 1\n"
    "  .size asm_leaf, .-asm_leaf\n");

SEC("socket")
int asm_caller(u32 *skb)
{
    return asm_leaf(skb[0]) + 1;
}

char _license[] SEC("license") = "GPL";
