/* A GPL-only helper (bpf_probe_read_kernel) in an object without a license section: aya-obj
 * loads such objects as "GPL", so the kernel accepts the call. -DPROPRIETARY adds a license the
 * kernel does not count as GPL-compatible: then it refuses the call. */
#include "obj_bpf.h"

static long (*probe_read_kernel)(void *dst, u32 size, const void *src) = (void *)113;

SEC("tracepoint/syscalls/sys_enter_getpid")
int reads(void *ctx)
{
    u64 value = 0;
    probe_read_kernel(&value, sizeof(value), ctx);
    return 0;
}

#ifdef PROPRIETARY
char LICENSE[] SEC("license") = "Proprietary";
#endif
