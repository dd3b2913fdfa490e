/* Programs with a kernel BTF target that this host refuses before verification (no
 * trampolines here) and Debian's kernels load: fentry and fexit on bpf_fentry_test1 (which a
 * test run of a tracing program calls, so an attached one runs), fmod_ret, and lsm. */
#include "obj_bpf.h"


struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, u32);
    __type(value, u64);
} seen SEC(".maps");

static void store(u32 slot, u64 value)
{
    u64 *v = bpf_map_lookup_elem(&seen, &slot);
    if (v)
        *v = value;
}

/* int bpf_fentry_test1(int a) { return a + 1; }, called with a = 1 by the test run */
SEC("fentry/bpf_fentry_test1") int on_entry(u64 *ctx) { store(0, ctx[0]); return 0; }
SEC("fexit/bpf_fentry_test1") int on_exit(u64 *ctx) { store(1, ctx[1]); return 0; }
SEC("fmod_ret/bpf_modify_return_test") int keep_return(u64 *ctx) { return 0; }
SEC("lsm/file_open") int on_open(u64 *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
