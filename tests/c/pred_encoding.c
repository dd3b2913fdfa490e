/* Static prediction tests (tests/test_predict.py): encodings no kernel accepts, written as raw
 * instruction words (.quad: opcode, regs, off, imm, little-endian) where the assembler refuses
 * them. Each bad_* program has an ok_* twin the kernel accepts. */
#include "obj_bpf.h"

#define NAKED(name) SEC("socket") __attribute__((naked)) int name(void)

/* "R11 is invalid": mov r11, 0 */
NAKED(bad_register) { asm volatile("r0 = 0\n .quad 0x0000000000000bb7\n exit\n" ::: "memory"); }
NAKED(ok_register) { asm volatile("r0 = 0\n .quad 0x00000000000009b7\n exit\n" ::: "memory"); }

/* "frame pointer is read only" */
NAKED(bad_frame_pointer) { asm volatile("r0 = 0\n r10 = 0\n exit\n" ::: "memory"); }
NAKED(ok_frame_pointer) { asm volatile("r0 = 0\n r1 = r10\n r1 += -8\n exit\n" ::: "memory"); }

/* "BPF_MOV uses reserved fields": mov r0, 0 with off 1 */
NAKED(bad_reserved_mov) { asm volatile("r0 = 0\n .quad 0x00000000000100b7\n exit\n" ::: "memory"); }
NAKED(ok_reserved_mov) { asm volatile("r0 = 0\n .quad 0x00000000000000b7\n exit\n" ::: "memory"); }

/* "BPF_ALU uses reserved fields": add r0, 1 with src r1 */
NAKED(bad_reserved_alu) { asm volatile("r0 = 0\n .quad 0x0000000100001007\n exit\n" ::: "memory"); }
NAKED(ok_reserved_alu) { asm volatile("r0 = 0\n .quad 0x0000000100000007\n exit\n" ::: "memory"); }

/* "div by zero" */
NAKED(bad_div_zero) { asm volatile("r0 = 7\n r0 /= 0\n exit\n" ::: "memory"); }
NAKED(ok_div_zero) { asm volatile("r0 = 7\n r0 /= 2\n exit\n" ::: "memory"); }

/* "invalid shift 64" */
NAKED(bad_shift) { asm volatile("r0 = 7\n r0 <<= 64\n exit\n" ::: "memory"); }
NAKED(ok_shift) { asm volatile("r0 = 7\n r0 <<= 63\n exit\n" ::: "memory"); }

/* "invalid func unknown#195896080": a call libbpf poisoned (failed CO-RE relocation) */
NAKED(bad_poisoned) { asm volatile("call 0xbad2310\n r0 = 0\n exit\n" ::: "memory"); }
NAKED(ok_poisoned) { asm volatile("call 5\n r0 = 0\n exit\n" ::: "memory"); }

char _license[] SEC("license") = "GPL";
