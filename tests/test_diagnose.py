"""Every known toolchain problem, provoked for real, must come back as a diagnosis with its fix.

Nothing here feeds invented strings: each test breaks the toolchain, the PATH or a copy of the
example crate, runs the plugin (or the real tool), and checks the answer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_ebpf.diagnose import BuildContext, diagnose

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
OLD_LINKER = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
              / "pytest-ebpf" / "bpf-linker-llvm19" / "bin" / "bpf-linker")
BUILD_TEST = """
def test_build(ebpf_build):
    assert ebpf_build.path.is_file()
"""


@pytest.fixture
def example_copy(tmp_path: Path) -> Path:
    """A copy of the example workspace with its own target directory."""
    dst = tmp_path / "ws"
    shutil.copytree(EXAMPLE, dst, ignore=shutil.ignore_patterns("target", "tests", ".pytest*"))
    return dst


def private_cargo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       linker: Path | None) -> None:
    """A CARGO_HOME whose bin/ holds only ``linker`` (rustup puts $CARGO_HOME/bin first on
    PATH for everything it runs), sharing the real registry cache so nothing is downloaded."""
    real = Path(os.environ["CARGO_HOME"])
    home = tmp_path / "cargo-home"
    (home / "bin").mkdir(parents=True)
    (home / "registry").symlink_to(real / "registry")
    if linker is not None:
        (home / "bin" / "bpf-linker").symlink_to(linker)
    rustup = tool_dir(tmp_path, "rustup")
    for proxy in ("cargo", "rustc"):
        (rustup / proxy).symlink_to(rustup / "rustup")
    monkeypatch.setenv("CARGO_HOME", str(home))
    monkeypatch.setenv("PATH", f"{rustup}:/usr/bin:/bin")


def tool_dir(tmp_path: Path, *names: str) -> Path:
    """A directory holding links to the named tools only (to build a PATH without the others)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in names:
        found = shutil.which(name)
        assert found, f"{name} is not on PATH; run scripts/setup.sh test"
        (bindir / name).symlink_to(found)
    return bindir


def run_plugin(pytester: pytest.Pytester, crate: Path, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_build=BUILD_TEST)
    return pytester.runpytest(f"--ebpf-crate={crate}", "-p", "no:cacheprovider", *args)


def assert_diagnosed(result: pytest.RunResult, key: str, *fix_words: str) -> str:
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert f"[{key}]" in text, text
    fix_lines = [line for line in text.splitlines() if "fix:" in line]
    for word in fix_words:
        assert any(word in line for line in fix_lines), (word, fix_lines)
    assert "Traceback" not in text
    return text


def test_toolchain_not_installed(pytester: pytest.Pytester, example_copy: Path) -> None:
    result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-toolchain=pe-no-such-1.0")
    text = assert_diagnosed(result, "toolchain-not-installed",
                            "rustup toolchain install pe-no-such-1.0")
    assert "eBPF build of lock-ebpf failed: rust toolchain 'pe-no-such-1.0' is not installed" \
        in text


def test_no_core_for_target_on_rustup_stable(pytester: pytest.Pytester,
                                             example_copy: Path) -> None:
    result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-toolchain=stable",
                        "--ebpf-build-std=none")
    assert_diagnosed(result, "no-core-for-target", "--ebpf-build-std=core", "rust-src")


def test_z_flag_on_stable(pytester: pytest.Pytester, example_copy: Path) -> None:
    result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-toolchain=stable",
                        "--ebpf-build-std=core")
    text = assert_diagnosed(result, "z-flag-on-stable", "nightly")
    assert "[rust-src-missing]" not in text


def test_rust_src_missing(pytester: pytest.Pytester, example_copy: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """rustup's stable has no rust-src; RUSTC_BOOTSTRAP lets -Z through so cargo looks for it."""
    sysroot = subprocess.run(["rustc", "+stable", "--print", "sysroot"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert not (Path(sysroot) / "lib/rustlib/src/rust/library/Cargo.lock").exists(), \
        "this test needs a rustup 'stable' toolchain WITHOUT rust-src"
    monkeypatch.setenv("RUSTC_BOOTSTRAP", "1")
    result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-toolchain=stable",
                        "--ebpf-build-std=core")
    assert_diagnosed(result, "rust-src-missing", "rustup component add rust-src --toolchain stable")


def test_bpf_linker_not_found(pytester: pytest.Pytester, example_copy: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    private_cargo_home(tmp_path, monkeypatch, None)
    assert shutil.which("bpf-linker") is None
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    assert_diagnosed(result, "linker-not-found",
                     "cargo install bpf-linker --force --no-default-features --features llvm-22")


def test_llvm_mismatch(pytester: pytest.Pytester, example_copy: Path, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert OLD_LINKER.is_file(), f"{OLD_LINKER} missing: run scripts/setup.sh test"
    private_cargo_home(tmp_path, monkeypatch, OLD_LINKER)
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    assert_diagnosed(result, "llvm-mismatch", "--features llvm-22")


def test_bpf_config_at_workspace_root(pytester: pytest.Pytester, example_copy: Path) -> None:
    crate_config = example_copy / "lock-ebpf" / ".cargo"
    shutil.move(str(crate_config), str(example_copy / ".cargo"))
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    text = assert_diagnosed(result, "std-built-for-bpf", "lock-ebpf/.cargo/config.toml")
    assert str(example_copy / ".cargo" / "config.toml") in text


def test_cargo_not_on_path(pytester: pytest.Pytester, example_copy: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    assert_diagnosed(result, "cargo-not-found", "install Rust")


def test_rustup_refuses_tier3_std() -> None:
    """The real answer of ``rustup target add`` for a BPF target is recognised."""
    toolchain = "stable"
    proc = subprocess.run(["rustup", "target", "add", "bpfel-unknown-none", "--toolchain",
                           toolchain], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RUSTUP_MAX_RETRIES": "0"})
    assert proc.returncode != 0, proc.stderr
    found = diagnose(proc.stderr, BuildContext(toolchain=toolchain))
    assert [d.key for d in found][:1] == ["rust-std-unavailable"], proc.stderr
    assert "build-std=core" in found[0].fix
