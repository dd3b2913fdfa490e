"""The rules helper_types and context: helpers and kfuncs a program's kind may not call, and
context accesses it may not make, from the probed tables
(:mod:`pytest_ebpf.analysis.helper_types`).

The kernels' own verdicts on ``tests/c/pred_helpers.c`` (6.1 and 6.12 in VMs, the host) and the
tables against a fresh probe of each kernel are in ``tests/test_vm_profiles.py``; here: the
predictions themselves, by release, and no finding on anything else the suite builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.analysis import helper_types
from pytest_ebpf.analysis.helper_types import HelperTableError, table_for, tables
from pytest_ebpf.analysis.profiles import KernelProfile, host_profile, named_profile
from pytest_ebpf.analysis.rules import judge, rule
from pytest_ebpf.obj.load import load_object
from pytest_ebpf.obj.model import EbpfObject
from pytest_ebpf.obj.progtypes import program_type

CompileC = Callable[..., Path]
C_DIR = Path(__file__).parent / "c"
FLAGS: dict[str, tuple[str, ...]] = {"an_bigframe": ("-mllvm", "-bpf-stack-size=1024"),
                                     "vm_insns": ("-DINSNS=1000",)}
BAD = {"bad_redirect_map": "bpf_redirect_map#51", "bad_bind": "bpf_bind#64",
       "bad_get_stack": "bpf_get_stack#67", "bad_adjust_head": "bpf_xdp_adjust_head#44"}


@pytest.fixture(scope="module")
def helpers_obj(compile_c: CompileC) -> EbpfObject:
    return load_object(compile_c((C_DIR / "pred_helpers.c").read_text(), "pred_helpers"))


def found(obj: EbpfObject, profile: KernelProfile) -> dict[str, list[str]]:
    return {v.program.name: [f.reason for f in v.findings]
            for v in judge(obj, [profile], [rule("helper_types")])}


KEY = ["calling kernel function bpf_lookup_system_key is not allowed",
       "calling kernel function bpf_key_put is not allowed"]


@pytest.mark.parametrize(("kernel", "wording"), [
    ("5.10", "unknown func"), ("6.1", "unknown func"), ("6.6", "unknown func"),
    ("6.12", "program of this type cannot use helper"),
    ("6.18", "program of this type cannot use helper")])
def test_each_bad_program_is_foreseen_in_its_kernels_words(
        helpers_obj: EbpfObject, kernel: str, wording: str) -> None:
    """Every refused call, the first one being the kernel's line; the key kfuncs opened to XDP
    in 6.13 (the 6.18 table)."""
    assert found(helpers_obj, named_profile(kernel)) == {
        **{p: [f"{wording} {h}"] for p, h in BAD.items()},
        **{p.replace("bad_", "ok_"): [] for p in BAD},
        "bad_kfunc_type": KEY, "ok_kfunc_type": [],
        "xdp_system_key": [] if kernel == "6.18" else KEY}


@pytest.mark.parametrize("kernel", ["6.12", "6.18"])
def test_a_sleepable_kfunc_where_the_program_may_not_sleep(
        compile_c: CompileC, kernel: str) -> None:
    obj = load_object(compile_c((C_DIR / "pred_kfuncs.c").read_text(), "pred_kfuncs"))
    verdicts = judge(obj, [named_profile(kernel)], [rule("helper_types")])
    assert {v.program.name: [(f.check, f.reason) for f in v.findings] for v in verdicts} == {
        "bad_sleep_kfunc": [("kfunc_sleepable", "program must be sleepable to call sleepable "
                             "kfunc bpf_copy_from_user_str")],
        "ok_sleep_kfunc": []}
    (f,) = next(v for v in verdicts if v.program.name == "bad_sleep_kfunc").findings
    assert "sleepable" in f.fix and "uprobe.s" in f.fix


def test_a_kfunc_the_kernel_does_not_have(compile_c: CompileC) -> None:
    """bpf_copy_from_user_str came after 6.1: the 6.1 table (asked about the newest table's
    kfuncs) shows it missing, and the loader's refusal is foreseen by the features rule."""
    obj = load_object(compile_c((C_DIR / "pred_kfuncs.c").read_text(), "pred_kfuncs"))
    for v in judge(obj, [named_profile("6.1")], [rule("features"), rule("helper_types")]):
        assert [(f.check, f.rule) for f in v.findings] == [("kfunc_unavailable", "features")]
        assert ('"this kernel has no kernel function bpf_copy_from_user_str in its BTF"'
                in v.findings[0].message)
    assert all(not v.findings for v in
               judge(obj, [named_profile("6.12")], [rule("features")]))


CTX_BAD = {"bad_write_mark": "invalid bpf_context access off=8 size=4",
           "bad_wide_len": "invalid bpf_context access off=0 size=8",
           "bad_past_regs": "invalid bpf_context access off=168 size=8",
           "bad_tp_common": "invalid bpf_context access off=0 size=8"}


@pytest.mark.parametrize("kernel", ["5.10", "6.1", "6.6", "6.12", "6.18"])
def test_context_accesses_the_kind_may_not_make(compile_c: CompileC, kernel: str) -> None:
    """The rule context, at the accesses the abstract interpreter reaches: each bad program's
    one refused access, in the kernel's words; none in the twins."""
    obj = load_object(compile_c((C_DIR / "pred_ctx.c").read_text(), "pred_ctx"))
    verdicts = judge(obj, [named_profile(kernel)], [rule("context")])
    assert {v.program.name: [(f.check, f.reason) for f in v.findings] for v in verdicts} == {
        **{p: [("ctx_field", line)] for p, line in CTX_BAD.items()},
        **{p.replace("bad_", "ok_"): [] for p in CTX_BAD}}
    (f,) = next(v for v in verdicts if v.program.name == "bad_write_mark").findings
    assert "a 4-byte store to the context at offset 8" in f.message and ".c:" in f.message
    assert "socket_filter programs may not make it" in f.message
    assert f.fix.startswith("use the context's fields as the program type has them (it takes "
                            "no store at offset 8")
    (f,) = next(v for v in verdicts if v.program.name == "bad_wide_len").findings
    assert "at offset 0 it takes loads of 1 or 2 or 4 bytes" in f.fix


def test_the_attach_type_decides_not_only_the_program_type(helpers_obj: EbpfObject) -> None:
    """bpf_bind: cgroup/connect4 may call it, cgroup/bind4 (the same program type) may not."""
    bind4, connect4 = helpers_obj.program("bad_bind"), helpers_obj.program("ok_bind")
    assert bind4.kind.prog_type == connect4.kind.prog_type == "cgroup_sock_addr"
    assert found(helpers_obj, host_profile())["bad_bind"] == [
        "program of this type cannot use helper bpf_bind#64"]


def test_a_finding_says_where_and_what_to_do(helpers_obj: EbpfObject) -> None:
    verdict = next(v for v in judge(helpers_obj, [named_profile("6.12")], [rule("helper_types")])
                   if v.program.name == "bad_get_stack")
    (f,) = verdict.findings
    assert (f.check, f.rule, f.kernel, f.function) == (
        "helper_not_allowed", "helper_types", "6.12", "stack_len")
    assert f.insn is not None and f.insn.is_call and f.insn.imm == 67
    assert "pred_helpers" in f.message and ".c:" in f.message
    assert "bpf_get_stack(ctx, frames" in f.message  # the source line
    assert "xdp (xdp) programs may not call it on 6.12" in f.message
    assert f.fix.startswith("do without bpf_get_stack in this xdp program")
    assert "kprobe" in f.fix and "tracepoint" in f.fix
    assert verdict.summary() == ("rejected on 6.12 (program of this type cannot use helper "
                                 "bpf_get_stack#67)")


def test_tables_judge_their_release_or_the_nearest_newer() -> None:
    versions = [t.version for t in tables()]
    assert versions == sorted(versions) and {(6, 1), (6, 12), (6, 18)} <= set(versions)
    for kernel, judged_by in (("5.10", (6, 1)), ("6.1", (6, 1)), ("6.6", (6, 12)),
                              ("6.12", (6, 12)), ("6.18", (6, 18))):
        table = table_for(named_profile(kernel))
        assert table is not None and table.version == judged_by, kernel
    newer = KernelProfile(name="host", version=(versions[-1][0], versions[-1][1] + 1))
    assert table_for(newer) is None  # a release newer than every table: not judged
    arm = KernelProfile(name="host", version=(6, 12), arch="aarch64")
    assert table_for(arm) is None  # the tables are x86-64's (pt_regs, helpers by arch)


def test_what_a_table_cannot_say_is_not_judged() -> None:
    table = table_for(named_profile("6.18"))
    assert table is not None
    xdp = program_type("xdp")
    kprobe = program_type("kprobe/do_nanosleep")
    assert xdp is not None and kprobe is not None
    assert table.allows(xdp.helper_scope, 51) is True
    assert table.allows(kprobe.helper_scope, 51) is False
    # lockdown withdraws bpf_probe_write_user from kprobes on some machines, not on others
    assert table.allows(kprobe.helper_scope, 36) is None
    assert table.allows(xdp.helper_scope, table.last_helper + 1) is None
    assert table.allows("no_such_type:", 1) is None


def test_scopes_separate_attach_types_and_sleepable_kinds() -> None:
    kinds = [program_type(s) for s in ("xdp", "kprobe/f", "uprobe.s//bin/true:main",
                                       "cgroup/bind4", "cgroup/connect4", "lsm.s/file_open")]
    assert [k.helper_scope for k in kinds if k is not None] == [
        "xdp:xdp", "kprobe:", "kprobe:.s", "cgroup_sock_addr:cgroup_inet4_bind",
        "cgroup_sock_addr:cgroup_inet4_connect", "lsm:lsm_mac.s"]


def test_a_broken_table_is_one_clear_error(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "6.1.json").write_text(json.dumps({"release": "6.1.0", "arch": "x86_64",
                                                   "scopes": {}}))
    monkeypatch.setattr(helper_types, "TABLES", tmp_path)
    helper_types.tables.cache_clear()
    try:
        with pytest.raises(HelperTableError, match=r"6\.1\.json cannot be read \(no 'kfuncs' "
                           r"field\); fix: reinstall pytest-ebpf"):
            tables()
    finally:
        monkeypatch.undo()
        helper_types.tables.cache_clear()


def test_no_finding_on_anything_else_the_suite_builds(
        compile_c: CompileC, example_object: Callable[[str], Path]) -> None:
    """Every other tests/c object and the Rust example, on every profile: the kernel accepts
    their calls (a rejected program of the suite is rejected for another reason)."""
    profiles = [named_profile(k) for k in ("5.10", "6.1", "6.6", "6.12", "6.18")]
    objects = [(src.stem, compile_c(src.read_text(), src.stem, *FLAGS.get(src.stem, ())))
               for src in sorted(C_DIR.glob("*.c"))
               if src.stem not in ("pred_helpers", "pred_kfuncs", "pred_ctx")]
    objects.append(("example", example_object("bpfel-unknown-none")))
    alarms = [(name, v.program.name, f.kernel, f.reason)
              for name, path in objects
              for v in judge(load_object(path), profiles,
                             [rule("helper_types"), rule("context")])
              for f in v.findings]
    assert alarms == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_the_probe_without_privileges_is_one_clear_error() -> None:
    """``python -m pytest_ebpf.kernel.typeprobe`` as user nobody: no program loads, so no table;
    one line that says root is needed, exit status 1, no traceback."""
    root = str(Path(__file__).resolve().parents[1])
    for exe in (sys.executable, "/usr/bin/python3"):
        try:
            proc = subprocess.run([exe, "-m", "pytest_ebpf.kernel.typeprobe"], user=65534,
                                  capture_output=True, text=True, cwd="/", timeout=120,
                                  env={"PYTHONPATH": root, "PATH": os.environ.get("PATH", "")})
        except OSError:  # not executable by nobody (a venv under /root)
            continue
        break
    else:
        pytest.fail("no Python interpreter the nobody user may execute", pytrace=False)
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
    assert proc.stderr == "pytest-ebpf: no kind of program loads here (root is needed)\n"
