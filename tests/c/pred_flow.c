/* Static prediction tests (tests/test_predict.py): control flow the verifier refuses before it
 * simulates anything. Each bad_* program has an ok_* twin the kernel accepts. */
#include "obj_bpf.h"

#define NAKED(name) SEC("socket") __attribute__((naked)) int name(void)

/* "unreachable insn 2": code after the last exit */
NAKED(bad_unreachable) { asm volatile("r0 = 0\n exit\n r0 = 1\n exit\n" ::: "memory"); }
NAKED(ok_unreachable) { asm volatile("r0 = 0\n if r1 == 0 goto +1\n exit\n r0 = 1\n exit\n" ::: "memory"); }

/* "jump out of range from insn 1 to 7": past the end of the program */
NAKED(bad_jump_range) { asm volatile("r0 = 0\n if r1 == 0 goto +5\n exit\n" ::: "memory"); }
NAKED(ok_jump_range) { asm volatile("r0 = 0\n if r1 == 0 goto +0\n exit\n" ::: "memory"); }

/* "jump into the middle of ldimm64 insn 1" */
NAKED(bad_jump_ldimm64) { asm volatile("r0 = 0\n if r1 == 0 goto +1\n r2 = 0x100000000 ll\n r0 = 1\n exit\n" ::: "memory"); }
NAKED(ok_jump_ldimm64) { asm volatile("r0 = 0\n if r1 == 0 goto +2\n r2 = 0x100000000 ll\n r0 = 1\n exit\n" ::: "memory"); }

/* "last insn is not an exit or jmp": a subprogram that falls off its end */
__attribute__((naked, noinline)) int fall_leaf(int x) { asm volatile("r0 = r1\n r0 += 1\n" ::: "memory"); }
__attribute__((naked, noinline)) int exit_leaf(int x) { asm volatile("r0 = r1\n r0 += 1\n exit\n" ::: "memory"); }
SEC("socket") int bad_fallthrough(u32 *skb) { return fall_leaf(skb[0]) + 1; }
SEC("socket") int ok_fallthrough(u32 *skb) { return exit_leaf(skb[0]) + 1; }

char _license[] SEC("license") = "GPL";
