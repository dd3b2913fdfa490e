/* Loader tests: a call to a function no section defines (the native loader refuses it). */
#include "obj_bpf.h"

extern int not_defined_anywhere(int x);

SEC("socket")
int calls_extern(void *skb)
{
    return not_defined_anywhere(1);
}

char _license[] SEC("license") = "GPL";
