//! The reference loader: Aya's own verdict on every program of an object.
//!
//! `corpus-ref OBJECT` loads OBJECT with `EbpfLoader` (which creates every map, global data
//! included), then loads each program as an Aya user would: `program_mut(name).try_into()` on
//! its kind and `load(...)`, with the kernel BTF attach target for fentry, fexit, lsm and
//! tp_btf (the targets the corpus's macros name). Nothing is attached. It prints JSON lines:
//!
//! * `{"map": NAME, "type": N, "key_size": N, "value_size": N, "max_entries": N, "flags": N}`
//!   per map, as the kernel reports it;
//! * `{"percpu": NAME, "values": N}` for the per-CPU arrays: how many values a lookup returns;
//! * `{"program": NAME, "kind": KIND, "loaded": BOOL, "error": TEXT|null}` per program;
//! * `{"object_error": TEXT}` when the object itself does not load (and nothing else).

use std::{env, error::Error, process::ExitCode};

use aya::{
    Btf, EbpfLoader,
    maps::{Map, MapData, PerCpuArray},
    programs::{
        BtfTracePoint, CgroupSkb, CgroupSockAddr, FEntry, FExit, FlowDissector, KProbe, Lsm,
        PerfEvent, Program, ProgramError, RawTracePoint, SchedClassifier, SkMsg, SockOps,
        SocketFilter, TracePoint, Xdp,
    },
};

const FENTRY_TARGET: &str = "vfs_read";
const LSM_HOOK: &str = "file_open";
const TP_BTF_TARGET: &str = "sched_process_exec";

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The error and its sources, one after the other (Aya's LoadError carries the verifier log).
fn chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::Array(d)
        | Map::ArrayOfMaps(d)
        | Map::HashMap(d)
        | Map::HashOfMaps(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::PerfEventArray(d)
        | Map::ProgramArray(d)
        | Map::RingBuf(d)
        | Map::StackTraceMap(d)
        | Map::Unsupported(d) => Some(d),
        _ => None,
    }
}

fn load(program: &mut Program, btf: &Result<Btf, String>) -> (&'static str, Result<(), String>) {
    fn done(r: Result<(), ProgramError>) -> Result<(), String> {
        r.map_err(|e| chain(&e))
    }
    let btf = |kind| match btf {
        Ok(btf) => Ok(btf),
        Err(e) => Err(format!("{kind}: cannot read the kernel's BTF: {e}")),
    };
    macro_rules! plain {
        ($kind:literal, $ty:ty) => {{
            let p: Result<&mut $ty, _> = program.try_into();
            ($kind, p.map_err(|e| chain(&e)).and_then(|p| done(p.load())))
        }};
    }
    macro_rules! target {
        ($kind:literal, $ty:ty, $target:expr) => {{
            let p: Result<&mut $ty, _> = program.try_into();
            ($kind, p.map_err(|e| chain(&e))
                .and_then(|p| btf($kind).and_then(|b| done(p.load($target, b)))))
        }};
    }
    match program {
        Program::Xdp(_) => plain!("xdp", Xdp),
        Program::SchedClassifier(_) => plain!("classifier", SchedClassifier),
        Program::SocketFilter(_) => plain!("socket_filter", SocketFilter),
        Program::CgroupSkb(_) => plain!("cgroup_skb", CgroupSkb),
        Program::KProbe(_) => plain!("kprobe", KProbe),
        Program::TracePoint(_) => plain!("tracepoint", TracePoint),
        Program::RawTracePoint(_) => plain!("raw_tracepoint", RawTracePoint),
        Program::PerfEvent(_) => plain!("perf_event", PerfEvent),
        Program::CgroupSockAddr(_) => plain!("cgroup_sock_addr", CgroupSockAddr),
        Program::SkMsg(_) => plain!("sk_msg", SkMsg),
        Program::SockOps(_) => plain!("sock_ops", SockOps),
        Program::FlowDissector(_) => plain!("flow_dissector", FlowDissector),
        Program::BtfTracePoint(_) => target!("btf_tracepoint", BtfTracePoint, TP_BTF_TARGET),
        Program::FEntry(_) => target!("fentry", FEntry, FENTRY_TARGET),
        Program::FExit(_) => target!("fexit", FExit, FENTRY_TARGET),
        Program::Lsm(_) => target!("lsm", Lsm, LSM_HOOK),
        other => ("unknown", Err(format!("corpus-ref does not load {:?} programs",
                                         other.prog_type()))),
    }
}

fn main() -> ExitCode {
    let Some(path) = env::args().nth(1) else {
        eprintln!("usage: corpus-ref OBJECT");
        return ExitCode::from(2);
    };
    let mut ebpf = match EbpfLoader::new().load_file(&path) {
        Ok(ebpf) => ebpf,
        Err(e) => {
            println!("{{\"object_error\": {}}}", json_str(&chain(&e)));
            return ExitCode::SUCCESS;
        }
    };
    for (name, map) in ebpf.maps() {
        let Some(info) = map_data(map).and_then(|d| d.info().ok()) else {
            println!("{{\"map\": {}, \"type\": null}}", json_str(name));
            continue;
        };
        let map_type = info.map_type().map(|t| t as u32 as i64).unwrap_or(-1);
        println!(
            "{{\"map\": {}, \"type\": {}, \"key_size\": {}, \"value_size\": {}, \
             \"max_entries\": {}, \"flags\": {}}}",
            json_str(name), map_type, info.key_size(), info.value_size(), info.max_entries(),
            info.map_flags()
        );
    }
    for name in ["L_PCPU_ARRAY", "B_PCPU_ARRAY"] {
        if let Some(map) = ebpf.map(name) {
            let values = PerCpuArray::<_, u64>::try_from(map)
                .map_err(|e| chain(&e))
                .and_then(|a| a.get(&0, 0).map_err(|e| chain(&e)))
                .map(|v| v.len());
            match values {
                Ok(n) => println!("{{\"percpu\": {}, \"values\": {n}}}", json_str(name)),
                Err(e) => println!("{{\"percpu\": {}, \"error\": {}}}", json_str(name),
                                   json_str(&e)),
            }
        }
    }
    let btf = Btf::from_sys_fs().map_err(|e| chain(&e));
    let mut names: Vec<String> = ebpf.programs().map(|(n, _)| n.to_owned()).collect();
    names.sort();
    for name in names {
        let program = ebpf.program_mut(&name).expect("listed program");
        let (kind, result) = load(program, &btf);
        let (loaded, error) = match result {
            Ok(()) => ("true", "null".to_owned()),
            Err(e) => ("false", json_str(&e)),
        };
        println!("{{\"program\": {}, \"kind\": \"{kind}\", \"loaded\": {loaded}, \"error\": {error}}}",
                 json_str(&name));
    }
    ExitCode::SUCCESS
}
