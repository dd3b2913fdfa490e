/* Program sections written in assembly:
 * - "socket" has no FUNC symbol: the whole section is one program named after its first global
 *   symbol; it makes a same-section BPF-to-BPF call (`call imm`, no relocation);
 * - "xdp" has no symbol at all: the program is named after the section;
 * - "tc" has two global FUNC symbols without sizes: each extends to the next one. */
asm(
    "  .section \"socket\",\"ax\",@progbits\n"
    "  .globl asm_entry\n"
    "asm_entry:\n"
    "  r0 = 0\n"
    "  call 1\n"
    "  call .Lsub\n"
    "  exit\n"
    ".Lsub:\n"
    "  r0 = 1\n"
    "  exit\n"
    "  .section \"xdp\",\"ax\",@progbits\n"
    "  r0 = 2\n"
    "  exit\n"
    "  .section \"tc\",\"ax\",@progbits\n"
    "  .globl tc_first\n"
    "  .type tc_first,@function\n"
    "tc_first:\n"
    "  r0 = 0\n"
    "  r1 = 1\n"
    "  exit\n"
    "  .globl tc_second\n"
    "  .type tc_second,@function\n"
    "tc_second:\n"
    "  r0 = 1\n"
    "  exit\n");

char LICENSE[] __attribute__((section("license"), used)) = "GPL";
