//! eBPF programs of the `lock` example.
//!
//! * `lock` (XDP): drops IPv4 packets whose source address is in `BLOCKLIST`.
//! * `lock_exec` (tracepoint `sched/sched_process_exec`): counts exec events in `EXEC_COUNT`.
//! * `lock_exec_btf` (BTF tracepoint `sched_process_exec`, attached through the kernel's BTF):
//!   reports the pid of every task that execs in the `EXECS` ring buffer.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::RingBuf,
    helpers::bpf_get_current_pid_tgid,
    macros::{btf_map, btf_tracepoint, map, tracepoint, xdp},
    maps::{HashMap, PerCpuArray},
    programs::{BtfTracePointContext, TracePointContext, XdpContext},
};
use lock_common::{BLOCKLIST_MAX_ENTRIES, BlocklistKey, EXEC_COUNT_INDEX};

/// Blocked IPv4 source addresses. Key: the 4 address bytes as they appear in the
/// packet (network byte order) read as a native-endian `u32`, see
/// `lock_common::BlocklistKey`. Value: `lock_common::BLOCKED` (any value blocks).
#[map]
static BLOCKLIST: HashMap<BlocklistKey, u32> =
    HashMap::with_max_entries(BLOCKLIST_MAX_ENTRIES, 0);

/// Number of `sched_process_exec` events seen, per CPU, in slot `EXEC_COUNT_INDEX`.
#[map]
static EXEC_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Pids of the tasks that exec (`u32`, native byte order), one record each. A BTF map (in
/// `.maps`, described by BTF), where Aya is heading; the other maps use the legacy section.
#[btf_map]
static EXECS: RingBuf<u32, { 16 * 4096 }> = RingBuf::new();

const ETH_HDR_LEN: usize = 14;
const ETH_TYPE_OFFSET: usize = 12;
const ETH_P_IP: u16 = 0x0800;
/// Offset of the source address inside the IPv4 header (independent of IHL).
const IPV4_SRC_OFFSET: usize = 12;

#[xdp]
pub fn lock(ctx: XdpContext) -> u32 {
    match try_lock(&ctx) {
        Ok(action) => action,
        // Truncated packets: let the stack deal with them.
        Err(()) => xdp_action::XDP_PASS,
    }
}

/// Returns a pointer to a `T` at `offset` bytes into the packet, or `Err` if the
/// packet is too short. The explicit `start + offset + size <= end` comparison is
/// what the verifier needs to see before the access.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(());
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
fn try_lock(ctx: &XdpContext) -> Result<u32, ()> {
    // The EtherType is big-endian on the wire.
    let eth_type: *const [u8; 2] = ptr_at(ctx, ETH_TYPE_OFFSET)?;
    if u16::from_be_bytes(unsafe { *eth_type }) != ETH_P_IP {
        // IPv6, ARP, VLAN-tagged, ...: not ours.
        return Ok(xdp_action::XDP_PASS);
    }
    let src: *const u32 = ptr_at(ctx, ETH_HDR_LEN + IPV4_SRC_OFFSET)?;
    // Raw packet bytes, no byte swap: this is the BLOCKLIST key encoding.
    let src = unsafe { core::ptr::read_unaligned(src) };
    if is_blocked(src) != 0 {
        Ok(xdp_action::XDP_DROP)
    } else {
        Ok(xdp_action::XDP_PASS)
    }
}

/// A real BPF-to-BPF call (kept out of line on purpose). It only takes a plain
/// integer, so the verifier has nothing to track across the call but a scalar.
#[inline(never)]
#[unsafe(no_mangle)]
fn is_blocked(src: BlocklistKey) -> u32 {
    match unsafe { BLOCKLIST.get(&src) } {
        Some(_) => 1,
        None => 0,
    }
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn lock_exec(_ctx: TracePointContext) -> u32 {
    if let Some(count) = EXEC_COUNT.get_ptr_mut(EXEC_COUNT_INDEX) {
        // Per-CPU slot: a plain increment cannot race.
        unsafe { *count += 1 };
    }
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn lock_exec_btf(_ctx: BtfTracePointContext) -> u32 {
    let pid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // A full ring buffer drops the event: user space reads it often enough.
    let _ = EXECS.output(pid, 0);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
