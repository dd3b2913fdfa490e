"""The generated checks (issue 11, items 4-7): with a crate or an object configured, a session
gets one item per program and rule (per kernel profile where the kernel matters), a loads[host]
item per program when privileged, baseline items with --ebpf-baseline, budgets, the JSON
report and JUnit properties; a project without any test file gets every verdict.

Every test runs a real pytest in a subprocess, in a directory without test files, on objects
built from real Rust crates (``tests/minicrate.py``; each variant is built once per session):

* ``clean``: the mini crate (one XDP program ``pass``);
* ``bad``: three XDP programs: ``deep`` (a chain of three 200-byte frames), ``indirect`` (a call
  through a function pointer read at run time: ``callx``) and ``pass``;
* ``nobtf``: the mini crate whose ``.cargo/config.toml`` lacks ``-C link-arg=--btf``;
* ``budget``: the mini crate with ``[package.metadata.pytest-ebpf] instructions = 1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from minicrate import NAME, make_crate

from pytest_ebpf.obj.load import load_object

pytestmark = pytest.mark.slow

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="loads[host] items load into the kernel: "
                                "needs root")

NO_BTF_CONFIG = ('[build]\ntarget = "bpfel-unknown-none"\n'
                 'rustflags = ["-C", "debuginfo=2"]\n')

BUDGET_METADATA = "\n[package.metadata.pytest-ebpf]\ninstructions = 1\n"

# Three programs. `deep`: deep -> deep_a -> deep_b -> deep_c, each callee with a 200-byte buffer
# (u64 x 25) written at index 0 (so the kernel counts the whole frame) and at a run-time index
# (so LLVM keeps the buffer): 8 + 3 x 200 = 608 bytes, more than 512 with any rounding.
# `indirect`: a function pointer read from a stack table by a volatile read, so LLVM cannot
# resolve it and emits `callx`. `pass`: clean.
BAD_PROGRAMS = r"""
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::ptr::{read_volatile, write_volatile};

#[inline(always)]
fn opaque(v: usize) -> usize {
    let s = v;
    unsafe { read_volatile(&s) }
}

#[inline(never)]
fn deep_c(x: usize) -> u64 {
    let mut buf = MaybeUninit::<[u64; 25]>::uninit();
    let p = buf.as_mut_ptr() as *mut u64;
    unsafe {
        write_volatile(p, x as u64);
        write_volatile(p.add(x & 15), x as u64);
        read_volatile(p.add(x & 15)) + read_volatile(p)
    }
}

#[inline(never)]
fn deep_b(x: usize) -> u64 {
    let mut buf = MaybeUninit::<[u64; 25]>::uninit();
    let p = buf.as_mut_ptr() as *mut u64;
    unsafe {
        write_volatile(p, x as u64);
        write_volatile(p.add(x & 15), x as u64);
        let r = deep_c(x + 1);
        r + read_volatile(p.add(x & 15)) + read_volatile(p)
    }
}

#[inline(never)]
fn deep_a(x: usize) -> u64 {
    let mut buf = MaybeUninit::<[u64; 25]>::uninit();
    let p = buf.as_mut_ptr() as *mut u64;
    unsafe {
        write_volatile(p, x as u64);
        write_volatile(p.add(x & 15), x as u64);
        let r = deep_b(x + 1);
        r + read_volatile(p.add(x & 15)) + read_volatile(p)
    }
}

#[no_mangle]
#[link_section = "xdp"]
pub extern "C" fn deep(_ctx: *mut core::ffi::c_void) -> u32 {
    (deep_a(opaque(3)) & 1) as u32 + 2
}

#[inline(never)]
fn plus_one(x: u64) -> u64 {
    x + 1
}

#[inline(never)]
fn times_three(x: u64) -> u64 {
    x * 3
}

#[no_mangle]
#[link_section = "xdp"]
pub extern "C" fn indirect(_ctx: *mut core::ffi::c_void) -> u32 {
    let table: [fn(u64) -> u64; 2] = [plus_one, times_three];
    let f = unsafe { read_volatile(&table[opaque(1) & 1]) };
    (f(7) & 1) as u32 + 2
}

#[no_mangle]
#[link_section = "xdp"]
pub extern "C" fn pass(_ctx: *mut core::ffi::c_void) -> u32 {
    2
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}
"""


def _write_bad(dest: Path) -> None:
    make_crate(dest)
    (dest / "src" / "main.rs").write_text(BAD_PROGRAMS)


def _write_budget(dest: Path) -> None:
    make_crate(dest)
    manifest = dest / "Cargo.toml"
    manifest.write_text(manifest.read_text() + BUDGET_METADATA)


VARIANTS: dict[str, Callable[[Path], object]] = {
    "clean": make_crate,
    "bad": _write_bad,
    "nobtf": lambda dest: make_crate(dest, config=NO_BTF_CONFIG),
    "budget": _write_budget,
}


@dataclass(frozen=True)
class Built:
    crate: Path
    """The crate's directory (a project without test files)."""
    obj: Path
    """The object cargo built (in the crate's own target/)."""


def _cargo_env() -> dict[str, str]:
    """The environment without CARGO_TARGET_DIR: each crate builds into its own target/, so
    the plugin's cargo run on the same crate is a no-op."""
    return {k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Built]:
    """Factory ``built(variant) -> Built``: the crate written and built by cargo once per
    session, with the command the plugin runs."""
    root = tmp_path_factory.mktemp("generated-crates")
    cache: dict[str, Built] = {}

    def build(variant: str) -> Built:
        if variant in cache:
            return cache[variant]
        dest = root / variant
        VARIANTS[variant](dest)
        cmd = ["cargo", "build", "--package", NAME, "--bins", "--target", "bpfel-unknown-none",
               "--message-format=json", "--release"]
        proc = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False,
                              env=_cargo_env())
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} in {dest} failed:\n{proc.stderr[-4000:]}",
                        pytrace=False)
        exe = [json.loads(line)["executable"] for line in proc.stdout.splitlines()
               if line.startswith("{") and json.loads(line).get("executable")]
        assert len(exe) == 1, proc.stdout
        cache[variant] = Built(dest, Path(exe[0]))
        return cache[variant]

    return build


@pytest.fixture
def in_crate(monkeypatch: pytest.MonkeyPatch) -> Callable[[Built], Path]:
    """Run the next pytest from the crate's own directory (which has no test files), with the
    environment the crate was built with."""
    monkeypatch.delenv("CARGO_TARGET_DIR", raising=False)

    def enter(b: Built) -> Path:
        assert not list(b.crate.rglob("*.py")), "the project must have no test files"
        monkeypatch.chdir(b.crate)
        return b.crate

    return enter


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """pytest in a subprocess with the generated checks on (the suite turns them off through
    PYTEST_EBPF_CHECKS=no; the option wins), every outcome listed (-rA)."""
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ebpf-checks=yes", "-rA",
                                         *args, timeout=600)


_SUMMARY = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS) (\S+)")


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Node id -> outcome, from the short test summary (-rA)."""
    out: dict[str, str] = {}
    for line in result.stdout.lines:
        m = _SUMMARY.match(line)
        if m:
            assert m.group(2) not in out, f"{m.group(2)} reported twice"
            out[m.group(2)] = m.group(1).lower()
    return out


def items(unit: str, programs: Iterable[str], kernels: Iterable[str], *, loads: bool,
          skip: Iterable[str] = (), budget: bool = False) -> set[str]:
    """The node ids the plugin should generate."""
    kernels = list(kernels)
    out = set()
    for prog in programs:
        for rule in ("stack", "instructions", "global_funcs", "features", "helper_types",
                     "context", "core", *(["budget"] if budget else [])):
            if rule not in skip:
                out |= {f"{unit}::{prog}::{rule}[{k}]" for k in kernels}
        out |= {f"{unit}::{prog}::{rule}" for rule in ("calls", "control_flow", "encoding",
                                                       "registers", "stack_access",
                                                       "memory_safety", "license",
                                                       "btf")
                if rule not in skip}
        if loads:
            out.add(f"{unit}::{prog}::loads[host]")
    return out


def failure(result: pytest.RunResult, nodeid: str) -> str:
    """The text pytest printed for the failure of *nodeid* (between its ``___ id ___`` header
    and the next header)."""
    lines = result.stdout.lines
    header = re.compile(rf"_+ {re.escape(nodeid)} _+")
    start = next((i for i, ln in enumerate(lines) if header.fullmatch(ln)), None)
    assert start is not None, f"no failure section for {nodeid}:\n{result.stdout.str()}"
    end = next((i for i in range(start + 1, len(lines))
                if re.fullmatch(r"_+ \S.* _+|=+ .* =+", lines[i])), len(lines))
    return "\n".join(lines[start + 1:end])


def program_table(result: pytest.RunResult) -> dict[str, dict[str, str]]:
    """The summary's "eBPF programs" section: program -> column -> cell (cells are split on
    runs of two or more spaces)."""
    text = result.stdout.str()
    assert "= eBPF programs =" in text, text
    section = text.split("= eBPF programs =", 1)[1].splitlines()[1:]
    rows = []
    for line in section:
        if not line.strip() or line.startswith(("=", "!", "eBPF ")):
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    head = rows[0]
    assert head[:4] == ["program", "section", "type", "insns"], head
    assert head[-5:] == ["chain", "BTF", "helpers", "loaded", "processed"], head
    assert all(len(r) == len(head) for r in rows), rows
    return {r[0]: dict(zip(head, r)) for r in rows[1:]}


MANGLED = r"_ZN4mini{n}{name}17h[0-9a-f]{{16}}E"


def kernel_label() -> str:
    """The running kernel as the host profile names it (``6.18``)."""
    return ".".join(os.uname().release.split(".")[:2])


def fn(name: str) -> str:
    """The pattern of a Rust function's mangled symbol in the mini crate."""
    return MANGLED.format(n=len(name), name=name)


BAD = ("deep", "indirect", "pass")
BAD_FAILURES = {"mini::deep::stack[host]", "mini::deep::stack[6.1]",
                "mini::indirect::calls"}
BAD_LOAD_FAILURES = {"mini::deep::loads[host]", "mini::indirect::loads[host]"}


# ---------------------------------------------------------------------------------------------
# 1. A project without test files
# ---------------------------------------------------------------------------------------------


@needs_root
def test_clean_crate_without_test_files_gets_every_verdict_and_exit_0(
        pytester: pytest.Pytester, built: Callable[[str], Built],
        in_crate: Callable[[Built], Path]) -> None:
    b = built("clean")
    in_crate(b)
    result = run(pytester, "--ebpf-crate=.", "-v")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "collected 0 items" in result.stdout.str()
    # the plugin ran cargo on the crate (a no-op after the fixture's build), not a prebuilt file
    assert f"built {NAME} for bpfel-unknown-none (release)" in result.stdout.str()
    expected = items(NAME, ["pass"], ["host"], loads=True)
    assert outcomes(result) == dict.fromkeys(expected, "passed"), result.stdout.str()
    result.assert_outcomes(passed=len(expected))  # 9: 4 static rules, 4 per kernel, loads
    table = program_table(result)
    insns = load_object(b.obj).program("pass").instructions
    host = f"stack@{kernel_label()}"
    assert table == {"pass": {"program": "pass", "section": "xdp", "type": "xdp",
                              "insns": str(insns), host: "0", "chain": "pass(0)", "BTF": "yes",
                              "helpers": "-", "loaded": "loaded",
                              "processed": table["pass"]["processed"]}}, table
    assert int(table["pass"]["processed"]) >= insns


def test_violation_without_test_files_exits_1_not_5_and_btf_fix_names_flags(
        pytester: pytest.Pytester, built: Callable[[str], Built],
        in_crate: Callable[[Built], Path]) -> None:
    b = built("nobtf")
    assert load_object(b.obj).btf is None  # the crate really dropped BTF
    in_crate(b)
    result = run(pytester, "--ebpf-crate=.", "--ebpf-privileged=no")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    expected = items(NAME, ["pass"], ["host"], loads=False)
    assert outcomes(result) == {i: "failed" if i.endswith("::btf") else "passed"
                                for i in expected}, result.stdout.str()
    text = failure(result, f"{NAME}::pass::btf")
    assert text.splitlines()[0] == "btf rule: 1 finding(s) in program pass", text
    assert "program pass: the object has no .BTF section" in text, text
    assert ("fix: build with BTF: in the eBPF crate's .cargo/config.toml: rustflags = "
            '["-C", "debuginfo=2", "-C", "link-arg=--btf"] (aya-build passes them)') in text
    table = program_table(result)
    assert table["pass"]["BTF"] == "NO", table


# ---------------------------------------------------------------------------------------------
# 2. Stack chains, indirect calls
# ---------------------------------------------------------------------------------------------


def test_the_bad_object_really_has_a_callx_and_a_600_byte_chain(
        built: Callable[[str], Built]) -> None:
    """The planted problems are in the object, as the plugin's inspect and llvm-objdump see it."""
    obj = built("bad").obj
    exe = Path(sys.executable).with_name("pytest-ebpf")
    proc = subprocess.run([str(exe), "inspect", "--json", str(obj)], capture_output=True,
                          text=True, check=False)
    doc = json.loads(proc.stdout)
    progs = {p["name"]: p for p in doc["programs"]}
    assert sorted(progs) == sorted(BAD)
    assert [c["function"] for c in progs["indirect"]["indirect_calls"]] == ["indirect"]
    assert progs["deep"]["indirect_calls"] == progs["pass"]["indirect_calls"] == []
    assert progs["deep"]["stack"]["chain_frames"] == [8, 200, 200, 200]
    objdump = shutil.which("llvm-objdump-22") or shutil.which("llvm-objdump")
    if objdump is not None:
        dis = subprocess.run([objdump, "-d", str(obj)], capture_output=True, text=True,
                             check=True).stdout
        indirect = dis.split("<indirect>:", 1)[1].split("\n\n", 1)[0]
        assert re.search(r"\b8d [0-9a-f]{2} 00 00 00 00 00 00\s+callx r\d+", indirect), dis


@needs_root
def test_stack_chain_fails_stack_and_callx_fails_calls(
        pytester: pytest.Pytester, built: Callable[[str], Built]) -> None:
    obj = built("bad").obj
    result = run(pytester, f"--ebpf-object={obj}", "--ebpf-kernel=host,6.1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    expected = items("mini", BAD, ["host", "6.1"], loads=True)
    failed = BAD_FAILURES | BAD_LOAD_FAILURES
    assert outcomes(result) == {i: "failed" if i in failed else "passed" for i in expected}
    chain = (rf"deep \(8 B\) -> {fn('deep_a')} \(200 B\) -> {fn('deep_b')} \(200 B\) -> "
             rf"{fn('deep_c')} \(200 B\)")

    text = failure(result, "mini::deep::stack[6.1]")
    assert text.splitlines()[0] == "stack rule: 1 finding(s) in program deep on 6.1", text
    assert re.search(
        r"program deep: combined stack size of 4 calls is 704\. Too large on 6\.1 "
        r"\(frames rounded to 32: 32 \+ 224 \+ 224 \+ 224 = 704 > 512\): " + chain + "$",
        text, re.M), text
    assert re.search(rf"fix: move the big buffer of `{fn('deep_a')}` into a per-CPU array map",
                     text), text

    host = failure(result, "mini::deep::stack[host]")
    m = re.search(r"combined stack size of 4 calls is (\d+)\. Too large on (\S+) \(host\) "
                  r"\(frames rounded to (\d+)", host)
    assert m is not None, host
    assert m.group(2) == kernel_label()
    # the kernel itself refuses the program, with the total the plugin predicted for it
    kernel = failure(result, "mini::deep::loads[host]")
    assert f"combined stack size of 4 calls is {m.group(1)}. Too large" in kernel, kernel

    calls = failure(result, "mini::indirect::calls")
    assert calls.splitlines()[0] == "calls rule: 1 finding(s) in program indirect", calls
    assert re.search(r"program indirect: indirect call through r(\d) at indirect "
                     r"\(xdp\) insn \d+: `callx r\1`; the verifier refuses calls through "
                     r"registers$", calls, re.M), calls
    assert re.search(r"^    at .*/src/main\.rs:\d+: \(f\(7\) & 1\) as u32 \+ 2$", calls, re.M)
    assert "fix: use a static dispatch (match) or bpf_tail_call with a PROG_ARRAY" in calls
    assert "unknown opcode 8d" in failure(result, "mini::indirect::loads[host]")

    table = program_table(result)
    assert sorted(table) == sorted(BAD)
    host_col = f"stack@{kernel_label()}"
    assert (table["deep"][host_col], table["deep"]["stack@6.1"]) == (f"{m.group(1)}!", "704!")
    assert (table["pass"][host_col], table["pass"]["stack@6.1"]) == ("0", "32")
    assert {p: table[p]["loaded"] for p in BAD} == {
        "deep": "rejected", "indirect": "rejected", "pass": "loaded"}, table


# ---------------------------------------------------------------------------------------------
# 3. Selection: -k, --ebpf-skip-rules, xdist
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_k_selects_one_rule_on_one_kernel(pytester: pytest.Pytester,
                                          built: Callable[[str], Built],
                                          xdist: list[str]) -> None:
    obj = built("bad").obj
    result = run(pytester, f"--ebpf-object={obj}", "--ebpf-kernel=host,6.1",
                 "--ebpf-privileged=no", "-k", "stack and 6.1", *xdist)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert outcomes(result) == {"mini::deep::stack[6.1]": "failed",
                                "mini::indirect::stack[6.1]": "passed",
                                "mini::pass::stack[6.1]": "passed"}, result.stdout.str()
    total = len(items("mini", BAD, ["host", "6.1"], loads=False))
    assert total == 66  # 3 programs: 8 static rules, 7 per kernel x 2
    if xdist:  # the workers collect and deselect; the controller reports what they kept
        assert "2 workers [3 items]" in result.stdout.str(), result.stdout.str()
        result.assert_outcomes(failed=1, passed=2)
    else:
        result.assert_outcomes(failed=1, passed=2, deselected=total - 3)


@needs_root
def test_whole_session_under_xdist_matches_the_serial_one(
        pytester: pytest.Pytester, built: Callable[[str], Built]) -> None:
    obj = built("bad").obj
    report = pytester.path / "report.json"
    result = run(pytester, f"--ebpf-object={obj}", "--ebpf-kernel=host,6.1", "-n", "2",
                 f"--ebpf-report={report}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    expected = items("mini", BAD, ["host", "6.1"], loads=True)
    failed = BAD_FAILURES | BAD_LOAD_FAILURES
    assert outcomes(result) == {i: "failed" if i in failed else "passed" for i in expected}
    # the workers' load verdicts reach the controller's report and table
    doc = json.loads(report.read_text())
    loads = {p["name"]: p["load"]["host"]["verdict"] for p in doc["programs"]}
    assert loads == {"deep": "rejected", "indirect": "rejected", "pass": "loaded"}
    assert {p: row["loaded"] for p, row in program_table(result).items()} == loads


@pytest.mark.parametrize(
    ("variant", "skip", "unit", "programs"),
    [("nobtf", "btf", "mini", ["pass"]), ("bad", "stack,calls", "mini", list(BAD))],
    ids=["btf", "stack-and-calls"])
def test_skip_rules_removes_their_items(pytester: pytest.Pytester,
                                        built: Callable[[str], Built], variant: str, skip: str,
                                        unit: str, programs: list[str]) -> None:
    obj = built(variant).obj
    args = [f"--ebpf-object={obj}", "--ebpf-kernel=host,6.1", "--ebpf-privileged=no"]
    before = run(pytester, *args)
    assert before.ret == pytest.ExitCode.TESTS_FAILED, before.stdout.str()
    result = run(pytester, *args, f"--ebpf-skip-rules={skip}")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    expected = items(unit, programs, ["host", "6.1"], loads=False, skip=skip.split(","))
    assert outcomes(result) == dict.fromkeys(expected, "passed"), result.stdout.str()
    removed = set(outcomes(before)) - set(outcomes(result))
    assert removed and all(re.search(rf"::({skip.replace(',', '|')})(\[|$)", i)
                           for i in removed), removed
    assert {i for i, o in outcomes(before).items() if o == "failed"} <= removed


def test_unknown_rule_is_a_usage_error_naming_the_rules(
        pytester: pytest.Pytester, built: Callable[[str], Built]) -> None:
    obj = built("clean").obj
    result = run(pytester, f"--ebpf-object={obj}", "--ebpf-skip-rules=btf,stak")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert ("--ebpf-skip-rules=btf,stak: unknown rule(s) stak; rules are stack, calls, "
            "control_flow, encoding, registers, stack_access, memory_safety, instructions, "
            "license, btf, global_funcs, features, helper_types, context, core, budget"
            ) in result.stderr.str(), result.stderr.str()
    assert "Traceback" not in result.stderr.str()


# ---------------------------------------------------------------------------------------------
# 4. Budgets
# ---------------------------------------------------------------------------------------------


def test_budgets_from_cargo_toml_fail_budget_items_and_the_option_overrides(
        pytester: pytest.Pytester, built: Callable[[str], Built],
        in_crate: Callable[[Built], Path]) -> None:
    b = built("budget")
    manifest = b.crate / "Cargo.toml"
    insns = load_object(b.obj).program("pass").instructions
    assert insns > 1
    in_crate(b)
    base = ["--ebpf-crate=.", "--ebpf-privileged=no"]

    result = run(pytester, *base)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    expected = items(NAME, ["pass"], ["host"], loads=False, budget=True)
    assert outcomes(result) == {i: "failed" if "::budget[" in i else "passed"
                                for i in expected}, result.stdout.str()
    lines = result.stdout.lines
    at = lines.index("  budgets:")
    assert lines[at + 1] == f"    instructions <= 1 (from {manifest})", lines[at:at + 3]
    text = failure(result, f"{NAME}::pass::budget[host]")
    assert re.fullmatch(r"budget rule: 1 finding\(s\) in program pass on \S+ \(host\)",
                        text.splitlines()[0]), text
    assert (f"program pass: {insns} instructions, over the budget of 1 (from {manifest})"
            in text), text
    assert f"fix: shrink it, or raise the budget in {manifest}" in text, text

    # the option wins per figure: instructions from the option, nothing from Cargo.toml
    result = run(pytester, *base, "--ebpf-budget=instructions=100")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert outcomes(result) == dict.fromkeys(expected, "passed"), result.stdout.str()
    lines = result.stdout.lines
    at = lines.index("  budgets:")
    assert lines[at + 1] == "    instructions <= 100 (from --ebpf-budget=instructions=100)"
    assert str(manifest) + ")" not in result.stdout.str()

    # another figure from the option keeps Cargo.toml's instructions: both fail on 6.1
    result = run(pytester, *base, "--ebpf-budget=stack=16", "--ebpf-kernel=6.1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert outcomes(result)[f"{NAME}::pass::budget[6.1]"] == "failed"
    lines = result.stdout.lines
    at = lines.index("  budgets:")
    assert lines[at + 1:at + 3] == [f"    instructions <= 1 (from {manifest})",
                                    "    stack <= 16 (from --ebpf-budget=stack=16)"]
    text = failure(result, f"{NAME}::pass::budget[6.1]")
    assert text.splitlines()[0] == "budget rule: 2 finding(s) in program pass on 6.1", text
    assert ("program pass: 32 bytes of combined stack on 6.1, over the budget of 16 "
            "(from --ebpf-budget=stack=16): pass (0 B)") in text, text
    assert f"{insns} instructions, over the budget of 1 (from {manifest})" in text, text


def test_no_budget_no_budget_items(pytester: pytest.Pytester,
                                   built: Callable[[str], Built]) -> None:
    obj = built("clean").obj
    result = run(pytester, f"--ebpf-object={obj}", "--ebpf-privileged=no", "--collect-only",
                 "-q")
    ids = {ln for ln in result.stdout.lines if ln.startswith("mini::")}
    assert ids == items("mini", ["pass"], ["host"], loads=False), result.stdout.str()
    result = run(pytester, f"--ebpf-object={obj}", "--ebpf-privileged=no", "--collect-only",
                 "-q", "--ebpf-budget=pass.stack=64")
    ids = {ln for ln in result.stdout.lines if ln.startswith("mini::")}
    assert ids == items("mini", ["pass"], ["host"], loads=False, budget=True)


# ---------------------------------------------------------------------------------------------
# 5. The JSON report and JUnit XML
# ---------------------------------------------------------------------------------------------


def _properties(case: ET.Element) -> dict[str, str]:
    return {str(p.get("name")): str(p.get("value")) for p in case.iter("property")}


@needs_root
def test_report_json_and_junit_properties(pytester: pytest.Pytester,
                                          built: Callable[[str], Built]) -> None:
    obj = built("bad").obj
    model = load_object(obj)
    report = pytester.path / "out" / "report.json"
    junit = pytester.path / "junit.xml"
    result = run(pytester, f"--ebpf-object={obj}", "--ebpf-kernel=host,6.1",
                 f"--ebpf-report={report}", f"--junitxml={junit}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert f"eBPF report written to {report}" in result.stdout.str()

    doc = json.loads(report.read_text())
    assert doc["schema"] == 1 and doc["tool"] == "pytest-ebpf"
    assert doc["object"] == str(obj)
    assert [k["name"] for k in doc["kernels"]] == ["host", "6.1"]
    progs = {p["name"]: p for p in doc["programs"]}
    assert sorted(progs) == sorted(BAD)
    for name, p in progs.items():
        assert p["instructions"] == model.program(name).instructions, name
        assert p["section"] == "xdp" and p["type"] == "xdp" and p["btf"] is True
        assert set(p["stack"]) == {"host", "6.1"}
    deep = progs["deep"]
    assert deep["stack"]["6.1"]["total"] == 704
    assert deep["stack"]["6.1"]["frames"] == [8, 200, 200, 200]
    assert deep["stack"]["6.1"]["chain"][0] == "deep"
    assert re.fullmatch(fn("deep_c"), deep["stack"]["6.1"]["chain"][-1])
    assert deep["verdicts"] == {"host": "rejected", "6.1": "rejected"}
    assert progs["pass"]["verdicts"] == {"host": "loads", "6.1": "loads"}
    assert progs["pass"]["stack"]["6.1"]["total"] == 32  # a frame of 0 rounds up to 32
    assert {f["check"] for f in progs["indirect"]["findings"]} == {"indirect_call"}
    loads = {n: p["load"]["host"] for n, p in progs.items()}
    assert {n: v["verdict"] for n, v in loads.items()} == {
        "deep": "rejected", "indirect": "rejected", "pass": "loaded"}
    assert isinstance(loads["pass"]["processed_insns"], int)
    assert loads["pass"]["processed_insns"] >= model.program("pass").instructions
    assert isinstance(loads["deep"]["processed_insns"], int)

    cases = {f"{c.get('classname')}::{c.get('name')}": c
             for c in ET.parse(junit).getroot().iter("testcase")}
    assert set(cases) == {i.replace("mini::", "mini.", 1)
                          for i in items("mini", BAD, ["host", "6.1"], loads=True)}
    stack = _properties(cases["mini.deep::stack[6.1]"])
    assert stack["ebpf.program"] == "deep" and stack["ebpf.kernel"] == "6.1"
    assert stack["ebpf.stack"] == "704"
    assert stack["ebpf.instructions"] == str(progs["deep"]["instructions"])
    assert stack["ebpf.stack_chain"].startswith("deep -> ")
    host = _properties(cases["mini.deep::stack[host]"])
    assert host["ebpf.stack"] == str(deep["stack"]["host"]["total"])
    loaded = _properties(cases["mini.pass::loads[host]"])
    assert loaded["ebpf.verdict"] == "loaded"
    assert loaded["ebpf.processed_insns"] == str(loads["pass"]["processed_insns"])
    assert loaded["ebpf.instructions"] == str(progs["pass"]["instructions"])
    calls = _properties(cases["mini.indirect::calls"])
    assert calls["ebpf.instructions"] == str(progs["indirect"]["instructions"])
    assert calls["ebpf.findings"] == "1"
    assert "ebpf.stack" not in calls  # no kernel, no stack figure
    assert cases["mini.indirect::calls"].find("failure") is not None
    assert cases["mini.pass::calls"].find("failure") is None


# ---------------------------------------------------------------------------------------------
# 6. Baselines
# ---------------------------------------------------------------------------------------------


def _compare(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("pytest-ebpf")
    return subprocess.run([str(exe), "compare", *args], capture_output=True, text=True,
                          check=False)


def test_baseline_growth_fails_the_program_baseline_item(
        pytester: pytest.Pytester, built: Callable[[str], Built]) -> None:
    obj = built("bad").obj
    real = load_object(obj).program("deep").instructions
    old_insns = real - 10
    saved = pytester.path / "baseline.json"
    common = [f"--ebpf-object={obj}", "--ebpf-kernel=host,6.1"]

    result = run(pytester, *common, f"--ebpf-save-baseline={saved}")
    assert f"eBPF baseline written to {saved}" in result.stdout.str(), result.stdout.str()
    assert not any(i.endswith("::baseline") for i in outcomes(result))
    current = pytester.path / "current.json"
    shutil.copy(saved, current)
    doc: dict[str, Any] = json.loads(saved.read_text())
    deep = next(p for p in doc["programs"] if p["name"] == "deep")
    assert deep["instructions"] == real
    deep["instructions"] = old_insns  # the main branch's program was smaller
    saved.write_text(json.dumps(doc))

    row = re.compile(rf"^!\s+deep\s+instructions\s+{old_insns}\s+{real}\s+"
                     rf"\+10 \(\+{10 * 100 / old_insns:.1f}%\)\s+past 10%$", re.M)
    result = run(pytester, *common, f"--ebpf-baseline={saved}", "-k", "baseline")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert outcomes(result) == {"mini::deep::baseline": "failed",
                                "mini::indirect::baseline": "passed",
                                "mini::pass::baseline": "passed"}, result.stdout.str()
    text = failure(result, "mini::deep::baseline")
    assert text.splitlines()[0] == f"program deep grew past the baseline {saved}:", text
    assert re.search(r"^\s+program\s+figure\s+old\s+new\s+diff$", text, re.M), text
    assert row.search(text), text
    assert "1 figure(s) grew past their threshold" in text, text
    assert "stack[" not in text  # figures that did not move are left out
    assert "fix: shrink the program, or save a new baseline with --ebpf-save-baseline" in text

    generous = run(pytester, *common, f"--ebpf-baseline={saved}", "-k", "baseline",
                   "--ebpf-baseline-threshold=instructions=50%")
    assert generous.ret == pytest.ExitCode.OK, generous.stdout.str()
    assert outcomes(generous) == {f"mini::{p}::baseline": "passed" for p in BAD}

    # the same pair with the command: exit 1, the same row; 0 with the generous threshold
    proc = _compare(str(saved), str(current))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert row.search(proc.stdout), proc.stdout
    assert "1 figure(s) grew past their threshold" in proc.stdout
    proc = _compare(str(saved), str(current), "--threshold", "instructions=50%")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 figure(s) grew past their threshold" in proc.stdout


@needs_root
def test_baseline_processed_insns_growth_fails_loads(
        pytester: pytest.Pytester, built: Callable[[str], Built]) -> None:
    """The verifier's count is known once loaded: the loads[host] item holds it to the
    baseline's, with the threshold of processed_insns."""
    obj = built("clean").obj
    saved = pytester.path / "baseline.json"
    common = [f"--ebpf-object={obj}", "-k", "loads"]
    result = run(pytester, *common, f"--ebpf-save-baseline={saved}")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    doc: dict[str, Any] = json.loads(saved.read_text())
    [prog] = doc["programs"]
    real = prog["load"]["host"]["processed_insns"]
    assert isinstance(real, int) and real > 1
    same = run(pytester, *common, f"--ebpf-baseline={saved}")
    assert same.ret == pytest.ExitCode.OK, same.stdout.str()
    prog["load"]["host"]["processed_insns"] = 1  # main's program was simpler
    saved.write_text(json.dumps(doc))
    grown = run(pytester, *common, f"--ebpf-baseline={saved}")
    assert grown.ret == pytest.ExitCode.TESTS_FAILED, grown.stdout.str()
    text = failure(grown, f"mini::{prog['name']}::loads[host]")
    assert (f"program {prog['name']}: the verifier processed {real} instructions, 1 in the "
            f"baseline {saved}: +{real - 1}") in text, text
    assert "past the threshold 10%" in text
    generous = run(pytester, *common, f"--ebpf-baseline={saved}",
                   f"--ebpf-baseline-threshold=processed_insns={real}")
    assert generous.ret == pytest.ExitCode.OK, generous.stdout.str()
