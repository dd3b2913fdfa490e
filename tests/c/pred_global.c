/* Static prediction tests (tests/test_predict.py): global (non-static) functions are verified
 * alone against their BTF prototype (btf_prepare_func_args). Each bad_* program calls a global
 * function whose signature the kernel refuses; its ok_* twin calls one it takes. */
#include "obj_bpf.h"

struct __sk_buff {
    u32 len;
};
struct opaque; /* declared, never defined: no size */
struct pair {
    u32 a, b;
};

/* "Global function ret_ptr() doesn't return scalar. Only those are supported." */
__noinline u8 *ret_ptr(u8 *p) { return p ? p + 1 : 0; }
__noinline int ret_int(u8 *p) { return p ? p[0] : 0; }
SEC("socket") int bad_ret_ptr(struct __sk_buff *skb)
{
    u8 buf[8] = {};
    return ret_ptr(buf) != 0;
}
SEC("socket") int ok_ret_ptr(struct __sk_buff *skb)
{
    u8 buf[8] = {};
    return ret_int(buf);
}

/* "arg#0 reference type('UNKNOWN ') size cannot be determined: -22": void * has no size */
__noinline int void_arg(void *p) { return p != 0; }
__noinline int sized_arg(u64 *p) { return p != 0; }
SEC("socket") int bad_void_arg(struct __sk_buff *skb)
{
    u64 v = skb->len;
    return void_arg(&v);
}
SEC("socket") int ok_void_arg(struct __sk_buff *skb)
{
    u64 v = skb->len;
    return sized_arg(&v);
}

/* "arg#1 reference type('FWD opaque') size cannot be determined: -22" */
__noinline int fwd_arg(int n, struct opaque *p) { return n + (p != 0); }
__noinline int struct_arg(int n, struct pair *p) { return n + (p ? p->a : 0); }
SEC("socket") int bad_fwd_arg(struct __sk_buff *skb)
{
    u64 v = skb->len;
    return fwd_arg(1, (struct opaque *)&v);
}
SEC("socket") int ok_fwd_arg(struct __sk_buff *skb)
{
    struct pair v = {skb->len, 2};
    return struct_arg(1, &v);
}

/* void: "Global function ret_void() doesn't return scalar" before 7.0 (later: void is fine) */
__noinline void ret_void(u32 *p) { if (p) *p = 1; }
__noinline u32 ret_u32(u32 *p) { if (p) *p = 1; return 0; }
SEC("socket") int bad_ret_void(struct __sk_buff *skb)
{
    u32 v = 0;
    ret_void(&v);
    return v;
}
SEC("socket") int ok_ret_void(struct __sk_buff *skb)
{
    u32 v = 0;
    ret_u32(&v);
    return v;
}

/* the program's context: PTR_TO_CTX, on every kernel with global functions */
__noinline int ctx_arg(struct __sk_buff *skb) { return skb ? skb->len : 0; }
SEC("socket") int ok_ctx_arg(struct __sk_buff *skb) { return ctx_arg(skb); }

/* a static function is verified in its caller's context: any signature */
static __noinline int static_void_arg(void *p) { return p != 0; }
SEC("socket") int ok_static(struct __sk_buff *skb)
{
    u64 v = skb->len;
    return static_void_arg(&v);
}

/* a global function of hidden visibility (libbpf's __hidden, as usdt.bpf.h's bpf_usdt_arg):
 * loaders make it static, so the kernel verifies it in its caller's context too */
__attribute__((visibility("hidden"))) __noinline int hidden_void_arg(void *p) { return p != 0; }
SEC("socket") int ok_hidden(struct __sk_buff *skb)
{
    u64 v = skb->len;
    return hidden_void_arg(&v);
}

char _license[] SEC("license") = "GPL";
