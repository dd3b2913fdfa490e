//! A corpus of Aya programs: one per program kind aya-ebpf 0.2.1 has a macro for (of those the
//! suite checks), each using at least one map, so that every map kind (legacy `maps` section and
//! BTF `.maps`) and the global data sections are created by both loaders. Six programs are
//! meant to be rejected by the verifier: `xdp_unchecked` (packet read without a bounds check),
//! `kprobe_null` (a map value dereferenced without a NULL check), `kprobe_deep_stack` (640
//! bytes of combined stack over a BPF-to-BPF call), `xdp_get_stack` (a helper XDP programs
//! may not call), `cgroup_skb_verdict` (a return value cgroup_skb programs may not give) and
//! `tc_past_value` (a write past the end of a map value).
//!
//! Attach targets (corpus-ref passes the same ones to Aya): fentry/fexit `vfs_read`, lsm
//! `file_open`, tp_btf `sched_process_exec`.
#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::{bpf_ret_code, xdp_action},
    btf_maps,
    helpers::{bpf_get_current_pid_tgid, bpf_map_lookup_elem},
    macros::{
        btf_map, btf_tracepoint, cgroup_skb, cgroup_sock_addr, classifier, fentry, fexit,
        flow_dissector, kprobe, kretprobe, lsm, map, perf_event, raw_tracepoint, sk_msg,
        sock_ops, socket_filter, tracepoint, xdp,
    },
    maps::{
        Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, PerfEventArray, ProgramArray,
        RingBuf, StackTrace,
    },
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, FlowDissectorContext, LsmContext,
        PerfEventContext, ProbeContext, RawTracePointContext, RetProbeContext, SkBuffContext,
        SkMsgContext, SockAddrContext, SockOpsContext, TcContext, TracePointContext,
        XdpContext, tracing::StackIdContext as _,
    },
};

// --- legacy maps (the `maps` section) ------------------------------------------------------------

#[map]
static L_HASH: HashMap<u32, u64> = HashMap::with_max_entries(16, 0);
#[map]
static L_LRU: LruHashMap<u32, u64> = LruHashMap::with_max_entries(16, 0);
#[map]
static L_PCPU_HASH: PerCpuHashMap<u32, u64> = PerCpuHashMap::with_max_entries(16, 0);
#[map]
static L_ARRAY: Array<u64> = Array::with_max_entries(4, 0);
#[map]
static L_PCPU_ARRAY: PerCpuArray<u64> = PerCpuArray::with_max_entries(4, 0);
#[map]
static L_RINGBUF: RingBuf = RingBuf::with_byte_size(4 * 4096, 0);
#[map]
static L_PERF: PerfEventArray<u32> = PerfEventArray::new(0);
#[map]
static L_STACKS: StackTrace = StackTrace::with_max_entries(16, 0);
#[map]
static L_JUMP: ProgramArray = ProgramArray::with_max_entries(4, 0);

// --- BTF maps (`.maps`, described by BTF) --------------------------------------------------------

#[btf_map]
static B_HASH: btf_maps::HashMap<u32, u64, 16> = btf_maps::HashMap::new();
#[btf_map]
static B_LRU: btf_maps::LruHashMap<u32, u64, 16> = btf_maps::LruHashMap::new();
#[btf_map]
static B_PCPU_HASH: btf_maps::PerCpuHashMap<u32, u64, 16> = btf_maps::PerCpuHashMap::new();
#[btf_map]
static B_ARRAY: btf_maps::Array<u64, 4> = btf_maps::Array::new();
#[btf_map]
static B_PCPU_ARRAY: btf_maps::PerCpuArray<u64, 4> = btf_maps::PerCpuArray::new();
#[btf_map]
static B_RINGBUF: btf_maps::RingBuf<u32, { 4 * 4096 }> = btf_maps::RingBuf::new();
#[btf_map]
static B_PERF: btf_maps::PerfEventArray = btf_maps::PerfEventArray::new();
#[btf_map]
static B_STACKS: btf_maps::StackTrace<16> = btf_maps::StackTrace::new();
#[btf_map]
static B_JUMP: btf_maps::ProgramArray<4> = btf_maps::ProgramArray::new();
#[btf_map]
static B_ARRAY_OF_MAPS: btf_maps::ArrayOfMaps<btf_maps::Array<u32, 4>, 2> =
    btf_maps::ArrayOfMaps::new();
#[btf_map]
static B_HASH_OF_MAPS: btf_maps::HashOfMaps<u32, btf_maps::Array<u64, 4>, 2> =
    btf_maps::HashOfMaps::new();

// --- global data: Aya makes one array map per section --------------------------------------------

/// `.rodata` (read through a volatile load so the constant is not folded).
#[unsafe(no_mangle)]
static RO_LIMIT: u64 = 7;
/// `.data` (non-zero initial value).
#[unsafe(no_mangle)]
static mut DATA_COUNTER: u64 = 3;
/// `.bss` (zero initial value).
#[unsafe(no_mangle)]
static mut BSS_COUNTER: u64 = 0;

#[inline(always)]
fn bump(slot: Option<*mut u64>) {
    if let Some(p) = slot {
        unsafe { *p += 1 };
    }
}

// --- programs --------------------------------------------------------------------------------------

#[xdp]
pub fn xdp_pass(ctx: XdpContext) -> u32 {
    let key = 1u32;
    bump(L_HASH.get_ptr_mut(key));
    B_PERF.output(&ctx, &key, 0);
    xdp_action::XDP_PASS
}

/// Rejected: reads the first packet byte without comparing against `data_end`.
#[xdp]
pub fn xdp_unchecked(ctx: XdpContext) -> u32 {
    let first = unsafe { read_volatile(ctx.data() as *const u8) };
    if first == 0xff { xdp_action::XDP_DROP } else { xdp_action::XDP_PASS }
}

/// Rejected: XDP programs may not read the kernel's stack (`bpf_get_stack` is for tracing).
#[xdp]
pub fn xdp_get_stack(ctx: XdpContext) -> u32 {
    let mut frames = [0u64; 4];
    let n = unsafe {
        aya_ebpf::helpers::generated::bpf_get_stack(
            ctx.as_ptr(),
            frames.as_mut_ptr().cast(),
            core::mem::size_of_val(&frames) as u32,
            0,
        )
    };
    if n > 0 { xdp_action::XDP_DROP } else { xdp_action::XDP_PASS }
}

/// Rejected: cgroup_skb programs return 0 (drop) or 1 (pass); 2 is refused at the exit.
#[cgroup_skb]
pub fn cgroup_skb_verdict(_ctx: SkBuffContext) -> i32 {
    bump(L_ARRAY.get_ptr_mut(1));
    2
}

/// Rejected: writes the byte after an 8-byte map value through a raw pointer.
#[classifier]
pub fn tc_past_value(_ctx: TcContext) -> i32 {
    if let Some(p) = L_ARRAY.get_ptr_mut(2) {
        unsafe { write_volatile(p.cast::<u8>().add(8), 1) };
    }
    0
}

#[classifier]
pub fn tc_count(_ctx: TcContext) -> i32 {
    let limit = unsafe { read_volatile(&raw const RO_LIMIT) };
    let _ = L_LRU.insert(2u32, limit, 0);
    0
}

#[socket_filter]
pub fn socket_count(_ctx: SkBuffContext) -> i64 {
    bump(L_PCPU_HASH.get_ptr_mut(3u32));
    unsafe {
        let v = read_volatile(&raw const DATA_COUNTER);
        write_volatile(&raw mut DATA_COUNTER, v + 1);
    }
    0
}

#[cgroup_skb]
pub fn cgroup_skb_count(_ctx: SkBuffContext) -> i32 {
    bump(L_ARRAY.get_ptr_mut(0));
    unsafe {
        let v = read_volatile(&raw const BSS_COUNTER);
        write_volatile(&raw mut BSS_COUNTER, v + 1);
    }
    1
}

#[kprobe]
pub fn kprobe_count(ctx: ProbeContext) -> u32 {
    bump(L_PCPU_ARRAY.get_ptr_mut(0));
    let _ = ctx.get_stackid(&B_STACKS, 0);
    0
}

/// Rejected: the map value is used without checking the lookup's NULL.
#[kprobe]
pub fn kprobe_null(_ctx: ProbeContext) -> u32 {
    let key = 1u32;
    let value = unsafe {
        bpf_map_lookup_elem(
            (&raw const L_HASH).cast_mut().cast(),
            (&raw const key).cast(),
        )
    };
    unsafe { read_volatile(value.cast::<u32>()) }
}

/// A BPF-to-BPF call to a global function (the verifier checks it on its own, through the
/// object's BTF `func_info`).
#[kprobe]
pub fn kprobe_call(_ctx: ProbeContext) -> u32 {
    corpus_lookup(bpf_get_current_pid_tgid() as u32)
}

#[inline(never)]
#[unsafe(no_mangle)]
fn corpus_lookup(key: u32) -> u32 {
    match unsafe { L_HASH.get(&key) } {
        Some(v) => *v as u32,
        None => 0,
    }
}

/// Rejected: two frames of 320 bytes each, 640 > 512 bytes of combined stack (each frame alone
/// is within LLVM's limit, so only the verifier sees it).
#[kprobe]
pub fn kprobe_deep_stack(_ctx: ProbeContext) -> u32 {
    deep_outer(bpf_get_current_pid_tgid() as u8)
}

#[inline(never)]
fn deep_outer(seed: u8) -> u32 {
    let mut buf = [0u8; 320];
    for byte in buf.iter_mut() {
        unsafe { write_volatile(byte, seed) };
    }
    let below = deep_inner(seed);
    below + unsafe { read_volatile(&raw const buf[0]) } as u32
}

#[inline(never)]
fn deep_inner(seed: u8) -> u32 {
    let mut buf = [0u8; 320];
    for byte in buf.iter_mut() {
        unsafe { write_volatile(byte, seed) };
    }
    unsafe { read_volatile(&raw const buf[1]) as u32 }
}

#[kretprobe]
pub fn kretprobe_ring(_ctx: RetProbeContext) -> u32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = L_RINGBUF.output::<u32>(pid, 0);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn tracepoint_perf(ctx: TracePointContext) -> u32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    L_PERF.output(&ctx, pid, 0);
    unsafe { B_JUMP.tail_call(&ctx, 0) };
    0
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_tracepoint_stack(ctx: RawTracePointContext) -> i32 {
    let _ = ctx.get_stackid(&L_STACKS, 0);
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn tp_btf_hash(_ctx: BtfTracePointContext) -> i32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = B_HASH.insert(pid, 1u64, 0);
    0
}

#[perf_event]
pub fn perf_event_jump(ctx: PerfEventContext) -> u32 {
    unsafe { L_JUMP.tail_call(&ctx, 0) };
    0
}

#[fentry(function = "vfs_read")]
pub fn fentry_lru(_ctx: FEntryContext) -> i32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = B_LRU.insert(pid, 1u64, 0);
    0
}

#[fexit(function = "vfs_read")]
pub fn fexit_pcpu_hash(_ctx: FExitContext) -> i32 {
    bump(B_PCPU_HASH.get_ptr_mut(4u32));
    0
}

#[lsm(hook = "file_open")]
pub fn lsm_array(_ctx: LsmContext) -> i32 {
    bump(B_ARRAY.get_ptr_mut(0));
    0
}

#[cgroup_sock_addr(connect4)]
pub fn connect4_pcpu(_ctx: SockAddrContext) -> i32 {
    bump(B_PCPU_ARRAY.get_ptr_mut(0));
    1
}

#[sk_msg]
pub fn sk_msg_ring(_ctx: SkMsgContext) -> u32 {
    let _ = B_RINGBUF.output(5u32, 0);
    if let Some(inner) = unsafe { B_HASH_OF_MAPS.get(&0u32) } {
        bump(inner.get_ptr_mut(0));
    }
    1
}

#[sock_ops]
pub fn sock_ops_maps(_ctx: SockOpsContext) -> u32 {
    if let Some(inner) = B_ARRAY_OF_MAPS.get(0) {
        if let Some(v) = inner.get_ptr_mut(1) {
            unsafe { *v += 1 };
        }
    }
    0
}

#[flow_dissector]
pub fn dissect(ctx: FlowDissectorContext) -> u32 {
    let _ = ctx.as_ptr();
    bpf_ret_code::BPF_FLOW_DISSECTOR_CONTINUE
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
