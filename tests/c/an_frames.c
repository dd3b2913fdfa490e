/* Frame sizes the verifier counts differently from the constant accesses
 * (tests/test_stack.py: the static figures against the verifier's "stack depth" line). */
#include "obj_bpf.h"

struct __sk_buff {
    u32 len;
};

/* bpf_loop with a constant callback and flags 0: since 5.19 the verifier inlines the call and
 * keeps r6-r8 in 3 slots below the caller's frame (24 bytes after the check of the combined
 * stack). */
static int loop_cb(u32 i, void *data)
{
    *(u64 *)data += i;
    return 0;
}

SEC("socket") int inlined_loop(struct __sk_buff *skb)
{
    u64 sum = skb->len;
    bpf_loop(8, loop_cb, &sum, 0);
    return sum;
}

/* a stack pointer with a variable but bounded offset: r2 = (len & 8) - 16; r2 += r10 reaches
 * r10 - 16 (depth 16) though no constant access goes below r10 - 8 */
SEC("socket") __attribute__((naked)) int variable_offset(void)
{
    asm volatile(
        "r2 = *(u32 *)(r1 + 0)\n"
        "r2 &= 8\n"
        "r2 += -16\n"
        "r2 += r10\n"
        "r0 = 0\n"
        "*(u64 *)(r10 - 8) = r0\n"
        "*(u64 *)(r2 + 0) = r0\n"
        "exit\n" ::: "memory");
}

/* the same pointer built from a constant chosen on two paths */
SEC("socket") __attribute__((naked)) int two_constants(void)
{
    asm volatile(
        "r2 = -8\n"
        "r3 = *(u32 *)(r1 + 0)\n"
        "if r3 == 0 goto 1f\n"
        "r2 = -32\n"
        "1:\n"
        "r2 += r10\n"
        "r0 = 0\n"
        "*(u64 *)(r2 + 0) = r0\n"
        "exit\n" ::: "memory");
}

/* the check of the combined stack does not see the 24 bytes: 8 (16 with the JIT) + 496 fits,
 * 32 + 496 would not */
static int big_cb(u32 i, void *data)
{
    volatile u8 buf[496];
    buf[i & 255] = 1;
    *(u64 *)data += buf[(i + 1) & 255];
    return 0;
}

SEC("socket") int inlined_loop_big(struct __sk_buff *skb)
{
    u64 sum = skb->len;
    bpf_loop(4, big_cb, &sum, 0);
    return sum;
}

/* a timer callback runs on a stack of its own: a root of the combined-stack check, not a frame
 * of the program that arms it (208 + 400 would not fit) */
struct bpf_timer {
    u64 opaque[2];
} __attribute__((aligned(8)));
struct timer_value {
    struct bpf_timer timer;
};
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct timer_value);
} timers SEC(".maps");

static long (*bpf_timer_init)(struct bpf_timer *timer, void *map, u64 flags) = (void *)169;
static long (*bpf_timer_set_callback)(struct bpf_timer *timer, void *cb) = (void *)170;

static int timer_cb(void *map, u32 *key, struct bpf_timer *timer)
{
    volatile u8 buf[400];
    buf[*key & 255] = 1;
    return buf[(*key + 1) & 255] & 0; /* an async callback returns 0 */
}

SEC("socket") int arms_timer(struct __sk_buff *skb)
{
    volatile u8 buf[200];
    u32 key = 0;
    struct timer_value *v = bpf_map_lookup_elem(&timers, &key);
    buf[skb->len & 127] = 1;
    if (!v)
        return 0;
    bpf_timer_init(&v->timer, &timers, 1 /* CLOCK_MONOTONIC */);
    bpf_timer_set_callback(&v->timer, timer_cb);
    return buf[(skb->len + 1) & 127];
}

char _license[] SEC("license") = "GPL";
