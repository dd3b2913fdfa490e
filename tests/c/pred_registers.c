/* Static prediction tests (tests/test_predict.py): registers read before any path writes them.
 * Each bad_* program has an ok_* twin the kernel accepts. */
#include "obj_bpf.h"

#define NAKED(name) SEC("socket") __attribute__((naked)) int name(void)

/* "R3 !read_ok": only r1 (the context) and r10 hold something at the start */
NAKED(bad_uninit) { asm volatile("r0 = r3\n exit\n" ::: "memory"); }
NAKED(ok_uninit) { asm volatile("r3 = 1\n r0 = r3\n exit\n" ::: "memory"); }

/* "R1 !read_ok": a call clobbers r1-r5 */
NAKED(bad_after_call) { asm volatile("call 5\n r0 = r1\n exit\n" ::: "memory"); }
NAKED(ok_after_call) { asm volatile("r6 = r1\n call 5\n r0 = r6\n r0 = 0\n exit\n" ::: "memory"); }

/* "R2 !read_ok" on both paths of a branch */
NAKED(bad_both_paths) { asm volatile("r0 = 0\n if r1 == 0 goto +1\n r0 = 1\n r0 += r2\n exit\n" ::: "memory"); }
NAKED(ok_both_paths) { asm volatile("r0 = 0\n r2 = 0\n if r1 == 0 goto +1\n r0 = 1\n r0 += r2\n exit\n" ::: "memory"); }

/* "R0 !read_ok": the program returns nothing */
NAKED(bad_r0_exit) { asm volatile("r2 = 1\n exit\n" ::: "memory"); }
NAKED(ok_r0_exit) { asm volatile("r0 = 1\n exit\n" ::: "memory"); }

/* a subprogram that returns nothing is fine (its caller does not read r0) */
__attribute__((naked, noinline)) static void leaf(void) { asm volatile("r1 = 1\n exit\n" ::: "memory"); }
SEC("socket") int ok_void_subprog(void *ctx) { leaf(); return 0; }

char _license[] SEC("license") = "GPL";
