"""``pytest-ebpf doctor`` and ``pytest --ebpf-doctor`` on working and broken set-ups."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from stable_standin import stable_without
from toolchain_facts import rustc_llvm_major, rustc_release

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
DOCTOR = Path(sys.executable).parent / "pytest-ebpf"
OLD_LINKER = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
              / "pytest-ebpf" / "bpf-linker-llvm19" / "bin" / "bpf-linker")


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DOCTOR), "doctor", "--root", str(EXAMPLE), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def row(output: str, name: str) -> str:
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(name + " "):
            follow = lines[i + 1] if i + 1 < len(lines) and "fix:" in lines[i + 1] else ""
            return line + "\n" + follow
    raise AssertionError(f"no row {name!r} in:\n{output}")


def test_healthy_machine_passes() -> None:
    proc = doctor("--crate", "lock-ebpf")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("cargo", "toolchain", "core for bpfel-unknown-none", "bpf-linker", "eBPF crate",
                 "crate config", "kernel", "kernel BTF", "bpftool", "privileges", "bpffs"):
        assert " ok " in row(proc.stdout, name) or " warn " in row(proc.stdout, name)
    if shutil.which("rustup"):
        want = f"debian: rustc {rustc_release()}, LLVM {rustc_llvm_major()}"
        assert want in row(proc.stdout, "toolchain")
    else:  # cargo on PATH is Debian's; the doctor warns that no toolchain can be chosen
        want = f"cargo on PATH: rustc {rustc_release()}, LLVM {rustc_llvm_major()}"
        assert want in row(proc.stdout, "toolchain")
        assert " warn " in row(proc.stdout, "cargo") and "no rustup" in row(proc.stdout, "cargo")
    assert f"LLVM {rustc_llvm_major()}" in row(proc.stdout, "bpf-linker")
    assert proc.stdout.rstrip().endswith("nothing blocks an eBPF build")


def test_missing_toolchain_is_a_problem() -> None:
    proc = doctor("--crate", "lock-ebpf", "--toolchain", "pe-no-such-1.0")
    assert proc.returncode == 1
    line = row(proc.stdout, "toolchain")
    assert " problem " in line and "rustup toolchain install pe-no-such-1.0" in line
    assert "Traceback" not in proc.stderr


def test_toolchain_without_core_or_rust_src(tmp_path: Path) -> None:
    if shutil.which("rustup") is None:  # stable rustc on PATH without BPF core or rust-src
        bindir = stable_without(tmp_path / "stable")
        proc = doctor("--crate", "lock-ebpf",
                      env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
        assert proc.returncode == 1, proc.stdout + proc.stderr
        line = row(proc.stdout, "core for bpfel-unknown-none")
        assert f" problem  no prebuilt core in {bindir.parent} and no rust-src" in line
        assert "--ebpf-build-std=core" in line
        return
    proc = doctor("--crate", "lock-ebpf", "--toolchain", "stable")
    assert proc.returncode == 1
    assert "rustup component add rust-src --toolchain stable" in row(
        proc.stdout, "core for bpfel-unknown-none")


def _cargo_home(tmp_path: Path, linker: Path | None) -> dict[str, str]:
    home = tmp_path / "cargo-home"
    (home / "bin").mkdir(parents=True)
    if linker is not None:
        (home / "bin" / "bpf-linker").symlink_to(linker)
    rustup = shutil.which("rustup")
    if rustup is None:  # cargo and rustc on PATH are Debian's; the user puts bin/ on PATH
        return {**os.environ, "CARGO_HOME": str(home), "PATH": f"{home / 'bin'}:/usr/bin:/bin"}
    tools = tmp_path / "tools"
    tools.mkdir()
    for proxy in ("rustup", "cargo", "rustc"):
        (tools / proxy).symlink_to(rustup)
    return {**os.environ, "CARGO_HOME": str(home), "PATH": f"{tools}:/usr/bin:/bin"}


def test_missing_bpf_linker_is_a_problem(tmp_path: Path) -> None:
    proc = doctor("--crate", "lock-ebpf", env=_cargo_home(tmp_path, None))
    assert proc.returncode == 1
    line = row(proc.stdout, "bpf-linker")
    assert "not on PATH" in line
    assert ("cargo install bpf-linker --force --no-default-features --features "
            f"llvm-{rustc_llvm_major()}") in line


def test_older_llvm_linker_is_a_problem(tmp_path: Path) -> None:
    assert OLD_LINKER.is_file(), f"{OLD_LINKER} missing: run scripts/setup.sh test"
    proc = doctor("--crate", "lock-ebpf", env=_cargo_home(tmp_path, OLD_LINKER))
    assert proc.returncode == 1
    want = f"rustc uses LLVM {rustc_llvm_major()}: bitcode will not be readable"
    assert want in row(proc.stdout, "bpf-linker")


def test_bpf_config_at_workspace_root_is_a_warning(tmp_path: Path) -> None:
    """cargo builds the eBPF crate with BPF settings at the workspace root (its dependencies
    are no_std), so the doctor warns, naming the members that need std, and blocks nothing."""
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws, ignore=shutil.ignore_patterns("target", "tests"))
    shutil.move(str(ws / "lock-ebpf" / ".cargo"), str(ws / ".cargo"))
    proc = subprocess.run([str(DOCTOR), "doctor", "--root", str(ws), "--crate", "lock-ebpf"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    line = row(proc.stdout, "crate config")
    assert " warn " in line and "sets a BPF target for the whole workspace" in line
    assert "need std (lock)" in line
    assert proc.stdout.rstrip().endswith("nothing blocks an eBPF build")


def test_pytest_option_runs_the_doctor(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess(f"--ebpf-crate={EXAMPLE / 'lock-ebpf'}",
                                           "--ebpf-doctor")
    assert result.ret == 0
    toolchain = "debian" if shutil.which("rustup") else "cargo on PATH"
    result.stdout.fnmatch_lines(["check * status * detail", f"toolchain * ok * {toolchain}*",
                                 "nothing blocks an eBPF build"])
    result = pytester.runpytest_subprocess(f"--ebpf-crate={EXAMPLE / 'lock-ebpf'}",
                                           "--ebpf-toolchain=pe-no-such-1.0", "--ebpf-doctor")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["toolchain * problem * pe-no-such-1.0*"])


@pytest.mark.slow
def test_tox_env_without_its_toolchain_fails_with_the_doctor(tmp_path: Path) -> None:
    tox = Path(sys.executable).parent / "tox"
    # an environment on tox.ini's [testenv], named after a toolchain nobody has
    proc = subprocess.run([str(tox), "-e", "nightly-2001-01-01", "--workdir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "rustup toolchain install nightly-2001-01-01" in proc.stdout, proc.stdout[-3000:]
    assert "problem(s) block an eBPF build" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_doctor_and_the_build_diagnosis_give_one_fix(tmp_path: Path) -> None:
    """The same problem (no bpf-linker) gets the same fix text from the doctor and from the
    diagnosis of a failed build."""
    from pytest_ebpf.build.diagnose import BuildContext, explain

    home = tmp_path / "home"
    (home / ".cargo" / "bin").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home), "CARGO_HOME": str(home / ".cargo"),
           "PATH": "/usr/bin:/bin", "PYTEST_EBPF_TOOLCHAIN_CACHE": "off"}
    proc = doctor("--crate", "lock-ebpf", env=env)
    line = row(proc.stdout, "bpf-linker")
    want = explain("linker-not-found",
                   BuildContext(rustc_llvm=f"{rustc_llvm_major()}.0.0")).fix
    assert f"fix: {want}" in line, line


def test_doctor_names_a_linker_it_finds_off_path(tmp_path: Path) -> None:
    """No rustup and ~/.cargo/bin not on PATH: the doctor still finds the installed linker
    and says how to reach it."""
    home = tmp_path / "home"
    (home / ".cargo" / "bin").mkdir(parents=True)
    real = shutil.which("bpf-linker") or str(Path(os.environ["CARGO_HOME"]) / "bin" /
                                             "bpf-linker")
    (home / ".cargo" / "bin" / "bpf-linker").symlink_to(real)
    env = {**os.environ, "HOME": str(home), "CARGO_HOME": str(home / ".cargo"),
           "PATH": "/usr/bin:/bin", "PYTEST_EBPF_TOOLCHAIN_CACHE": "off"}
    proc = doctor("--crate", "lock-ebpf", env=env)
    line = row(proc.stdout, "bpf-linker")
    assert f"not on PATH, but found {home / '.cargo' / 'bin' / 'bpf-linker'}" in line, line
    assert f"export PATH={home / '.cargo' / 'bin'}:$PATH" in line
