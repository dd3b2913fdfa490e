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
from stable_standin import rustup_missing, stable_without
from toolchain_facts import rustc_llvm_major

from pytest_ebpf.build.diagnose import BuildContext, diagnose

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
    PATH for everything it runs), sharing the real registry cache so nothing is downloaded.
    Without rustup, cargo on PATH is Debian's, and that bin/ is put on PATH by hand."""
    real = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    home = tmp_path / "cargo-home"
    (home / "bin").mkdir(parents=True)
    (home / "registry").symlink_to(real / "registry")
    if linker is not None:
        (home / "bin" / "bpf-linker").symlink_to(linker)
    monkeypatch.setenv("CARGO_HOME", str(home))
    if shutil.which("rustup") is None:
        monkeypatch.setenv("PATH", f"{home / 'bin'}:/usr/bin:/bin")
        return
    rustup = tool_dir(tmp_path, "rustup")
    for proxy in ("cargo", "rustc"):
        (rustup / proxy).symlink_to(rustup / "rustup")
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
    if reason := rustup_missing("--ebpf-toolchain=NAME names a rustup toolchain"):
        pytest.skip(reason)
    result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-toolchain=pe-no-such-1.0")
    text = assert_diagnosed(result, "toolchain-not-installed",
                            "rustup toolchain install pe-no-such-1.0")
    assert "eBPF build of lock-ebpf failed: rust toolchain 'pe-no-such-1.0' is not installed" \
        in text


def test_no_core_for_target_on_rustup_stable(pytester: pytest.Pytester, example_copy: Path,
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    toolchain = ["--ebpf-toolchain=stable"]
    if shutil.which("rustup") is None:  # stable rustc on PATH without BPF core, as rustup's
        bindir = stable_without(tmp_path / "stable", rust_src=True)
        monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
        toolchain = []
    result = run_plugin(pytester, example_copy / "lock-ebpf", *toolchain, "--ebpf-build-std=none")
    assert_diagnosed(result, "no-core-for-target", "--ebpf-build-std=core", "rust-src")


def test_z_flag_on_stable(pytester: pytest.Pytester, example_copy: Path) -> None:
    if reason := rustup_missing("provokes the refusal of -Z by a stable cargo (rustup's "
                                "stable); Debian's cargo on PATH accepts -Z"):
        pytest.skip(reason)
    result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-toolchain=stable",
                        "--ebpf-build-std=core")
    text = assert_diagnosed(result, "z-flag-on-stable", "nightly")
    assert "[rust-src-missing]" not in text


def _without_rustup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Debian's cargo and rustc and no rustup: PATH is a directory holding only bpf-linker,
    then /usr/bin and /bin."""
    linker = shutil.which("bpf-linker") or str(Path(os.environ["CARGO_HOME"]) / "bin" /
                                               "bpf-linker")
    bindir = tmp_path / "linker-only"
    bindir.mkdir()
    (bindir / "bpf-linker").symlink_to(linker)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    assert shutil.which("rustup") is None


def test_toolchain_named_without_rustup(pytester: pytest.Pytester, example_copy: Path,
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _without_rustup(monkeypatch, tmp_path)
    result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-toolchain=nightly")
    text = assert_diagnosed(result, "toolchain-without-rustup",
                            "drop the setting to build with the cargo and rustc on PATH")
    assert "couldn't read `+nightly`" not in text


def test_z_flag_refused_by_a_stable_rustc(pytester: pytest.Pytester, example_copy: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """Debian's cargo lets -Z build-std through (the crate's RUSTC_BOOTSTRAP=aya_ebpf); its
    stable rustc then refuses -Z for the other crates."""
    _without_rustup(monkeypatch, tmp_path)
    result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-build-std=core")
    text = assert_diagnosed(result, "z-flag-on-stable", "nightly")
    assert "the option `Z` is only accepted on the nightly compiler" in text


def test_rust_src_missing(pytester: pytest.Pytester, example_copy: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """rustup's stable has no rust-src; RUSTC_BOOTSTRAP lets -Z through so cargo looks for it."""
    if shutil.which("rustup") is None:  # stable rustc on PATH without rust-src, as rustup's
        bindir = stable_without(tmp_path / "stable", bpf_core=True)
        monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
        monkeypatch.setenv("RUSTC_BOOTSTRAP", "1")
        result = run_plugin(pytester, example_copy / "lock-ebpf", "--ebpf-build-std=core")
        assert_diagnosed(result, "rust-src-missing", "rust-src", "--ebpf-build-std=none")
        return
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
                     "cargo install bpf-linker --force --no-default-features --features "
                     f"llvm-{rustc_llvm_major()}")


def test_llvm_mismatch(pytester: pytest.Pytester, example_copy: Path, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert OLD_LINKER.is_file(), f"{OLD_LINKER} missing: run scripts/setup.sh test"
    private_cargo_home(tmp_path, monkeypatch, OLD_LINKER)
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    assert_diagnosed(result, "llvm-mismatch", f"--features llvm-{rustc_llvm_major()}")


def test_bpf_config_at_workspace_root_builds(pytester: pytest.Pytester,
                                             example_copy: Path) -> None:
    """BPF settings at the workspace root are not refused: cargo can build the eBPF crate
    (its dependencies are no_std), so the plugin lets it."""
    shutil.move(str(example_copy / "lock-ebpf" / ".cargo"), str(example_copy / ".cargo"))
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    result.assert_outcomes(passed=1)


def test_bpf_config_at_workspace_root_with_a_std_dependency(pytester: pytest.Pytester,
                                                           example_copy: Path) -> None:
    """The root config is named when it really breaks the build: the eBPF crate depends on a
    workspace member that needs std, and cargo builds that member for BPF."""
    shutil.move(str(example_copy / "lock-ebpf" / ".cargo"), str(example_copy / ".cargo"))
    helper = example_copy / "helper"
    (helper / "src").mkdir(parents=True)
    (helper / "Cargo.toml").write_text(
        '[package]\nname = "helper"\nversion = "0.1.0"\nedition = "2021"\n')
    (helper / "src" / "lib.rs").write_text("pub fn name() -> String { String::new() }\n")
    ws = example_copy / "Cargo.toml"
    ws.write_text(ws.read_text().replace('"lock-ebpf"]', '"lock-ebpf", "helper"]'))
    manifest = example_copy / "lock-ebpf" / "Cargo.toml"
    manifest.write_text(manifest.read_text().replace(
        "[dependencies]\n", '[dependencies]\nhelper = { path = "../helper" }\n'))
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    text = assert_diagnosed(result, "std-built-for-bpf", "lock-ebpf/.cargo/config.toml")
    assert str(example_copy / ".cargo" / "config.toml") in text
    assert "can't find crate for `std`" in text


def test_feature_on_stable_toolchain(pytester: pytest.Pytester, example_copy: Path) -> None:
    """aya-ebpf uses #![feature] on BPF targets; a stable toolchain without the example's
    RUSTC_BOOTSTRAP=aya_ebpf refuses it, and the fix names that exact setting."""
    config = example_copy / "lock-ebpf" / ".cargo" / "config.toml"
    text = config.read_text()
    assert 'RUSTC_BOOTSTRAP = "aya_ebpf"' in text
    config.write_text(text.replace('RUSTC_BOOTSTRAP = "aya_ebpf"', ""))
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    out = assert_diagnosed(result, "feature-on-stable", 'RUSTC_BOOTSTRAP = "aya_ebpf"')
    assert "aya-ebpf uses `#![feature]`" in out


def test_dependency_needs_a_newer_rustc(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The resolver trap of public projects: `aya-build = "0.2.0"` resolves to 0.2.1, which
    needs a newer rustc than the toolchain's (edition 2021: no rustc-aware resolver). The
    newest aya-build must need more than this rustc for the trap to exist."""
    debian = ["+debian"] if shutil.which("rustup") else []  # without rustup: rustc on PATH
    rustc = subprocess.run(["rustc", *debian, "-vV"], capture_output=True, text=True,
                           check=True).stdout
    crate = tmp_path / "trap-ebpf"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        '[package]\nname = "trap-ebpf"\nversion = "0.1.0"\nedition = "2021"\n\n'
        '[build-dependencies]\naya-build = { version = "0.2.0", default-features = false }\n')
    (crate / "src" / "main.rs").write_text(
        "#![no_std]\n#![no_main]\n#[panic_handler]\n"
        "fn panic(_: &core::panic::PanicInfo) -> ! { loop {} }\n")
    (crate / "build.rs").write_text("fn main() {}\n")
    (crate / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "debian"\n')
    result = run_plugin(pytester, crate)
    text = assert_diagnosed(result, "rustc-too-old-for-dependency", "--precise")
    release = next(line.split()[1] for line in rustc.splitlines() if line.startswith("release"))
    assert f"but the toolchain is rustc {release}" in text
    assert "dependency aya-build 0.2." in text


def test_cargo_not_on_path(pytester: pytest.Pytester, example_copy: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run_plugin(pytester, example_copy / "lock-ebpf")
    assert_diagnosed(result, "cargo-not-found", "install Rust")


def test_rustup_refuses_tier3_std() -> None:
    """The real answer of ``rustup target add`` for a BPF target is recognised."""
    if reason := rustup_missing("provokes rustup's own refusal of `rustup target add`"):
        pytest.skip(reason)
    toolchain = "stable"
    proc = subprocess.run(["rustup", "target", "add", "bpfel-unknown-none", "--toolchain",
                           toolchain], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RUSTUP_MAX_RETRIES": "0"})
    assert proc.returncode != 0, proc.stderr
    found = diagnose(proc.stderr, BuildContext(toolchain=toolchain))
    assert [d.key for d in found][:1] == ["rust-std-unavailable"], proc.stderr
    assert "build-std=core" in found[0].fix
