"""The verifier's rejections that need no abstract state, predicted without loading
(:mod:`pytest_ebpf.analysis.flow`: the rules control_flow, encoding, registers, stack_access;
:mod:`pytest_ebpf.analysis.globalfuncs`: global_funcs, proven on ``pred_global.c``).

Each program of ``tests/c/pred_*.c`` is ``bad_*`` (the kernel rejects it) or ``ok_*`` (its twin,
accepted). Statically, a bad program gets exactly one finding of these rules, whose ``reason`` is
the verifier's line; an ok program gets none. With root, the running kernel is asked too: it must
reject the bad one with that very line and accept the twin. Every other object of ``tests/c``
(none of them hand-crafted to fail these rules) gets no finding at all: no false alarms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.analysis.profiles import host_profile, named_profile
from pytest_ebpf.analysis.rules import judge, rule
from pytest_ebpf.kernel import bpf as kernel
from pytest_ebpf.kernel.bpftool import bpftool_path
from pytest_ebpf.kernel.loader import load_all
from pytest_ebpf.obj.load import load_object
from pytest_ebpf.obj.model import EbpfObject

CompileC = Callable[..., Path]

C_DIR = Path(__file__).parent / "c"
RULE_IDS = ("control_flow", "encoding", "registers", "stack_access")
_AVAILABLE, _WHY = kernel.bpf_available()
needs_root = pytest.mark.skipif(not _AVAILABLE, reason=f"loading needs root or CAP_BPF: {_WHY}")

# program -> (check, the verifier's line)
EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    "pred_flow": {
        "bad_unreachable": ("unreachable_insn", "unreachable insn 2"),
        "bad_jump_range": ("jump_out_of_range", "jump out of range from insn 1 to 7"),
        "bad_jump_ldimm64": ("jump_into_ld_imm64", "jump into the middle of ldimm64 insn 2"),
        "bad_fallthrough": ("fallthrough", "last insn is not an exit or jmp"),
    },
    "pred_encoding": {
        "bad_register": ("invalid_register", "R11 is invalid"),
        "bad_frame_pointer": ("frame_pointer_write", "frame pointer is read only"),
        "bad_reserved_mov": ("reserved_fields", "BPF_MOV uses reserved fields"),
        "bad_reserved_alu": ("reserved_fields", "BPF_ALU uses reserved fields"),
        "bad_div_zero": ("div_by_zero", "div by zero"),
        "bad_shift": ("invalid_shift", "invalid shift 64"),
        "bad_poisoned": ("poisoned_call", "invalid func unknown#195896080"),
    },
    "pred_registers": {
        "bad_uninit": ("uninit_register", "R3 !read_ok"),
        "bad_after_call": ("uninit_register", "R1 !read_ok"),
        "bad_both_paths": ("uninit_register", "R2 !read_ok"),
        "bad_r0_exit": ("uninit_r0", "R0 !read_ok"),
    },
    "pred_stack": {
        "bad_stack_above": ("stack_out_of_bounds", "invalid write to stack R10 off=8 size=8"),
        "bad_stack_below": ("stack_out_of_bounds",
                            "invalid write to stack R10 off=-520 size=8"),
        "bad_stack_misaligned": ("misaligned_stack",
                                 "misaligned stack access off 0+0+-2 size 4"),
        "bad_stack_read": ("stack_out_of_bounds", "invalid read from stack R10 off=0 size=8"),
    },
}
# global functions (the rule global_funcs): program -> the line btf_prepare_func_args logs; the
# decisive line is then "Caller passes invalid args into func#1 ('name')"
GLOBAL: dict[str, str] = {
    "bad_ret_ptr": "Global function ret_ptr() doesn't return scalar. Only those are supported.",
    "bad_ret_void": "Global function ret_void() doesn't return scalar. Only those are supported.",
    "bad_void_arg": "arg#0 reference type('UNKNOWN ') size cannot be determined: -22",
    "bad_fwd_arg": "arg#1 reference type('FWD opaque') size cannot be determined: -22",
}
# objects of tests/c that need flags of their own, and the ones the suite builds elsewhere
_FLAGS: dict[str, tuple[str, ...]] = {"an_bigframe": ("-mllvm", "-bpf-stack-size=1024"),
                                      "vm_insns": ("-DINSNS=1000",)}


def predicted(obj: EbpfObject, rule_ids: tuple[str, ...] = (*RULE_IDS, "global_funcs")
              ) -> dict[str, list[tuple[str, str]]]:
    """Program -> (check, reason) of every finding of *rule_ids* (the four rules and
    global_funcs) on the running kernel."""
    verdicts = judge(obj, [host_profile()], [rule(r) for r in rule_ids])
    return {v.program.name: [(f.check, f.reason) for f in v.findings] for v in verdicts}


@pytest.fixture(scope="module")
def pred_objects(compile_c: CompileC) -> dict[str, EbpfObject]:
    return {name: load_object(compile_c((C_DIR / f"{name}.c").read_text(), name))
            for name in EXPECTED}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_program_gets_its_one_finding_and_each_twin_none(
        pred_objects: dict[str, EbpfObject], name: str) -> None:
    obj = pred_objects[name]
    found = predicted(obj)
    bad = EXPECTED[name]
    for prog in obj.program_names:
        if prog.startswith("bad_"):
            assert found[prog] == [bad[prog]], prog
        else:
            assert prog.startswith("ok_") and found[prog] == [], (prog, found[prog])
    assert {p for p in obj.program_names if p.startswith("bad_")} == set(bad)
    assert {p.removeprefix("bad_") for p in bad} <= {
        p.removeprefix("ok_") for p in obj.program_names if p.startswith("ok_")}


@pytest.fixture(scope="module")
def global_obj(compile_c: CompileC) -> EbpfObject:
    return load_object(compile_c((C_DIR / "pred_global.c").read_text(), "pred_global"))


def test_global_functions_the_kernel_refuses(global_obj: EbpfObject) -> None:
    found = predicted(global_obj, ("global_funcs",))
    assert {p: f for p, f in found.items() if f} == {
        p: [("global_func_signature", line)] for p, line in GLOBAL.items()}
    assert {p.removeprefix("bad_") for p in GLOBAL} <= {
        p.removeprefix("ok_") for p in global_obj.program_names if p.startswith("ok_")}
    (f,) = next(v for v in judge(global_obj, [host_profile()], [rule("global_funcs")])
                if v.program.name == "bad_void_arg").findings
    assert (f.rule, f.function, f.kernel) == ("global_funcs", "void_arg", host_profile().label)
    assert f.insn is not None and f.insn.is_pseudo_call and ".c:" in f.message
    assert "static" in f.fix and "#[inline(always)]" in f.fix


def test_global_functions_by_release(global_obj: EbpfObject) -> None:
    """Before 5.12 only the context is a pointer a global function may take; void stays
    refused through 6.18; the builtins aya-obj makes static are never judged."""
    old = {v.program.name: [f.reason for f in v.findings]
           for v in judge(global_obj, [named_profile("5.10")], [rule("global_funcs")])}
    assert old["ok_void_arg"] == ["Arg#0 type PTR in sized_arg() is not supported yet."]
    assert old["bad_ret_ptr"] == [GLOBAL["bad_ret_ptr"]]
    assert old["ok_ctx_arg"] == old["ok_static"] == []
    assert all(p.startswith("bad_") for p, f in predicted(global_obj, ("global_funcs",)).items()
               if f)


@needs_root
def test_the_kernel_refuses_the_global_functions(global_obj: EbpfObject) -> None:
    with load_all(global_obj, loader="native") as loaded:
        results = {r.program: r for r in loaded.results.values()}
    for prog, r in results.items():
        if prog in GLOBAL:
            assert not r.loaded and GLOBAL[prog] in r.log, (prog, r.log[-800:])
            assert r.error is not None and r.error.startswith(
                "Caller passes invalid args into func#"), r.error
        else:
            assert r.loaded, (prog, r.error)


@needs_root
@pytest.mark.skipif(bpftool_path() is None, reason="bpftool is not installed")
def test_libbpf_judges_the_global_functions_as_the_native_loader(global_obj: EbpfObject) -> None:
    """libbpf (through bpftool) as the outside truth, program by program: it too makes a hidden
    global function static (``ok_hidden`` loads), and refuses the others as the kernel does."""
    verdicts = {}
    for loader in ("native", "bpftool"):
        with load_all(global_obj, loader=loader) as loaded:
            verdicts[loader] = {r.program: r.loaded for r in loaded.results.values()}
    assert verdicts["native"] == verdicts["bpftool"]
    assert verdicts["native"]["ok_hidden"] and not verdicts["native"]["bad_void_arg"]


def test_findings_carry_where_and_how(pred_objects: dict[str, EbpfObject]) -> None:
    obj = pred_objects["pred_registers"]
    verdict = next(v for v in judge(obj, [host_profile()], [rule("registers")])
                   if v.program.name == "bad_after_call")
    (f,) = verdict.findings
    assert (f.rule, f.function, f.insn is not None and f.insn.text()) == (
        "registers", "bad_after_call", "r0 = r1")
    assert "pred_registers" in f.message and ".c:" in f.message  # the source line
    assert f.message.endswith('the verifier says "R1 !read_ok"'), f.message
    assert "r6-r9" in f.fix
    assert verdict.summary().endswith("(R1 !read_ok)")


def test_the_kernel_indices_follow_the_loaders_layout(pred_objects: dict[str, EbpfObject]) -> None:
    prog = pred_objects["pred_registers"].program("ok_void_subprog")
    assert [f.name for f in prog.load_order] == ["ok_void_subprog", "leaf"]


@needs_root
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_kernel_agrees(pred_objects: dict[str, EbpfObject], name: str) -> None:
    obj = pred_objects[name]
    with load_all(obj, loader="native") as loaded:
        verdicts = {r.program: (r.loaded, r.error) for r in loaded.results.values()}
    for prog, (ok, error) in verdicts.items():
        if prog.startswith("bad_"):
            assert (ok, error) == (False, EXPECTED[name][prog][1]), prog
        else:
            assert ok, (prog, error)


def _corpus(compile_c: CompileC) -> list[tuple[str, Path]]:
    """(name, object) of every tests/c source but the pred_ ones."""
    return [(src.stem, compile_c(src.read_text(), src.stem, *_FLAGS.get(src.stem, ())))
            for src in sorted(C_DIR.glob("*.c")) if not src.stem.startswith("pred_")]


def test_no_global_function_finding_on_the_example(
        example_object: Callable[[str], Path]) -> None:
    """The Rust example (memset & co. global in its BTF, made static by the loaders)."""
    obj = load_object(example_object("bpfel-unknown-none"))
    assert {p: f for p, f in predicted(obj, ("global_funcs",)).items() if f} == {}


def test_no_finding_on_the_suites_objects(compile_c: CompileC) -> None:
    """Nothing in tests/c but an_asm.c (a function falling through its end, on purpose) trips
    the four rules."""
    found = {}
    for name, path in _corpus(compile_c):
        for prog, got in predicted(load_object(path)).items():
            if got:
                found[f"{name}:{prog}"] = got
    assert found == {"an_asm:asm_caller": [("fallthrough", "last insn is not an exit or jmp")]
                     }, found


@needs_root
def test_no_false_alarm_on_what_the_kernel_accepts(compile_c: CompileC) -> None:
    """Every program of tests/c the kernel loads gets no finding of the four rules."""
    alarms = []
    for name, path in _corpus(compile_c):
        obj = load_object(path)
        found = predicted(obj)
        try:
            with load_all(obj, loader="native") as loaded:
                accepted = [r.program for r in loaded.results.values() if r.loaded]
        except Exception:  # objects the native loader cannot prepare: nothing to compare
            continue
        alarms += [(name, p, found[p]) for p in accepted if found.get(p)]
    assert alarms == []
