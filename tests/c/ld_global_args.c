/* A global function is verified alone against its BTF prototype: passing a scalar where the
 * prototype says the program's context is refused ("arg#0 expects pointer to ctx", "Caller
 * passes invalid args into func#1", EINVAL). Without BTF the same call is a static call and
 * loads: a loader that retried without BTF would turn the kernel's "no" into a "yes". */
#include "obj_bpf.h"

struct __sk_buff {
    u32 len;
};

__noinline int global_check(struct __sk_buff *skb)
{
    return skb != 0;
}

SEC("socket")
int calls_global(struct __sk_buff *skb)
{
    return global_check((struct __sk_buff *)(long)skb->len);
}

char LICENSE[] SEC("license") = "GPL";
