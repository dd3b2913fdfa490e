"""Tests of the ELF reader and the object model (elf, progtypes, maps, object, model).

Every object is compiled here by clang-19 from ``tests/c/obj_*.c`` and cross-checked against
``llvm-readelf-22`` / ``llvm-objdump-22`` output where those tools are installed.
"""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.elf import R_BPF_64_32, read_elf
from pytest_ebpf.obj.load import load_object, load_object_bytes
from pytest_ebpf.obj.model import CallSite, EbpfObject
from pytest_ebpf.obj.progtypes import program_type

CompileC = Callable[..., Path]
C_DIR = Path(__file__).parent / "c"
READELF = "llvm-readelf-22"
OBJDUMP = "llvm-objdump-22"


def _source(name: str) -> str:
    return (C_DIR / name).read_text()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: run scripts/setup.sh test", pytrace=False)
    return path


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def multi_path(compile_c: CompileC) -> Path:
    return compile_c(_source("obj_multi.c"), "obj_multi")


@pytest.fixture(scope="module")
def multi(multi_path: Path) -> EbpfObject:
    return load_object(multi_path)


@pytest.fixture(scope="module")
def extern_obj(compile_c: CompileC) -> EbpfObject:
    return load_object(compile_c(_source("obj_extern.c"), "obj_extern"))


@pytest.fixture(scope="module")
def asm_obj(compile_c: CompileC) -> EbpfObject:
    return load_object(compile_c(_source("obj_asm.c"), "obj_asm"))


# ---------------------------------------------------------------------------------------------
# llvm tool output parsing (the cross-check oracle)
# ---------------------------------------------------------------------------------------------

_SYM_LINE = re.compile(
    r"^\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+(\w+)\s+(\w+)\s+(\w+)\s+(\w+)\s*(.*)$"
)


def _readelf_symbols(path: Path) -> list[tuple[int, int, str, str, str, str]]:
    """(value, size, type, bind, ndx, name) of every symbol."""
    out = []
    for line in _run(_tool(READELF), "-s", "-W", str(path)).splitlines():
        m = _SYM_LINE.match(line)
        if m:
            value, size, typ, bind, _vis, ndx, name = m.groups()
            out.append((int(value, 16), int(size), typ, bind, ndx, name.strip()))
    return out


def _readelf_sections(path: Path) -> dict[int, str]:
    out = {}
    for line in _run(_tool(READELF), "-S", "-W", str(path)).splitlines():
        m = re.match(r"^\s*\[\s*(\d+)\]\s+(\S*)\s+[A-Z_]+\s", line)
        if m and m.group(2):
            out[int(m.group(1))] = m.group(2)
    return out


_DIS_SECTION = re.compile(r"^Disassembly of section (.+):$")
_DIS_RELOC = re.compile(r"^\s+([0-9a-f]+):\s+(R_BPF_\w+)\s+(\S+)$")


def _objdump_calls(path: Path) -> dict[tuple[str, int], tuple[str, str | None]]:
    """(section, slot) -> (instruction text, relocation symbol or None) for every call."""
    calls: dict[tuple[str, int], tuple[str, str | None]] = {}
    section = ""
    last: tuple[str, int] | None = None
    for line in _run(_tool(OBJDUMP), "-dr", "--no-show-raw-insn", str(path)).splitlines():
        if m := _DIS_SECTION.match(line):
            section = m.group(1)
            continue
        if m := _DIS_RELOC.match(line):
            if last is not None and last in calls and int(m.group(1), 16) == last[1] * 8:
                calls[last] = (calls[last][0], m.group(3))
            continue
        m = re.match(r"^\s*(\d+):\s+(.*)$", line)
        if m and section:
            slot, text = int(m.group(1)), m.group(2).strip()
            last = (section, slot)
            if text.startswith("call"):
                calls[last] = (text, None)
    return calls


# ---------------------------------------------------------------------------------------------
# Programs, functions, calls
# ---------------------------------------------------------------------------------------------


def test_programs_and_their_kinds(multi: EbpfObject) -> None:
    got = {(p.name, p.section, p.kind.prog_type, p.kind.label) for p in multi.programs}
    assert got == {
        ("xdp_pass", "xdp", "xdp", "xdp"),
        ("xdp_drop", "xdp", "xdp", "xdp"),
        ("tc_ingress", "tc", "sched_cls", "classifier"),
        ("kp_open", "kprobe/do_sys_openat2", "kprobe", "kprobe"),
        ("tp_execve", "tracepoint/syscalls/sys_enter_execve", "tracepoint", "tracepoint"),
        ("sock_filter", "socket", "socket_filter", "socket_filter"),
    }
    assert multi.program("kp_open").kind.attach_target == "do_sys_openat2"
    assert multi.program("tp_execve").kind.attach_target == "syscalls/sys_enter_execve"
    assert multi.program("xdp_pass").kind.expected_attach_type == "xdp"
    assert multi.license == "Dual MIT/GPL"
    assert multi.kernel_version == 0x050F00
    assert multi.byteorder == "little"


def test_several_programs_in_one_section(multi: EbpfObject) -> None:
    xdp = [p for p in multi.programs if p.section == "xdp"]
    assert [p.name for p in xdp] == ["xdp_pass", "xdp_drop"]
    assert xdp[0].entry.offset == 0
    assert xdp[1].entry.offset == xdp[0].entry.end
    # a program-section static function is a function, not a program
    assert multi.function("tc_local").global_ is False
    assert "tc_local" not in multi.program_names


def test_functions_match_readelf(multi_path: Path, multi: EbpfObject) -> None:
    sections = _readelf_sections(multi_path)
    expected = {
        (sections[int(ndx)], name, value // 8, size)
        for value, size, typ, _bind, ndx, name in _readelf_symbols(multi_path)
        if typ == "FUNC"
    }
    got = {(f.section, f.name, f.offset, f.size_bytes) for f in multi.functions}
    assert got == expected
    for f in multi.functions:
        assert f.insns[0].index == f.offset
        assert sum(i.size for i in f.insns) == f.slots


def test_sections_match_readelf(multi_path: Path, multi: EbpfObject) -> None:
    sections = _readelf_sections(multi_path)
    assert {s.index: s.name for s in multi.sections} == sections
    xdp = multi.section("xdp")
    assert xdp.executable and xdp.type == "progbits"
    assert not multi.section(".BTF").executable


def _call_sites(obj: EbpfObject) -> dict[tuple[str, int], CallSite]:
    return {(f.section, c.insn.index): c for f in obj.functions for c in f.calls}


def test_calls_match_objdump(multi_path: Path, multi: EbpfObject) -> None:
    image = read_elf(multi_path)
    calls = _call_sites(multi)
    dumped = _objdump_calls(multi_path)
    assert set(calls) == set(dumped)
    by_start = {(f.section, f.offset): f.name for f in multi.functions}
    for (section, slot), (text, reloc_sym) in dumped.items():
        site = calls[(section, slot)]
        imm = int(text.split()[1], 16) if text.split()[1] != "-0x1" else -1
        if reloc_sym is None:
            assert site.kind in ("helper", "bpf"), text
            if site.kind == "helper":
                assert site.helper_id == imm
            else:  # same-section call, no relocation
                assert by_start[(section, slot + 1 + imm)] == site.target
            continue
        sym = next(s for s in image.symbols if s.name == reloc_sym)
        if sym.section_index is None:
            assert site.kind in ("undefined", "kfunc")
            assert site.target == reloc_sym
        elif sym.type == "func":
            assert (site.kind, site.target) == ("bpf", reloc_sym)
        else:  # section symbol: the callee's slot is in imm
            assert sym.type == "section"
            assert site.kind == "bpf"
            assert site.target == by_start[(reloc_sym, imm + 1)]
    # the relocations we relied on are R_BPF_64_32
    relocated = [r for rels in image.relocations.values() for r in rels if r.type == R_BPF_64_32]
    assert len(relocated) == sum(1 for v in dumped.values() if v[1] is not None)


def test_subprogram_calls_and_instruction_counts(multi: EbpfObject) -> None:
    calls = {c.target: c for c in multi.program("xdp_pass").entry.calls}
    assert calls["shared_sum"].kind == "bpf"
    assert calls["shared_sum"].target_section == ".text"
    assert calls["bpf_map_lookup_elem"].kind == "helper"
    assert calls["bpf_map_lookup_elem"].helper_id == 1

    scale = multi.function("scale")
    shared = multi.function("shared_sum")
    assert scale.section == shared.section == ".text"
    assert not scale.global_ and shared.global_
    assert [c.target for c in shared.calls] == ["scale"]

    xdp_pass = multi.program("xdp_pass")
    assert [f.name for f in xdp_pass.functions] == ["xdp_pass", "shared_sum", "scale"]
    assert xdp_pass.instructions == xdp_pass.entry.slots + shared.slots + scale.slots

    tc = multi.program("tc_ingress")
    assert {f.name for f in tc.functions} == {"tc_ingress", "shared_sum", "scale", "tc_local"}
    local = next(c for c in tc.entry.calls if c.target == "tc_local")
    assert local.kind == "bpf" and local.target_section == "tc"

    tp = multi.program("tp_execve")  # calls scale through the .text section symbol
    assert [f.name for f in tp.functions] == ["tp_execve", "scale"]
    assert tp.instructions == tp.entry.slots + scale.slots
    helpers = [c.target for c in tp.entry.calls if c.kind == "helper"]
    assert helpers == ["bpf_ktime_get_ns", "bpf_ringbuf_output", "bpf_tail_call"]

    # a bpf_loop callback is reachable through a function-pointer reference
    drop = multi.program("xdp_drop")
    ptr = [r for r in drop.entry.refs if r.kind == "func_ptr"]
    assert [(r.target, r.target_section) for r in ptr] == [("loop_cb", ".text")]
    assert [f.name for f in drop.functions] == ["xdp_drop", "loop_cb"]
    assert drop.instructions == drop.entry.slots + multi.function("loop_cb").slots


def test_every_function_is_listed(multi: EbpfObject) -> None:
    names = {f.name for f in multi.functions}
    assert names == {
        "shared_sum", "scale", "loop_cb", "xdp_pass", "xdp_drop", "tc_ingress", "tc_local",
        "kp_open", "tp_execve", "sock_filter",
    }
    assert all(p.entry in multi.functions for p in multi.programs)


def test_undefined_and_kfunc_calls(extern_obj: EbpfObject) -> None:
    sites = {c.target: c for f in extern_obj.functions for c in f.calls}
    assert sites["undefined_helper"].kind == "undefined"
    assert sites["bpf_kfunc_example"].kind == "kfunc"
    assert set(extern_obj.externs) == {
        "undefined_helper", "bpf_kfunc_example", "LINUX_KERNEL_VERSION",
    }
    (kconfig_ref,) = extern_obj.function("fentry_connect").refs
    assert (kconfig_ref.kind, kconfig_ref.target) == ("data", ".kconfig")
    assert kconfig_ref.symbol == "LINUX_KERNEL_VERSION"
    kconfig = extern_obj.data_section(".kconfig")
    assert kconfig.kind == "kconfig"
    assert [s.name for s in kconfig.symbols] == ["LINUX_KERNEL_VERSION"]
    fentry = extern_obj.program("fentry_connect").kind
    assert (fentry.prog_type, fentry.expected_attach_type) == ("tracing", "trace_fentry")
    assert fentry.attach_target == "tcp_connect"
    lsm = extern_obj.program("lsm_open").kind
    assert (lsm.prog_type, lsm.expected_attach_type, lsm.attach_target) == (
        "lsm", "lsm_mac", "file_open",
    )


def test_sections_without_func_symbols(asm_obj: EbpfObject) -> None:
    sock = asm_obj.program("asm_entry")
    assert sock.section == "socket"
    assert sock.entry.offset == 0 and sock.entry.slots == 6
    kinds = [(c.kind, c.target, c.target_offset) for c in sock.entry.calls]
    assert kinds == [("helper", "bpf_map_lookup_elem", None), ("bpf", "asm_entry", 4)]
    xdp = asm_obj.program("xdp")  # no symbol at all: named after the section
    assert xdp.section == "xdp" and xdp.instructions == 2
    # FUNC symbols without a size extend to the next function or the section end
    first, second = asm_obj.function("tc_first"), asm_obj.function("tc_second")
    assert (first.offset, first.slots, second.offset, second.slots) == (0, 3, 3, 2)
    assert [p.name for p in asm_obj.programs if p.section == "tc"] == ["tc_first", "tc_second"]


def test_lookup_errors(multi: EbpfObject) -> None:
    with pytest.raises(LookupError, match=r"no program named 'nope'.*xdp_pass"):
        multi.program("nope")
    with pytest.raises(LookupError, match=r"no function named 'nope'"):
        multi.function("nope")
    with pytest.raises(LookupError, match=r"no function named 'scale' in section 'xdp'"):
        multi.function("scale", section="xdp")
    with pytest.raises(LookupError, match="no map named"):
        multi.map("nope")
    assert multi.program("tc").name == "tc_ingress"  # the only program of a section


# ---------------------------------------------------------------------------------------------
# Maps and data
# ---------------------------------------------------------------------------------------------


def test_legacy_maps(multi: EbpfObject) -> None:
    counts = multi.map("legacy_counts")
    assert (counts.section, counts.source, counts.type, counts.type_id) == (
        "maps", "legacy", "hash", 1,
    )
    assert (counts.key_size, counts.value_size, counts.max_entries, counts.flags) == (4, 8, 128, 0)
    assert counts.pinning is None and counts.id is None and counts.size == 20
    pinned = multi.map("legacy_pinned")  # the seven-field (Aya / iproute2) layout
    assert (pinned.type, pinned.key_size, pinned.value_size, pinned.max_entries) == (
        "array", 4, 16, 4,
    )
    assert (pinned.id, pinned.pinning, pinned.offset, pinned.size) == (7, 2, 20, 28)


def test_btf_maps(multi: EbpfObject) -> None:
    events = multi.map("events_by_pid")
    assert (events.section, events.source, events.type) == (".maps", "btf", "lru_hash")
    assert (events.key_size, events.value_size, events.max_entries) == (4, 16, 1024)
    assert (events.flags, events.pinning) == (2, 1)
    assert multi.btf is not None and events.value_type_id is not None
    assert multi.btf.resolve(events.value_type_id).name == "event"
    ring = multi.map("ring")
    assert (ring.type, ring.max_entries, ring.key_size, ring.value_size) == (
        "ringbuf", 4096, 0, 0,
    )
    jump = multi.map("jump_table")
    assert (jump.type, jump.key_size, jump.value_size) == ("prog_array", 4, 4)
    outer = multi.map("outer")
    assert (outer.type, outer.key_size, outer.value_size, outer.max_entries) == (
        "array_of_maps", 4, 4, 2,
    )
    assert outer.inner is not None
    assert (outer.inner.type, outer.inner.key_size, outer.inner.value_size) == ("array", 4, 8)
    assert outer.inner.max_entries == 8
    names = [m.name for m in multi.maps]
    assert names[:2] == ["legacy_counts", "legacy_pinned"]  # legacy first, then BTF
    assert set(names[2:]) == {"events_by_pid", "ring", "outer", "jump_table"}
    btf_offsets = [m.offset for m in multi.maps[2:]]
    assert btf_offsets == sorted(btf_offsets)
    assert multi.problems == ()


def test_map_references(multi: EbpfObject) -> None:
    refs = {
        (p.name, r.target)
        for p in multi.programs
        for r in p.refs
        if r.kind == "map"
    }
    assert refs == {
        ("xdp_pass", "legacy_counts"),
        ("kp_open", "events_by_pid"),
        ("tp_execve", "ring"),
        ("tp_execve", "jump_table"),
        ("sock_filter", "outer"),
        ("sock_filter", "legacy_pinned"),
    }


def test_data_sections_and_references(multi: EbpfObject) -> None:
    kinds = {d.name: d.kind for d in multi.data_sections}
    assert kinds == {".data": "data", ".rodata": "rodata", ".bss": "bss"}
    bss = multi.data_section(".bss")
    assert bss.size == 16 and bss.data == b""
    assert {(s.name, s.offset, s.global_) for s in bss.symbols} == {
        ("drops", 0, True), ("hidden_total", 8, False),
    }
    rodata = multi.data_section(".rodata")
    assert rodata.data == struct.pack("<I", 42)
    data_refs = {
        (r.section, r.target, r.addend, r.symbol)
        for f in multi.functions
        for r in f.refs
        if r.kind == "data"
    }
    assert (".text", ".bss", 0, "drops") in data_refs
    assert (".text", ".rodata", 0, "threshold") in data_refs
    assert ("xdp", ".data", 0, "packets") in data_refs
    # a static variable is reached through the section symbol plus an addend
    assert ("xdp", ".bss", 8, "hidden_total") in data_refs


# ---------------------------------------------------------------------------------------------
# Variants: no BTF, big endian, bytes input, Rust objects
# ---------------------------------------------------------------------------------------------


def test_object_without_btf(compile_c: CompileC) -> None:
    obj = load_object(compile_c(_source("obj_multi.c"), "obj_multi_nobtf", "-g0"))
    assert obj.btf is None and obj.btf_ext is None
    assert len(obj.programs) == 6
    assert obj.map("legacy_counts").max_entries == 128
    ring = obj.map("ring")
    assert (ring.type, ring.source) == ("unknown", "btf")
    assert len(obj.problems) == 1 and "no .BTF section" in obj.problems[0]
    assert obj.program("xdp_pass").instructions > obj.program("xdp_pass").entry.slots


def _summary(obj: EbpfObject) -> object:
    return (
        [(p.name, p.section, p.instructions, [f.name for f in p.functions]) for p in obj.programs],
        [(f.section, c.insn.index, c.kind, c.target) for f in obj.functions for c in f.calls],
        [(f.section, r.insn_index, r.kind, r.target, r.addend) for f in obj.functions
         for r in f.refs],
        [(m.name, m.type, m.key_size, m.value_size, m.max_entries, m.pinning) for m in obj.maps],
        obj.license,
        obj.kernel_version,
    )


def test_big_endian_object(compile_c: CompileC, multi: EbpfObject) -> None:
    path = compile_c(_source("obj_multi.c"), "obj_multi_be", "-target", "bpfeb")
    big = load_object(path)
    assert big.byteorder == "big"
    assert _summary(big) == _summary(multi)


def test_load_object_bytes(multi_path: Path, multi: EbpfObject) -> None:
    obj = load_object_bytes(multi_path.read_bytes(), "in-memory.o")
    assert obj.path == "in-memory.o"
    assert _summary(obj) == _summary(multi)


@pytest.mark.parametrize("arch", ["bpfel-unknown-none", "bpfeb-unknown-none"])
def test_rust_example_object(arch: str, example_object: Callable[[str], Path]) -> None:
    """The Aya example object, built by cargo for both byte orders."""
    path = example_object(arch)
    obj = load_object(path)
    assert obj.byteorder == ("little" if arch.startswith("bpfel") else "big")
    assert obj.programs, "the Aya object has programs"
    sections = _readelf_sections(path)
    symbols = _readelf_symbols(path)
    expected_funcs = {
        (sections[int(ndx)], name) for _v, _s, typ, _b, ndx, name in symbols if typ == "FUNC"
    }
    assert {(f.section, f.name) for f in obj.functions} == expected_funcs
    for prog in obj.programs:
        assert program_type(prog.section) is not None
        assert prog.instructions >= prog.entry.slots
    dumped = _objdump_calls(path)
    assert set(_call_sites(obj)) == set(dumped)
    legacy = [m for m in obj.maps if m.source == "legacy"]
    assert all(m.size >= 20 for m in legacy)


# ---------------------------------------------------------------------------------------------
# Program types
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "prog_type", "attach_type", "target", "label"),
    [
        ("xdp", "xdp", "xdp", None, "xdp"),
        ("xdp.frags", "xdp", "xdp", None, "xdp"),
        ("xdp/devmap", "xdp", "xdp_devmap", None, "xdp"),
        ("xdp/my_prog", "xdp", "xdp", None, "xdp"),  # old Aya: program name after the keyword
        ("tc", "sched_cls", None, None, "classifier"),
        ("classifier", "sched_cls", None, None, "classifier"),
        ("tc/ingress", "sched_cls", "tcx_ingress", None, "tcx"),
        ("tcx/egress", "sched_cls", "tcx_egress", None, "tcx"),
        ("kprobe/tcp_connect", "kprobe", None, "tcp_connect", "kprobe"),
        ("kprobe", "kprobe", None, None, "kprobe"),
        ("kretprobe/tcp_connect", "kprobe", None, "tcp_connect", "kretprobe"),
        ("uprobe//bin/bash:readline", "kprobe", None, "/bin/bash:readline", "uprobe"),
        ("uretprobe", "kprobe", None, None, "uretprobe"),
        ("ksyscall/execve", "kprobe", None, "execve", "ksyscall"),
        ("tracepoint/syscalls/sys_enter_execve", "tracepoint", None,
         "syscalls/sys_enter_execve", "tracepoint"),
        ("tp/sched/sched_switch", "tracepoint", None, "sched/sched_switch", "tracepoint"),
        ("raw_tracepoint/sched_switch", "raw_tracepoint", None, "sched_switch",
         "raw_tracepoint"),
        ("raw_tp/sched_switch", "raw_tracepoint", None, "sched_switch", "raw_tracepoint"),
        ("tp_btf/sched_switch", "tracing", "trace_raw_tp", "sched_switch", "btf_tracepoint"),
        ("fentry/tcp_connect", "tracing", "trace_fentry", "tcp_connect", "fentry"),
        ("fexit/tcp_connect", "tracing", "trace_fexit", "tcp_connect", "fexit"),
        ("fmod_ret/x", "tracing", "modify_return", "x", "fmod_ret"),
        ("lsm/file_open", "lsm", "lsm_mac", "file_open", "lsm"),
        ("lsm.s/file_open", "lsm", "lsm_mac", "file_open", "lsm"),
        ("iter/task", "tracing", "trace_iter", "task", "iter"),
        ("socket", "socket_filter", None, None, "socket_filter"),
        ("sk_skb/stream_parser", "sk_skb", "sk_skb_stream_parser", None, "sk_skb"),
        ("sk_skb/stream_verdict", "sk_skb", "sk_skb_stream_verdict", None, "sk_skb"),
        ("sk_msg", "sk_msg", "sk_msg_verdict", None, "sk_msg"),
        ("sockops", "sock_ops", "cgroup_sock_ops", None, "sock_ops"),
        ("cgroup_skb/ingress", "cgroup_skb", "cgroup_inet_ingress", None, "cgroup_skb"),
        ("cgroup_skb/egress", "cgroup_skb", "cgroup_inet_egress", None, "cgroup_skb"),
        ("cgroup/skb", "cgroup_skb", None, None, "cgroup_skb"),
        ("cgroup/sock", "cgroup_sock", "cgroup_inet_sock_create", None, "cgroup_sock"),
        ("cgroup/connect4", "cgroup_sock_addr", "cgroup_inet4_connect", None,
         "cgroup_sock_addr"),
        ("cgroup/sendmsg6", "cgroup_sock_addr", "cgroup_udp6_sendmsg", None, "cgroup_sock_addr"),
        ("cgroup/sysctl", "cgroup_sysctl", "cgroup_sysctl", None, "cgroup_sysctl"),
        ("cgroup/getsockopt", "cgroup_sockopt", "cgroup_getsockopt", None, "cgroup_sockopt"),
        ("cgroup/dev", "cgroup_device", "cgroup_device", None, "cgroup_device"),
        ("perf_event", "perf_event", None, None, "perf_event"),
        ("lwt_in", "lwt_in", None, None, "lwt_in"),
        ("lwt_xmit", "lwt_xmit", None, None, "lwt_xmit"),
        ("sk_lookup", "sk_lookup", "sk_lookup", None, "sk_lookup"),
        ("flow_dissector", "flow_dissector", "flow_dissector", None, "flow_dissector"),
        ("struct_ops/tcp_init", "struct_ops", None, "tcp_init", "struct_ops"),
        ("syscall", "syscall", None, None, "syscall"),
        ("netfilter", "netfilter", "netfilter", None, "netfilter"),
        ("freplace/handler", "ext", None, "handler", "extension"),
    ],
)
def test_program_type_table(
    section: str, prog_type: str, attach_type: str | None, target: str | None, label: str
) -> None:
    kind = program_type(section)
    assert kind is not None
    assert (kind.prog_type, kind.expected_attach_type, kind.attach_target, kind.label) == (
        prog_type, attach_type, target, label,
    )


def test_program_type_flags() -> None:
    assert program_type("kretprobe/x").retprobe  # type: ignore[union-attr]
    assert program_type("uretprobe").retprobe  # type: ignore[union-attr]
    assert not program_type("kprobe/x").retprobe  # type: ignore[union-attr]
    assert program_type("lsm.s/file_open").sleepable  # type: ignore[union-attr]
    assert program_type("xdp.frags").frags  # type: ignore[union-attr]
    assert program_type("kprobe.multi/tcp_*").multi  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "section",
    [".text", "maps", ".maps", "license", "version", ".BTF", ".rodata", ".data", ".bss", "",
     "kprobex", "xdpfoo", "unknown/thing", ".debug_info"],
)
def test_non_program_sections(section: str) -> None:
    assert program_type(section) is None


# ---------------------------------------------------------------------------------------------
# Corrupt input
# ---------------------------------------------------------------------------------------------


def _load_error(data: bytes) -> str:
    with pytest.raises(ObjectError) as info:
        load_object_bytes(data, "bad.o")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("bad.o: ")
    return message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.o"
    path.write_bytes(b"")
    with pytest.raises(ObjectError, match="empty file") as info:
        load_object(path)
    assert info.value.path == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ObjectError, match="cannot read file"):
        load_object(tmp_path / "missing.o")


def test_random_bytes() -> None:
    assert "not an ELF file" in _load_error(bytes(random.Random(1).randrange(256)
                                                  for _ in range(10)))


def test_not_bpf_elf() -> None:
    true = Path(shutil.which("true") or "/bin/true")
    message = _load_error(true.read_bytes())
    assert "not an eBPF object" in message and "e_machine" in message


def test_32_bit_elf(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    data[4] = 1  # EI_CLASS = ELFCLASS32
    assert "32-bit" in _load_error(bytes(data))


@pytest.mark.parametrize("fraction", [0.0001, 0.01, 0.1, 0.5, 0.9, 0.99])
def test_truncated_object(multi_path: Path, fraction: float) -> None:
    data = multi_path.read_bytes()
    message = _load_error(data[: max(1, int(len(data) * fraction))])
    assert "truncated" in message or "outside the file" in message or "past the end" in message


def _elf_header(data: bytes | bytearray) -> tuple[int, int, int]:
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    return shoff, shnum, shstrndx


def _section_header_offset(data: bytes, name: str) -> int:
    shoff, shnum, shstrndx = _elf_header(data)
    str_off, = struct.unpack_from("<Q", data, shoff + shstrndx * 64 + 0x18)
    for i in range(shnum):
        hdr = shoff + i * 64
        name_off, = struct.unpack_from("<I", data, hdr)
        start = str_off + name_off
        if data[start : data.index(b"\0", start)].decode() == name:
            return hdr
    raise AssertionError(name)


def test_corrupt_section_header_offset(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    struct.pack_into("<Q", data, 0x28, len(data) + 4096)
    assert "section header table" in _load_error(bytes(data))


def test_corrupt_section_name_table(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    shoff, _shnum, shstrndx = _elf_header(data)
    # point the section name string table past the end of the file
    struct.pack_into("<Q", data, shoff + shstrndx * 64 + 0x18, len(data) + 100)
    assert "past the end of the file" in _load_error(bytes(data))
    data = bytearray(multi_path.read_bytes())
    struct.pack_into("<H", data, 0x3E, 0xFFF0)  # e_shstrndx out of range
    _load_error(bytes(data))


def test_corrupt_section_name_offset(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    hdr = _section_header_offset(bytes(data), "xdp")
    struct.pack_into("<I", data, hdr, 0x7FFFFFF0)
    assert "section name offset" in _load_error(bytes(data))


def test_corrupt_relocation_symbol_index(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    hdr = _section_header_offset(bytes(data), ".relxdp")
    rel_off, = struct.unpack_from("<Q", data, hdr + 0x18)
    r_offset, r_info = struct.unpack_from("<QQ", data, rel_off)
    struct.pack_into("<QQ", data, rel_off, r_offset, (0xFFFF << 32) | (r_info & 0xFFFFFFFF))
    message = _load_error(bytes(data))
    assert "relocation 0 in '.relxdp' refers to symbol 65535" in message


def test_ld_imm64_cut_by_function_end(multi_path: Path, multi: EbpfObject) -> None:
    """An ld_imm64 whose second slot would lie in the next function: named, not decoded."""
    fn = next(f for f in multi.functions
              if any(g.section == f.section and g.offset == f.end for g in multi.functions))
    data = bytearray(multi_path.read_bytes())
    hdr = _section_header_offset(bytes(data), fn.section)
    sec_off, = struct.unpack_from("<Q", data, hdr + 0x18)
    data[sec_off + (fn.end - 1) * 8] = 0x18  # the function's last slot becomes an ld_imm64
    message = _load_error(bytes(data))
    assert f"section {fn.section!r}: function {fn.name!r}: truncated ld_imm64" in message
    assert "second slot is missing" in message, message


def test_corrupt_relocation_target_section(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    hdr = _section_header_offset(bytes(data), ".relxdp")
    struct.pack_into("<I", data, hdr + 0x2C, 999)  # sh_info
    assert "applies to section 999" in _load_error(bytes(data))


def test_corrupt_btf(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    hdr = _section_header_offset(bytes(data), ".BTF")
    btf_off, = struct.unpack_from("<Q", data, hdr + 0x18)
    data[btf_off : btf_off + 2] = b"\x00\x00"  # bad magic
    assert "bad .BTF section" in _load_error(bytes(data))


def test_corrupt_symbol_section_index(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    hdr = _section_header_offset(bytes(data), ".symtab")
    sym_off, = struct.unpack_from("<Q", data, hdr + 0x18)
    struct.pack_into("<H", data, sym_off + 24 * 2 + 6, 0xFEFF)  # st_shndx of symbol 2
    assert "refers to section" in _load_error(bytes(data))


def test_misaligned_function(multi_path: Path) -> None:
    data = bytearray(multi_path.read_bytes())
    image = read_elf(bytes(data))
    symtab = next(s for s in image.sections if s.type == "symtab")
    hdr = _section_header_offset(bytes(data), ".symtab")
    sym_off, = struct.unpack_from("<Q", data, hdr + 0x18)
    index = next(s.index for s in image.symbols if s.name == "xdp_drop")
    assert symtab.entsize == 24
    struct.pack_into("<Q", data, sym_off + 24 * index + 8, 3)  # st_value
    assert "not a multiple of 8" in _load_error(bytes(data))


@pytest.fixture(scope="module")
def fuzz_seed(multi_path: Path) -> bytes:
    return multi_path.read_bytes()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=1 << 30), st.integers(0, 255)),
        min_size=1,
        max_size=8,
    ),
    st.one_of(st.none(), st.integers(min_value=0, max_value=1 << 30)),
)
def test_fuzz_mutations(
    fuzz_seed: bytes, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(fuzz_seed)
    # bias half of the edits towards the headers, where damage matters most
    for position, value in edits:
        where = position % len(data) if position & 1 else (position % 64)
        if position & 2:
            shoff, _n, _s = _elf_header(fuzz_seed)
            where = (shoff + position % (len(data) - shoff)) % len(data)
        data[where] = value
    if cut is not None:
        del data[cut % len(data) :]
    try:
        obj = load_object_bytes(bytes(data), "fuzz.o")
    except ObjectError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(obj, EbpfObject)


def test_btf_map_in_wrapper_structs(compile_c: CompileC) -> None:
    """Older aya-ebpf BTF maps wrap the definition in single-member structs."""
    obj = load_object(compile_c(_source("obj_btfwrap.c"), "obj_btfwrap"))
    array = obj.map("ARRAY")
    assert (array.type, array.key_size, array.value_size, array.max_entries) == (
        "array", 4, 8, 10,
    )
    assert [r.target for r in obj.program("use_array").refs] == ["ARRAY"]
