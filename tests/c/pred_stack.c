/* Static prediction tests (tests/test_predict.py): accesses through r10 outside the 512-byte
 * frame. Each bad_* program has an ok_* twin the kernel accepts. */
#include "obj_bpf.h"

#define NAKED(name) SEC("socket") __attribute__((naked)) int name(void)

/* "invalid write to stack R10 off=8 size=8": above the frame */
NAKED(bad_stack_above) { asm volatile("r0 = 0\n *(u64 *)(r10 + 8) = r0\n exit\n" ::: "memory"); }
NAKED(ok_stack_above) { asm volatile("r0 = 0\n *(u64 *)(r10 - 8) = r0\n exit\n" ::: "memory"); }

/* "invalid write to stack R10 off=-520 size=8": below the 512 bytes */
NAKED(bad_stack_below) { asm volatile("r0 = 0\n *(u64 *)(r10 - 520) = r0\n exit\n" ::: "memory"); }
NAKED(ok_stack_below) { asm volatile("r0 = 0\n *(u64 *)(r10 - 512) = r0\n exit\n" ::: "memory"); }

/* "misaligned stack access off 0+0+-2 size 4": the stack is strictly aligned */
NAKED(bad_stack_misaligned) { asm volatile("*(u32 *)(r10 - 2) = 0\n r0 = 0\n exit\n" ::: "memory"); }
NAKED(ok_stack_misaligned) { asm volatile("*(u32 *)(r10 - 4) = 0\n r0 = 0\n exit\n" ::: "memory"); }

/* "invalid read from stack R10 off=0 size=8" */
NAKED(bad_stack_read) { asm volatile("r0 = *(u64 *)(r10 + 0)\n r0 = 0\n exit\n" ::: "memory"); }
NAKED(ok_stack_read) { asm volatile("*(u64 *)(r10 - 8) = r1\n r0 = *(u64 *)(r10 - 8)\n r0 = 0\n exit\n" ::: "memory"); }

char _license[] SEC("license") = "GPL";
