/* A sleepable kfunc (bpf_copy_from_user_str, 6.12) in a program that may not sleep
 * (tests/test_helper_types.py, tests/test_vm_profiles.py): the verifier refuses bad_sleep_kfunc
 * once it knows the kind may call the kfunc at all; the sleepable uprobe twin loads. */
#include "obj_bpf.h"

extern int bpf_copy_from_user_str(void *dst, u32 dst__sz, const void *unsafe_ptr__ign,
                                  u64 flags) __ksym;

static __attribute__((always_inline)) int user_str(void *ctx)
{
    char buf[16];

    return bpf_copy_from_user_str(buf, sizeof(buf), ctx, 0) > 0;
}
SEC("kprobe/do_nanosleep") int bad_sleep_kfunc(void *ctx) { return user_str(ctx); }
SEC("uprobe.s//bin/true:main") int ok_sleep_kfunc(void *ctx) { return user_str(ctx); }

char _license[] SEC("license") = "GPL";
