/* Loader tests: a 3-deep call chain whose frames add up to more than 512 bytes. */
#include "obj_bpf.h"

static __noinline int leaf(volatile u8 *seed)
{
    volatile u8 buf[240];
    buf[seed[0] & 127] = seed[1];
    return buf[seed[2] & 127];
}

static __noinline int middle(volatile u8 *seed)
{
    volatile u8 buf[240];
    buf[seed[0] & 127] = seed[1];
    return leaf(buf) + buf[seed[2] & 127];
}

SEC("socket")
int deep_stack(void *skb)
{
    volatile u8 buf[240];
    buf[0] = 1;
    buf[1] = 2;
    buf[2] = 3;
    return middle(buf);
}

char _license[] SEC("license") = "GPL";
