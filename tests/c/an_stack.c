/* Stack analysis tests (tests/test_stack.py): programs with known stack use.
 * Every program is a socket filter without maps (but tail_sub), so the tests can link and load
 * it by hand and compare with the verifier's own "stack depth" figures. */
#include "obj_bpf.h"

static long (*bpf_skb_load_bytes)(const void *skb, u32 offset, void *to, u32 len) = (void *)26;

/* One frame: a 300-byte buffer only reached through a pointer handed to a helper
 * (r3 = r10; r3 += -300): depth 304 (300 rounded up to 8). */
SEC("socket")
int leaf_buf(void *skb)
{
    u8 buf[300];
    if (bpf_skb_load_bytes(skb, 0, buf, sizeof(buf)))
        return 0;
    return buf[0] + buf[299];
}

/* main -> a -> b with 200-byte buffers: each frame fits, the chain does not
 * (3 * round_up(200, 32) = 672 > 512; with the JIT's 16: 3 * 208 = 624). */
static __noinline int chain_b(volatile u8 *seed)
{
    volatile u8 buf[200];
    buf[seed[0] & 127] = seed[1];
    return buf[seed[2] & 127];
}

static __noinline int chain_a(volatile u8 *seed)
{
    volatile u8 buf[200];
    buf[seed[0] & 127] = seed[1];
    return chain_b(buf) + buf[seed[2] & 127];
}

SEC("socket")
int chain_main(void *skb)
{
    volatile u8 buf[200];
    buf[0] = 1;
    buf[1] = 2;
    buf[2] = 3;
    return chain_a(buf);
}

/* A chain of 9 frames: chain9 -> d1 -> ... -> d8 (the verifier allows 8). */
#define DEEP(n, next)                                                                       \
    static __noinline int d##n(volatile u8 *p)                                              \
    {                                                                                       \
        volatile u8 v[8];                                                                   \
        v[0] = p[0];                                                                        \
        return next + v[0];                                                                 \
    }
DEEP(8, 1)
DEEP(7, d8(v))
DEEP(6, d7(v))
DEEP(5, d6(v))
DEEP(4, d5(v))
DEEP(3, d4(v))
DEEP(2, d3(v))
DEEP(1, d2(v))

SEC("socket")
int chain9(void *skb)
{
    volatile u8 v[8];
    v[0] = 1;
    return d1(v);
}

/* A tail call from a subprogram below a 300-byte frame: refused (>= 256 bytes above it). */
struct bpf_map_def SEC("maps") jmp_table = {
    .type = BPF_MAP_TYPE_PROG_ARRAY,
    .key_size = 4,
    .value_size = 4,
    .max_entries = 4,
};

static __noinline int tail_sub(void *skb, volatile u8 *p)
{
    bpf_tail_call(skb, &jmp_table, p[0] & 3);
    return 0;
}

SEC("socket")
int tail_main(void *skb)
{
    volatile u8 buf[300];
    buf[0] = 1;
    buf[299] = 2;
    return tail_sub(skb, buf) + buf[299];
}

/* Mutual recursion: ping -> pong -> ping. */
static __noinline int pong(volatile u8 *p, int n);

static __noinline int ping(volatile u8 *p, int n)
{
    volatile u8 v[16];
    v[0] = p[0];
    if (n <= 0)
        return v[0];
    return pong(v, n - 1) * 3 + v[0];
}

static __noinline int pong(volatile u8 *p, int n)
{
    volatile u8 v[16];
    v[0] = p[1];
    if (n <= 0)
        return v[0];
    return ping(v, n - 2) * 5 + v[0];
}

SEC("socket")
int recurse(void *skb)
{
    volatile u8 v[8];
    v[0] = 1;
    v[1] = 2;
    return ping(v, 4);
}

/* A chain the verifier accepts: pair_main (u8[100]) -> pair_sub (u8[40]). */
static __noinline int pair_sub(volatile u8 *p)
{
    volatile u8 v[40];
    v[p[0] & 31] = p[1];
    return v[p[2] & 31];
}

SEC("socket")
int pair_main(void *skb)
{
    volatile u8 b[100];
    b[0] = 1;
    b[1] = 2;
    b[2] = 3;
    return pair_sub(b) + b[b[1] & 63];
}

char _license[] SEC("license") = "GPL";
