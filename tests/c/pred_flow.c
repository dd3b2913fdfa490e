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

char _license[] SEC("license") = "GPL";
