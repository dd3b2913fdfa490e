"""The plugin as a user meets it: options, the settings header, the build fixture, xdist."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from toolchain_facts import rustc_llvm_major, rustc_release

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
CRATE = EXAMPLE / "lock-ebpf"

BUILD_TEST = """
def test_build(ebpf_build):
    assert ebpf_build.path.is_file()
    assert ebpf_build.package == "lock-ebpf"
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ebpf-target=x86_64-unknown-linux-gnu"],
         "--ebpf-target=x86_64-unknown-linux-gnu: not a valid value; use one of "
         "bpfel-unknown-none, bpfeb-unknown-none"),
        (["--ebpf-build-std=std"], "--ebpf-build-std=std: use auto, none, or a comma list"),
        (["--ebpf-object=nope.o"], "--ebpf-object=nope.o: no such file"),
        (["--ebpf-crate=no-such-crate"], "no crate directory or package named 'no-such-crate'"),
        (["--ebpf-stack-frame=64"], "--ebpf-stack-frame=64: not a valid value"),
    ],
)
def test_bad_options_are_usage_errors(pytester: pytest.Pytester, args: list[str],
                                      message: str) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])
    assert "Traceback" not in result.stderr.str()


def test_fixture_without_crate_fails_with_the_fix(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x=BUILD_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no eBPF crate or object is configured*--ebpf-crate=*"])


def test_settings_sources_in_header(pytester: pytest.Pytester,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(EXAMPLE, pytester.path / "ws",
                    ignore=shutil.ignore_patterns("target", "tests", ".pytest*"))
    pytester.makeini("[pytest]\nebpf_crate = lock-ebpf\nebpf_profile = dev\n")
    monkeypatch.setenv("PYTEST_EBPF_PROFILE", "release")
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest("--ebpf-features=", "--collect-only")
    result.stdout.fnmatch_lines([
        "ebpf settings (option > env > ini > project files > default):",
        "  crate: lock-ebpf (from ini ebpf_crate)",
        ("  toolchain: rustup's choice (from rustup reads */ws/rust-toolchain.toml)"
         if shutil.which("rustup") else
         "  toolchain: cargo on PATH (from no rustup, so rust-toolchain.toml is not read)"),
        "  target: bpfel-unknown-none (from */ws/lock-ebpf/.cargo/config.toml)",
        "  profile: release (from env PYTEST_EBPF_PROFILE)",
        "  features: none (from option)",
        "  build-std: auto (from default)",
    ])


def test_builds_example_and_reports_programs(pytester: pytest.Pytester) -> None:
    # rustup picks `debian` from rust-toolchain.toml; without rustup, cargo on PATH is Debian's
    toolchain, chosen_by = (("debian", "rustup: *rust-toolchain.toml*") if shutil.which("rustup")
                            else ("cargo on PATH", "the PATH (no rustup*"))
    pytester.makepyfile(test_build=BUILD_TEST + """
import subprocess

def test_object_is_bpf_with_btf(ebpf_build):
    kind = subprocess.run(["file", ebpf_build.object_path], capture_output=True, text=True).stdout
    assert "ELF 64-bit LSB relocatable, eBPF" in kind
    sections = subprocess.run(["llvm-readelf-22", "-S", ebpf_build.object_path],
                              capture_output=True, text=True, check=True).stdout
    assert " .BTF " in sections and " .BTF.ext " in sections
    assert ebpf_build.toolchain.startswith(TOOLCHAIN)
    assert ebpf_build.llvm_version.startswith("22.")
    assert ebpf_build.command[:2] == ("cargo", "build")
    assert ebpf_build.build_std == ()

def test_object_fixture(ebpf_object):
    names = {p.name for p in ebpf_object.programs}
    assert "lock" in names
""".replace("TOOLCHAIN", repr(toolchain)))
    result = pytester.runpytest(f"--ebpf-crate={CRATE}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([
        "*eBPF build*",
        "built lock-ebpf for bpfel-unknown-none (release) in *s with toolchain "
        f"{toolchain} (rustc {rustc_release()}, LLVM {rustc_llvm_major()}.*",
        f"toolchain chosen by {chosen_by}",
        "*eBPF programs*",
        "program * section * type * insns * stack@* chain * BTF * helpers * loaded * processed",
        "lock * xdp * xdp * lock(0) -> is_blocked(8) * yes * map_lookup_elem *",
        "lock_exec * tracepoint/sched/sched_process_exec * tracepoint *",
    ])


def test_xdist_builds_once(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Under -n 2 the controller runs cargo once; workers get the result through workerinput."""
    log = tmp_path / "cargo-calls.log"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    real = shutil.which("cargo")
    assert real
    wrapper = bindir / "cargo"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    for i in range(6):
        pytester.makepyfile(**{f"test_w{i}": BUILD_TEST})
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", f"--ebpf-crate={CRATE}",
         "-p", "no:cacheprovider"],
        cwd=pytester.path, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout
    calls = [line for line in log.read_text().splitlines() if " build " in f" {line} "]
    assert len(calls) == 1, calls
    assert log.read_text().count("\n") == 1, log.read_text()
