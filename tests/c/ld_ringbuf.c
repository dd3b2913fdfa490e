/* A ring buffer declared without a size, as an Aya program can leave it to user space
 * (EbpfLoader::set_max_entries): the kernel refuses max_entries 0, so the loader must be
 * told the size. */
#include "obj_bpf.h"


struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
} events SEC(".maps");

SEC("socket")
int emit(void *skb)
{
    u64 value = 42;
    bpf_ringbuf_output(&events, &value, sizeof(value), 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
