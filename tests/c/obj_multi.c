/* Many program types in one object, .text subprograms, maps of both kinds and global data. */
#include "obj_bpf.h"

struct bpf_map_def SEC("maps") legacy_counts = {
    .type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 128,
};

struct bpf_elf_map SEC("maps") legacy_pinned = {
    .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 16, .max_entries = 4,
    .map_flags = 0, .id = 7, .pinning = 2,
};

struct event {
    u64 ts;
    u32 pid;
    u32 len;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __type(key, u32);
    __type(value, struct event);
    __uint(max_entries, 1024);
    __uint(map_flags, 2);
    __uint(pinning, 1);
} events_by_pid SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} ring SEC(".maps");

struct inner_map {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, u32);
    __type(value, u64);
    __uint(max_entries, 8);
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 2);
    __type(key, u32);
    __array(values, struct inner_map);
} outer SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 4);
    __uint(key_size, 4);
    __uint(value_size, 4);
} jump_table SEC(".maps");

/* Global data: .data, .rodata, .bss (and a static .bss variable). */
u64 packets = 1;
const volatile u32 threshold = 42;
u64 drops;
static u64 hidden_total;

extern int missing_function(int x);

static __noinline u64 scale(u64 v)
{
    return v * threshold + hidden_total;
}

__noinline int shared_sum(u32 a, u32 b)
{
    drops += a;
    return (int)scale(a + b);
}

static int loop_cb(u32 index, void *ctx)
{
    *(u64 *)ctx += index;
    return 0;
}

SEC("xdp")
int xdp_pass(void *ctx)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&legacy_counts, &key);
    if (v)
        *v += packets;
    return shared_sum(1, 2) > 0 ? 2 : 1;
}

SEC("xdp")
int xdp_drop(void *ctx)
{
    u64 acc = 0;
    bpf_loop(4, loop_cb, &acc, 0);
    hidden_total += acc;
    return acc ? 1 : 2;
}

/* A static function in a program section: called without a relocation (same section). */
static __noinline __attribute__((section("tc"))) int tc_local(u32 v)
{
    return v > threshold ? 2 : 0;
}

SEC("tc")
int tc_ingress(void *ctx)
{
    return shared_sum(3, 4) + tc_local(*(u32 *)ctx);
}

SEC("kprobe/do_sys_openat2")
int kp_open(void *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    struct event e = {.ts = bpf_ktime_get_ns(), .pid = pid, .len = 0};
    bpf_map_update_elem(&events_by_pid, &pid, &e, 0);
    return missing_function(pid);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int tp_execve(void *ctx)
{
    struct event e = {.ts = bpf_ktime_get_ns()};
    bpf_ringbuf_output(&ring, &e, sizeof(e), 0);
    bpf_tail_call(ctx, &jump_table, 0);
    return (int)scale(e.ts);
}

SEC("socket")
int sock_filter(void *ctx)
{
    u32 key = 1;
    void *inner = bpf_map_lookup_elem(&outer, &key);
    void *v = bpf_map_lookup_elem(&legacy_pinned, &key);
    return inner && v ? -1 : 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
u32 _version SEC("version") = 0x050f00;
