"""The abstract interpreter (pytest_ebpf.analysis.absint) against this kernel's verifier.

Corpus ``tests/c/ai_*.c``: ``bad_*`` programs must be refused by the kernel with the message the
interpreter predicts (the same off/size/range numbers), ``ok_*`` twins accepted and not flagged,
``any_*`` not flagged whatever the kernel says (what the interpreter deliberately leaves alone).
Then every program of the suite's other C sources and of the example project: no finding on a
program the kernel accepts.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_ebpf.analysis.absint import AbsintResult, analyse_program
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.cli.verify import run_verify
from pytest_ebpf.errors import ObjectError
from pytest_ebpf.kernel import bpf as kernel
from pytest_ebpf.obj.load import load_object

C_DIR = Path(__file__).parent / "c"
CORPUS = ("ai_packet", "ai_maps", "ai_misc", "ai_returns", "ai_globals", "ai_mapflags")
# Sources of the suite that do not compile with compile_c's defaults (they need flags).
NEEDS_FLAGS = {"an_bigframe.c", "vm_insns.c"}

needs_bpf = pytest.mark.skipif(not kernel.bpf_available()[0], reason="needs bpf() (root)")


def _verdicts(path: Path) -> dict[str, dict[str, Any]]:
    out = io.StringIO()
    run_verify(path, as_json=True, out=out, err=io.StringIO(), loader="native", log=True)
    return {p["name"]: p for p in json.loads(out.getvalue())["programs"]}


def _analyse(path: Path) -> dict[str, AbsintResult]:
    obj = load_object(path)
    return {p.name: analyse_program(obj, p) for p in obj.programs}


@pytest.fixture(scope="module")
def corpus(compile_c: Callable[..., Path]) -> dict[str, tuple[dict[str, Any], AbsintResult]]:
    both: dict[str, tuple[dict[str, Any], AbsintResult]] = {}
    for name in CORPUS:
        path = compile_c((C_DIR / f"{name}.c").read_text(), name)
        verdicts, results = _verdicts(path), _analyse(path)
        assert set(verdicts) == set(results)
        both.update({prog: (verdicts[prog], results[prog]) for prog in results})
    return both


@needs_bpf
def test_corpus_against_the_kernel(
        corpus: dict[str, tuple[dict[str, Any], AbsintResult]]) -> None:
    bad = [n for n in corpus if n.startswith("bad_")]
    assert len(bad) >= 50 and sum(n.startswith("ok_") for n in corpus) >= 45
    caught = 0
    for name, (verdict, result) in corpus.items():
        assert result.gave_up is None, name
        if name.startswith("ok_"):
            assert verdict["loaded"], (name, verdict["error"])
        if not name.startswith("bad_"):
            assert result.findings == (), (name, [f.message for f in result.findings])
            continue
        assert not verdict["loaded"], name
        assert len(result.findings) == 1, (name, [f.message for f in result.findings])
        f = result.findings[0]
        lines = f.reason.split("; ")
        # the kernel's decisive line, and its "invalid access ..." line word for word (off,
        # size, register id and verified range)
        assert lines[-1] == verdict["error"], (name, f.reason, verdict["error"])
        log = verdict["log"].splitlines()
        assert all(line in log for line in lines), (name, lines)
        caught += 1
    assert caught == len(bad)  # recall 1.0 on the corpus


@needs_bpf
def test_corpus_covers_every_class(
        corpus: dict[str, tuple[dict[str, Any], AbsintResult]]) -> None:
    checks: dict[str, int] = {}
    for _, result in corpus.values():
        for f in result.findings:
            checks[f.check] = checks.get(f.check, 0) + 1
    assert checks.keys() == {"packet_bounds", "map_null", "map_value_bounds", "ctx_access",
                             "ctx_modified", "pointer_arithmetic", "return_code",
                             "map_readonly", "map_writeonly", "map_readonly_update"}
    assert min(checks.values()) >= 3


def test_finding_fields(compile_c: Callable[..., Path]) -> None:
    path = compile_c((C_DIR / "ai_packet.c").read_text(), "ai_packet")
    obj = load_object(path)
    (f,) = analyse_program(obj, obj.program("bad_gt")).findings
    assert (f.check, f.rule, f.severity, f.program, f.function) == (
        "packet_bounds", "memory_safety", "error", "bad_gt", "bad_gt")
    assert f.insn is not None and f.insn.is_load and f.insn.mem_size == 1
    assert f"insn {f.insn.index}" in f.message and "ai_packet" in f.message  # the source line
    assert "return d[12];" in f.message
    assert "invalid access to packet, off=12 size=1, R1(id=0,off=12,r=10)" in f.message
    assert "`data + N <= data_end`" in f.fix and "12 + 1 = 13" in f.fix
    assert "ctx.data() + offset + size" in f.fix and "ptr_at" in f.fix
    assert f.as_json()["insn"] == f.insn.index
    obj = load_object(compile_c((C_DIR / "ai_maps.c").read_text(), "ai_maps"))
    (f,) = analyse_program(obj, obj.program("bad_nonull")).findings
    assert "bpf_map_lookup_elem" in f.fix and "Option" in f.fix and "get_ptr()" in f.fix


def test_return_code_findings(compile_c: Callable[..., Path]) -> None:
    obj = load_object(compile_c((C_DIR / "ai_returns.c").read_text(), "ai_returns"))
    (f,) = analyse_program(obj, obj.program("bad_skb_two")).findings
    assert (f.check, f.rule, f.program) == ("return_code", "memory_safety", "bad_skb_two")
    assert f.insn is not None and f.insn.is_exit and "return 2;" in f.message
    assert f.reason == ("At program exit the register R0 has smin=2 smax=2 should have been in "
                        "[0, 1]")
    assert "[0, 1]" in f.fix and "1 lets the packet through" in f.fix and "Rust/Aya" in f.fix
    (f,) = analyse_program(obj, obj.program("bad_recvmsg_zero")).findings
    assert "[1, 1]" in f.fix and "must return 1" in f.fix
    # bind4 returns [0, 3] from 5.12 on, getpeername [1, 1] from 6.7 on: only what every
    # kernel refuses is judged, in this kernel's words
    (f,) = analyse_program(obj, obj.program("bad_bind_four")).findings
    assert f.reason.endswith("should have been in [0, 3]")
    assert analyse_program(obj, obj.program("any_getpeername_zero")).findings == ()
    (f,) = analyse_program(obj, obj.program("bad_getsockname_two")).findings
    assert f.reason.endswith("smin=2 smax=2 should have been in [1, 1]")
    for name in ("ok_xdp_any", "ok_tc_any", "ok_socket_any", "any_skb_range"):
        assert analyse_program(obj, obj.program(name)).findings == (), name


def test_readonly_findings(compile_c: Callable[..., Path]) -> None:
    obj = load_object(compile_c((C_DIR / "ai_globals.c").read_text(), "ai_globals"))
    (f,) = analyse_program(obj, obj.program("bad_ro_field")).findings
    assert (f.check, f.program) == ("map_readonly", "bad_ro_field")
    assert f.insn is not None and f.insn.is_store
    assert f.reason == "write into map forbidden, value_size=52 off=8 size=8"
    assert "`const`" in f.fix and "`static` without `mut`" in f.fix and "52-byte" in f.fix
    (f,) = analyse_program(obj, obj.program("bad_frozen_map")).findings
    assert f.reason == "write into map forbidden, value_size=8 off=0 size=8"
    # a global out of its section: the existing map-value check, on ld_imm64 pointers
    (f,) = analyse_program(obj, obj.program("bad_bss_past")).findings
    assert f.check == "map_value_bounds" and "value_size=32 off=32 size=8" in f.reason
    # .rodata reads may be constants to the kernel: the dead access is not judged
    assert analyse_program(obj, obj.program("ok_ro_dead_code")).findings == ()


def test_map_flag_findings(compile_c: Callable[..., Path]) -> None:
    """BPF_F_WRONLY_PROG / BPF_F_RDONLY_PROG (check_map_access_type, record_func_map): the
    kernel's line and a fix in the developer's words, for loads, stores and helpers."""
    obj = load_object(compile_c((C_DIR / "ai_mapflags.c").read_text(), "ai_mapflags"))

    def one(name: str) -> Finding:
        (f,) = analyse_program(obj, obj.program(name)).findings
        return f

    f = one("bad_wo_counter")  # r->pkts += 1 on a write-only array: the load is refused
    assert (f.check, f.rule, f.program) == ("map_writeonly", "memory_safety", "bad_wo_counter")
    assert f.insn is not None and f.insn.is_load and "r->pkts += 1;" in f.message
    assert f.reason == "read from map forbidden, value_size=24 off=8 size=4"
    assert "BPF_F_WRONLY_PROG" in f.fix and "`+=`" in f.fix and "24-byte" in f.fix
    assert "HashMap::with_max_entries(n, flags)" in f.fix and "Rust/Aya" in f.fix
    assert "__uint(map_flags" in f.fix
    # legacy "maps" definitions carry their flags too
    assert one("bad_wo_legacy").reason == "read from map forbidden, value_size=16 off=12 size=4"
    assert one("bad_ro_legacy").reason == "write into map forbidden, value_size=12 off=8 size=4"
    # the kernel prints the fixed offset, not the variable part ([8, 20] here)
    assert one("bad_wo_var_min").reason == "read from map forbidden, value_size=24 off=0 size=4"
    # helpers: a value or key read from a write-only map (size: what the helper reads)...
    f = one("bad_wo_update_from")
    assert f.insn is not None and f.insn.is_helper_call and f.check == "map_writeonly"
    assert f.reason == "read from map forbidden, value_size=24 off=0 size=24"
    assert one("bad_wo_key").reason == "read from map forbidden, value_size=24 off=16 size=8"
    # ... and a buffer a helper fills, in a read-only map or .rodata
    f = one("bad_ro_load_bytes")
    assert (f.check, f.reason) == ("map_readonly",
                                   "write into map forbidden, value_size=24 off=16 size=8")
    assert one("bad_ro_comm").reason == "write into map forbidden, value_size=24 off=0 size=16"
    assert one("bad_rodata_load_bytes").reason.startswith("write into map forbidden")
    # update/delete on a read-only map, once every argument is known good (a u32 key on the
    # stack: its four bytes are written)
    f = one("bad_ro_update")
    assert (f.check, f.reason) == ("map_readonly_update", "write into map forbidden")
    assert f.insn is not None and f.insn.is_helper_call and "bpf_map_update_elem" in f.message
    assert "BPF_F_RDONLY_PROG" in f.fix and "only user space" in f.fix and "Rust/Aya" in f.fix
    assert one("bad_ro_legacy_delete").check == "map_readonly_update"
    # a key whose bytes are not all written: the kernel may refuse it first, so not judged
    assert analyse_program(obj, obj.program("any_ro_delete_short_key")).findings == ()
    for name in ("ok_wo_store", "ok_wo_update_into", "ok_rw_key", "ok_wo_load_bytes",
                 "ok_bss_load_bytes", "ok_rw_update", "ok_wo_delete", "ok_wo_comm"):
        assert analyse_program(obj, obj.program(name)).findings == (), name


def test_caps_give_up_without_findings(compile_c: Callable[..., Path]) -> None:
    obj = load_object(compile_c((C_DIR / "ai_misc.c").read_text(), "ai_misc"))
    full = analyse_program(obj, obj.program("ok_loop"))
    assert full.gave_up is None and full.states > 600
    capped = analyse_program(obj, obj.program("ok_loop"), max_states=100)
    assert capped.findings == () and capped.states == 101
    assert capped.gave_up == "state cap of 100 instructions reached"
    timed = analyse_program(obj, obj.program("ok_loop"), max_seconds=0.0)
    assert timed.findings == () and timed.gave_up == "time cap of 0 s reached"
    # a bad program capped before its access: nothing is reported either
    obj = load_object(compile_c((C_DIR / "ai_packet.c").read_text(), "ai_packet"))
    result = analyse_program(obj, obj.program("bad_gt"), max_states=3)
    assert result.findings == () and result.gave_up is not None


def _suite_sources() -> list[Path]:
    return sorted(p for p in C_DIR.glob("*.c") if not p.name.startswith("ai_"))


@needs_bpf
def test_no_finding_on_programs_the_kernel_accepts(compile_c: Callable[..., Path]) -> None:
    flagged, analysed, skipped = 0, 0, []
    for src in _suite_sources():
        try:
            path = compile_c(src.read_text(), src.stem)
        except pytest.fail.Exception:
            skipped.append(src.name)
            continue
        try:
            results = _analyse(path)
        except ObjectError as exc:  # objects the model refuses to load are not this test's
            skipped.append(f"{src.name}: {exc}")
            continue
        analysed += len(results)
        suspects = [n for n, r in results.items() if r.findings]
        if not suspects:
            continue
        verdicts = _verdicts(path)
        for name in suspects:
            flagged += 1
            assert not verdicts[name]["loaded"], (src.name, name,
                                                  [f.message for f in results[name].findings])
    assert analysed > 50
    assert set(skipped) == NEEDS_FLAGS, skipped


@needs_bpf
def test_no_finding_on_the_example_project(
        example_object: Callable[[str], Path]) -> None:
    path = example_object("bpfel-unknown-none")
    results = _analyse(path)
    assert results
    verdicts = _verdicts(path)
    for name, result in results.items():
        assert result.gave_up is None or not result.findings
        if verdicts[name]["loaded"]:
            assert result.findings == (), (name, [f.message for f in result.findings])


def test_fast_enough(compile_c: Callable[..., Path]) -> None:
    start = time.monotonic()
    for name in CORPUS:
        _analyse(compile_c((C_DIR / f"{name}.c").read_text(), name))
    assert time.monotonic() - start < 5.0
