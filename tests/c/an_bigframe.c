/* Stack analysis tests: a single 600-byte frame (compile with -mllvm -bpf-stack-size=1024, or
 * clang refuses it: "Looks like the BPF stack limit is exceeded"). */
#include "obj_bpf.h"

SEC("socket")
int big_frame(u32 *skb)
{
    volatile u8 buf[600];
    u32 i = skb[0];
    buf[i % 600] = 1;
    return buf[(i + 7) % 600];
}

char _license[] SEC("license") = "GPL";
