"""The example project's own tests, run the way a user runs them (privileged ones required)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


@pytest.mark.slow
def test_example_project_suite_passes_with_privileged_tests_required() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--ebpf-crate=lock-ebpf", "--ebpf-privileged=require",
         "-p", "no:cacheprovider", "-q", "-rs"],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "skipped" not in proc.stdout, proc.stdout[-3000:]
    assert "eBPF build" in proc.stdout and "eBPF programs" in proc.stdout
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.startswith(("lock ", "lock_exec "))}
    assert rows["lock"][1:3] == ["xdp", "xdp"] and rows["lock_exec"][2] == "tracepoint"


@pytest.mark.slow
def test_example_privileged_tests_run_on_three_kernels(tmp_path: Path) -> None:
    """The issue's own command: the example's privileged tests and loads checks on Debian's
    6.1 and 6.12 in VMs and on the host, with per-kernel verdicts in the report."""
    import json

    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--ebpf-crate=lock-ebpf", "--ebpf-privileged=require",
         "--ebpf-kernel=6.1,6.12,host", "--ebpf-vm=auto", "--ebpf-checks=yes",
         f"--ebpf-report={report}",
         "-p", "no:cacheprovider", "-rA"],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=900,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-6000:] + proc.stderr[-2000:]
    passed = {ln.split()[1] for ln in out.splitlines() if ln.startswith("PASSED ")}
    for kernel in ("6.1", "6.12", "host"):
        assert f"tests/test_kernel.py::test_exec_events_reach_user_space[{kernel}]" in passed
        assert f"tests/test_kernel.py::test_every_program_passes_the_verifier[{kernel}]" in passed
        for prog in ("lock", "lock_exec", "lock_exec_btf"):
            assert f"lock-ebpf::{prog}::loads[{kernel}]" in passed
    assert out.count("booted once") == 2
    doc = json.loads(report.read_text())
    for prog in doc["programs"]:
        assert {k: v["verdict"] for k, v in prog["load"].items()} == \
            {"6.1": "loaded", "6.12": "loaded", "host": "loaded"}, prog["name"]


# The example with two mistakes planted in `lock`: a 600-byte call chain and a call through a
# function pointer (both kept out of line so they reach the object).
_PLANTED = """
#[inline(never)]
fn chain_c(x: usize) -> u64 {
    let mut buf = core::mem::MaybeUninit::<[u64; 25]>::uninit();
    let p = buf.as_mut_ptr() as *mut u64;
    unsafe {
        core::ptr::write_volatile(p, x as u64);
        core::ptr::write_volatile(p.add(x & 15), x as u64);
        core::ptr::read_volatile(p.add(x & 15)) + core::ptr::read_volatile(p)
    }
}

#[inline(never)]
fn chain_b(x: usize) -> u64 {
    let mut buf = core::mem::MaybeUninit::<[u64; 25]>::uninit();
    let p = buf.as_mut_ptr() as *mut u64;
    unsafe {
        core::ptr::write_volatile(p, x as u64);
        core::ptr::write_volatile(p.add(x & 15), x as u64);
        chain_c(x + 1) + core::ptr::read_volatile(p.add(x & 15)) + core::ptr::read_volatile(p)
    }
}

#[inline(never)]
fn chain_a(x: usize) -> u64 {
    let mut buf = core::mem::MaybeUninit::<[u64; 25]>::uninit();
    let p = buf.as_mut_ptr() as *mut u64;
    unsafe {
        core::ptr::write_volatile(p, x as u64);
        core::ptr::write_volatile(p.add(x & 15), x as u64);
        chain_b(x + 1) + core::ptr::read_volatile(p.add(x & 15)) + core::ptr::read_volatile(p)
    }
}

#[inline(never)]
fn plus_one(x: u64) -> u64 {
    x + 1
}

#[inline(never)]
fn times_three(x: u64) -> u64 {
    x * 3
}

#[inline(always)]
fn planted(src: u32) -> u32 {
    let table: [fn(u64) -> u64; 2] = [plus_one, times_three];
    let f = unsafe { core::ptr::read_volatile(&table[src as usize & 1]) };
    ((chain_a(src as usize) + f(7)) & 0) as u32
}
"""


def _gate(ws: Path, target: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--ebpf-crate=lock-ebpf", "--ebpf-checks=yes",
         "--ebpf-kernel=host,6.1", "-p", "no:cacheprovider", "-q", *args],
        cwd=ws, capture_output=True, text=True, timeout=900,
        env={**os.environ, "CARGO_TARGET_DIR": str(target)},
    )


@pytest.mark.slow
def test_example_without_test_files_is_gated_by_the_generated_checks(tmp_path: Path) -> None:
    """The example workspace without its tests: the generated checks are the whole suite,
    they pass on the example, and fail with readable messages once a 600-byte call chain and
    a call through a function pointer are planted in `lock`."""
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws, ignore=shutil.ignore_patterns("target", "tests",
                                                                "__pycache__"))
    target = tmp_path / "target"  # a build of its own: the suite's example object stays put
    clean = _gate(ws, target, f"--junitxml={tmp_path / 'junit.xml'}")
    assert clean.returncode == 0, clean.stdout[-4000:] + clean.stderr[-2000:]
    from pytest_ebpf.analysis.rules import RULES

    # 3 programs: each kernel-dependent rule on host and 6.1, the others once, loads[host]
    per_program = sum(2 if r.kernel_dependent else 1 for r in RULES if r.id != "budget") + 1
    assert f"{3 * per_program} passed" in clean.stdout, clean.stdout[-3000:]
    junit = (tmp_path / "junit.xml").read_text()
    assert re.search(r'name="ebpf.processed_insns" value="\d+"', junit), junit[:2000]

    main = ws / "lock-ebpf" / "src" / "main.rs"
    source = main.read_text()
    assert "if is_blocked(src) != 0 {" in source
    main.write_text(source.replace("if is_blocked(src) != 0 {",
                                   "if is_blocked(src) + planted(src) != 0 {") + _PLANTED)
    bad = _gate(ws, target, "-rf")
    assert bad.returncode == 1, bad.stdout[-4000:] + bad.stderr[-2000:]
    failed = sorted(set(re.findall(r"^FAILED (\S+)", bad.stdout, re.M)))
    assert failed == ["lock-ebpf::lock::calls", "lock-ebpf::lock::loads[host]",
                      "lock-ebpf::lock::stack[6.1]", "lock-ebpf::lock::stack[host]"], failed
    assert re.search(r"combined stack size of \d+ calls is \d+\. Too large on 6\.1 \(frames "
                     r"rounded to 32: [\d +]+ = \d+ > 512\): lock \(\d+ B\) -> ", bad.stdout)
    assert "indirect call through r" in bad.stdout and "main.rs:" in bad.stdout
    assert "fix: use a static dispatch (match) or bpf_tail_call" in bad.stdout
