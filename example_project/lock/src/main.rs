//! User-space loader for the `lock` eBPF programs.
//!
//! Loads the object built by `build.rs`, attaches the XDP program `lock` to `--iface`,
//! attaches the tracepoint program `lock_exec` to `sched/sched_process_exec` and the BTF
//! tracepoint program `lock_exec_btf` to the kernel's `sched_process_exec`, fills
//! `BLOCKLIST` from `--block` and then either exits (`--check`) or runs until
//! SIGINT/SIGTERM, logging the exec counter every `--interval` seconds.

use std::{mem::MaybeUninit, net::Ipv4Addr, ptr, time::Duration};

use anyhow::{Context as _, bail};
use aya::{
    Btf, Ebpf,
    maps::{HashMap, PerCpuArray},
    programs::{BtfTracePoint, TracePoint, Xdp, XdpMode},
};
use clap::Parser;
use lock_common::{BLOCKED, EXEC_COUNT_INDEX, ipv4_key, key_octets};
use log::{info, warn};

#[derive(Debug, Parser)]
#[command(about = "Drop IPv4 packets from blocked source addresses with XDP")]
struct Opt {
    /// Interface to attach the XDP program to.
    #[arg(short, long, default_value = "lo")]
    iface: String,

    /// IPv4 source address to drop (repeatable).
    #[arg(short, long = "block", value_name = "ADDR")]
    block: Vec<Ipv4Addr>,

    /// Force generic (SKB) XDP mode instead of letting the kernel choose.
    #[arg(long)]
    skb_mode: bool,

    /// Load and attach everything (this is where the kernel verifier runs), fill the
    /// blocklist, print a summary and exit 0. Nothing stays attached afterwards.
    #[arg(long, alias = "once")]
    check: bool,

    /// Seconds between two counter reports while running.
    #[arg(long, default_value_t = 5)]
    interval: u64,
}

fn main() -> anyhow::Result<()> {
    let opt = Opt::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    // Older kernels charge BPF memory to RLIMIT_MEMLOCK; lift it (harmless on new ones).
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        log::debug!("failed to remove the memlock limit (fine on kernels with memcg BPF accounting)");
    }

    let mut ebpf = Ebpf::load(aya::include_bytes_aligned!(concat!(
        env!("OUT_DIR"),
        "/lock"
    )))
    .context("failed to load the eBPF object")?;

    let xdp: &mut Xdp = ebpf
        .program_mut("lock")
        .context("program `lock` not found")?
        .try_into()?;
    xdp.load().context("failed to load XDP program `lock`")?;
    let mode = if opt.skb_mode {
        XdpMode::Skb
    } else {
        XdpMode::Default
    };
    if let Err(err) = xdp.attach(&opt.iface, mode) {
        if opt.skb_mode {
            return Err(err).with_context(|| format!("failed to attach `lock` to {}", opt.iface));
        }
        warn!("attaching `lock` to {} failed ({err}); retrying in SKB mode", opt.iface);
        xdp.attach(&opt.iface, XdpMode::Skb)
            .with_context(|| format!("failed to attach `lock` to {} in SKB mode", opt.iface))?;
    }
    info!("XDP program `lock` attached to {}", opt.iface);

    let tp: &mut TracePoint = ebpf
        .program_mut("lock_exec")
        .context("program `lock_exec` not found")?
        .try_into()?;
    tp.load().context("failed to load tracepoint program `lock_exec`")?;
    tp.attach("sched", "sched_process_exec")
        .context(
            "failed to attach `lock_exec` to sched/sched_process_exec \
             (is tracefs mounted? `mount -t tracefs tracefs /sys/kernel/tracing`)",
        )?;
    info!("tracepoint program `lock_exec` attached to sched/sched_process_exec");

    let btf = Btf::from_sys_fs().context("failed to read the kernel's BTF")?;
    let tp_btf: &mut BtfTracePoint = ebpf
        .program_mut("lock_exec_btf")
        .context("program `lock_exec_btf` not found")?
        .try_into()?;
    tp_btf
        .load("sched_process_exec", &btf)
        .context("failed to load BTF tracepoint program `lock_exec_btf`")?;
    tp_btf
        .attach()
        .context("failed to attach `lock_exec_btf` to sched_process_exec")?;
    info!("BTF tracepoint program `lock_exec_btf` attached to sched_process_exec");

    let mut blocklist: HashMap<_, u32, u32> = HashMap::try_from(
        ebpf.map_mut("BLOCKLIST")
            .context("map `BLOCKLIST` not found")?,
    )?;
    for addr in &opt.block {
        blocklist
            .insert(ipv4_key(addr.octets()), BLOCKED, 0)
            .with_context(|| format!("failed to block {addr}"))?;
        info!("blocking {addr}");
    }
    let blocked = blocklist
        .keys()
        .map(|k| k.map(|k| Ipv4Addr::from(key_octets(k))))
        .collect::<Result<Vec<_>, _>>()?;
    info!("BLOCKLIST holds {} address(es): {blocked:?}", blocked.len());

    if opt.check {
        info!("exec events so far: {}", exec_count(&ebpf)?);
        println!("OK: lock attached to {}, lock_exec and lock_exec_btf attached", opt.iface);
        return Ok(());
    }

    info!("running; press Ctrl-C to stop");
    let signals = block_signals()?;
    let interval = Duration::from_secs(opt.interval.max(1));
    while !wait_for_signal(&signals, interval)? {
        info!("exec events so far: {}", exec_count(&ebpf)?);
    }
    info!("exiting (programs are detached when the loader exits)");
    Ok(())
}

/// Sum of the per-CPU `EXEC_COUNT` slots.
fn exec_count(ebpf: &Ebpf) -> anyhow::Result<u64> {
    let counts: PerCpuArray<_, u64> =
        PerCpuArray::try_from(ebpf.map("EXEC_COUNT").context("map `EXEC_COUNT` not found")?)?;
    Ok(counts.get(&EXEC_COUNT_INDEX, 0)?.iter().sum())
}

/// Blocks SIGINT and SIGTERM so they can be picked up synchronously with `sigtimedwait`.
fn block_signals() -> anyhow::Result<libc::sigset_t> {
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        let mut set = set.assume_init();
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
        if rc != 0 {
            bail!("pthread_sigmask failed: {rc}");
        }
        Ok(set)
    }
}

/// Returns `true` if a signal arrived within `timeout`, `false` on timeout.
fn wait_for_signal(set: &libc::sigset_t, timeout: Duration) -> anyhow::Result<bool> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: 0,
    };
    let rc = unsafe { libc::sigtimedwait(set, ptr::null_mut(), &ts) };
    if rc >= 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(false),
        _ => Err(err).context("sigtimedwait failed"),
    }
}
