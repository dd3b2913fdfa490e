"""Tests of the static checks (pytest_ebpf.analysis.checks) on objects compiled from
tests/c/an_*.c."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.analysis.checks import (
    BPF_MAXINSNS,
    all_findings,
    bad_function_ends,
    callees,
    gpl_only_helpers,
    helpers_used,
    indirect_calls,
    instruction_counts,
    is_gpl_compatible,
    kfuncs_used,
    missing_func_info,
    source_line,
    undefined_calls,
)
from pytest_ebpf.kernel import bpf as kernel
from pytest_ebpf.obj.load import load_object
from pytest_ebpf.obj.model import EbpfObject

C_DIR = Path(__file__).parent / "c"


def _obj(compile_c, name: str, *flags: str) -> EbpfObject:  # type: ignore[no-untyped-def]
    return load_object(compile_c((C_DIR / f"{name}.c").read_text(), name, *flags))


@pytest.fixture(scope="module")
def checks_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    return _obj(compile_c, "an_checks")


def test_indirect_call(checks_obj: EbpfObject) -> None:
    prog = checks_obj.program("callx_prog")
    found = indirect_calls(checks_obj, prog)
    assert [f.check for f in found] == ["indirect_call"]
    f = found[0]
    assert f.insn is not None and f.insn.is_callx and f.function == "callx_prog"
    assert "PROG_ARRAY" in f.fix and f"insn {f.insn.index}" in f.message
    assert indirect_calls(checks_obj, checks_obj.program("clean_prog")) == []


def test_undefined_call(checks_obj: EbpfObject) -> None:
    found = undefined_calls(checks_obj, checks_obj.program("undef_prog"))
    assert [f.check for f in found] == ["undefined_call"]
    assert "not_defined_anywhere" in found[0].message
    assert "copy_nonoverlapping" in found[0].fix and "__builtin_memcpy" in found[0].fix
    assert undefined_calls(checks_obj, checks_obj.program("clean_prog")) == []


def test_gpl_only_helper_depends_on_license(compile_c) -> None:  # type: ignore[no-untyped-def]
    mit = _obj(compile_c, "an_checks", '-DAN_LICENSE="MIT"')
    gpl = _obj(compile_c, "an_checks", '-DAN_LICENSE="Dual MIT/GPL"')
    assert mit.license == "MIT" and gpl.license == "Dual MIT/GPL"
    found = gpl_only_helpers(mit, mit.program("printk_prog"))
    assert [f.check for f in found] == ["gpl_only_helper"]
    assert found[0].insn is not None and found[0].insn.imm == 6
    assert "bpf_trace_printk" in found[0].message and "'MIT'" in found[0].message
    assert gpl_only_helpers(gpl, gpl.program("printk_prog")) == []
    # bpf_ktime_get_ns / bpf_get_current_pid_tgid are not GPL-only.
    assert gpl_only_helpers(mit, mit.program("clean_prog")) == []


def test_gpl_compatible_list() -> None:
    for lic in ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL",
                "Dual MPL/GPL"):
        assert is_gpl_compatible(lic)
    not_gpl: tuple[str | None, ...] = ("MIT", "gpl", "GPLv2", "", None, "Proprietary")
    for other in not_gpl:
        assert not is_gpl_compatible(other)


def test_gpl_check_agrees_with_kernel(compile_c) -> None:  # type: ignore[no-untyped-def]
    """The verifier refuses bpf_trace_printk with license MIT and accepts it with GPL."""
    if os.geteuid() != 0 and not kernel.bpf_available()[0]:
        pytest.skip("cannot load programs")
    from pytest_ebpf.obj.elf import read_elf

    path = compile_c((C_DIR / "an_checks.c").read_text(), "an_checks")
    obj = load_object(path)
    prog = obj.program("printk_prog")
    sec = read_elf(path).section(prog.section)
    assert sec is not None and not prog.refs
    code = sec.data[prog.entry.offset * 8 : prog.entry.end * 8]
    bad = kernel.prog_load(kernel.BPF_PROG_TYPE["kprobe"], code, "MIT")
    assert not bad.ok and "GPL" in bad.log
    good = kernel.prog_load(kernel.BPF_PROG_TYPE["kprobe"], code, "GPL")
    assert good.ok, good.log
    assert good.fd is not None
    good.fd.close()


def test_fallthrough_and_missing_func_info(compile_c) -> None:  # type: ignore[no-untyped-def]
    obj = _obj(compile_c, "an_asm")
    prog = obj.program("asm_caller")
    assert callees(prog) == ("asm_leaf",)
    ends = bad_function_ends(obj, prog)
    assert [(f.check, f.function) for f in ends] == [("fallthrough", "asm_leaf")]
    assert ends[0].insn is not None and ends[0].insn.text() == "r0 += 0x1"
    missing = missing_func_info(obj)
    assert [(f.check, f.program, f.function) for f in missing] == [
        ("missing_func_info", "asm_caller", "asm_leaf")
    ]
    checks = sorted(f.check for f in all_findings(obj, prog))
    assert checks == ["fallthrough", "missing_func_info"]


def test_clean_objects_have_no_findings(checks_obj: EbpfObject) -> None:
    prog = checks_obj.program("clean_prog")
    assert all_findings(checks_obj, prog) == []
    assert missing_func_info(checks_obj) == []
    assert helpers_used(prog) == (5, 14)
    assert callees(prog) == ("add_pid",)
    assert kfuncs_used(prog) == ()


def test_rust_example(example_object: Callable[[str], Path]) -> None:
    obj = load_object(example_object("bpfel-unknown-none"))
    lock = obj.program("lock")
    assert callees(lock) == ("is_blocked",)
    assert helpers_used(lock) == (1,)
    # memcpy & co. sit in .text unused: they are nobody's problem.
    assert missing_func_info(obj) == []
    for prog in obj.programs:
        assert all_findings(obj, prog) == [], prog.name
    fn = obj.function("is_blocked")
    line = source_line(obj, fn, fn.calls[0].insn)
    assert line is not None and ".rs:" in line


def test_instruction_counts(checks_obj: EbpfObject) -> None:
    prog = checks_obj.program("clean_prog")
    assert instruction_counts(checks_obj, prog) == []
    small = instruction_counts(checks_obj, prog, limit=prog.instructions - 1)
    assert [f.check for f in small] == ["too_many_instructions"]
    assert str(prog.instructions) in small[0].message and str(BPF_MAXINSNS) in small[0].message


def test_unprivileged_limit(compile_c) -> None:  # type: ignore[no-untyped-def]
    body = "\n".join(f"    x = x * 3 + v[{i % 8}];" for i in range(1500))
    src = (
        '#include "obj_bpf.h"\nSEC("socket")\nint big_prog(u32 *skb)\n{\n'
        "    volatile u32 v[8]; u32 x = skb[0];\n"
        + "".join(f"    v[{i}] = skb[{i}];\n" for i in range(8))
        + body
        + "\n    return x;\n}\nchar _license[] SEC(\"license\") = \"GPL\";\n"
    )
    obj = load_object(compile_c(src, "an_big"))
    prog = obj.program("big_prog")
    assert prog.instructions > BPF_MAXINSNS
    found = instruction_counts(obj, prog)
    assert [f.check for f in found] == ["unprivileged_insn_limit"]
    assert str(prog.instructions) in found[0].message and "1000000" in found[0].message


def test_source_line(checks_obj: EbpfObject) -> None:
    prog = checks_obj.program("callx_prog")
    fn = prog.entry
    call = next(c for c in fn.calls if c.kind == "callx")
    line = source_line(checks_obj, fn, call.insn)
    assert line is not None
    assert line.endswith("return f(skb[1]);") and "an_checks" in line
