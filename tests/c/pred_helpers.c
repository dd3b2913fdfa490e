/* Helpers and kfuncs a program's type may not call (tests/test_helper_types.py,
 * tests/test_vm_profiles.py). Each bad_* program calls a helper or kfunc its kind may not call,
 * and the verifier refuses it before looking at the arguments; its ok_* twin makes the same call
 * from a kind that may. xdp_system_key depends on the kernel. */
#include "obj_bpf.h"

struct bpf_map_def SEC("maps") xsks = {.type = 17 /* BPF_MAP_TYPE_XSKMAP */, .key_size = 4,
                                       .value_size = 4, .max_entries = 4};

struct sockaddr_in4 {
    unsigned short family;
    unsigned short port;
    u32 addr;
    u8 zero[8];
};

static long (*bpf_redirect_map)(void *map, u64 key, u64 flags) = (void *)51;
static long (*bpf_bind)(void *ctx, void *addr, int addr_len) = (void *)64;
static long (*bpf_get_stack)(void *ctx, void *buf, u32 size, u64 flags) = (void *)67;
static long (*bpf_xdp_adjust_head)(void *ctx, int delta) = (void *)44;

/* A socket filter cannot redirect: only XDP has bpf_redirect_map. */
SEC("socket") int bad_redirect_map(void *skb) { return bpf_redirect_map(&xsks, 0, 0) ? 0 : 1; }
SEC("xdp") int ok_redirect_map(void *xdp) { return bpf_redirect_map(&xsks, 0, 2 /* XDP_PASS */); }

/* bpf_bind is for connect hooks only (the attach type decides, not the program type). */
static int bind_any(void *ctx)
{
    struct sockaddr_in4 sa = {.family = 2 /* AF_INET */};
    return bpf_bind(ctx, &sa, sizeof(sa)) == 0;
}
SEC("cgroup/bind4") int bad_bind(void *ctx) { return bind_any(ctx) | 1; }
SEC("cgroup/connect4") int ok_bind(void *ctx) { return bind_any(ctx) | 1; }

/* Stacks of the kernel are for tracing programs (the call is in a subprogram). */
static __noinline int stack_len(void *ctx)
{
    u64 frames[8];
    long n = bpf_get_stack(ctx, frames, sizeof(frames), 0);
    return n > 0 ? (int)n : 0;
}
SEC("xdp") int bad_get_stack(void *ctx) { return stack_len(ctx) & 2; }
SEC("kprobe/do_nanosleep") int ok_get_stack(void *ctx) { return stack_len(ctx) & 2; }

/* Only XDP programs move the packet's head. */
SEC("kprobe/do_nanosleep") int bad_adjust_head(void *ctx) { return bpf_xdp_adjust_head(ctx, 0) ? 1 : 0; }
SEC("xdp") int ok_adjust_head(void *ctx) { return bpf_xdp_adjust_head(ctx, 0) ? 1 : 2; }

/* Kfuncs by program type: the key kfuncs (6.1) are for tracing and LSM programs on 6.1 and 6.12
 * (6.12 adds tracepoints and perf events); by 6.18 most types have them, XDP included. */
struct bpf_key;
extern struct bpf_key *bpf_lookup_system_key(u64 id) __ksym;
extern void bpf_key_put(struct bpf_key *key) __ksym;

static __attribute__((always_inline)) int has_system_key(void)
{
    struct bpf_key *key = bpf_lookup_system_key(1); /* VERIFY_USE_SECONDARY_KEYRING */

    if (!key)
        return 0;
    bpf_key_put(key);
    return 1;
}
SEC("kprobe/do_nanosleep") int bad_kfunc_type(void *ctx) { return has_system_key(); }
SEC("tp_btf/sched_process_exec") int ok_kfunc_type(u64 *ctx) { return has_system_key() & 0; }
SEC("xdp") int xdp_system_key(void *ctx) { return has_system_key() ? 2 : 1; }

char _license[] SEC("license") = "GPL";
