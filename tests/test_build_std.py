"""The seeds' canonical path, built for real: a nightly toolchain with rust-src and
``-Z build-std=core``, set in the eBPF crate's own ``.cargo/config.toml``.

There is no rustup nightly with rust-src on these machines. Two real stand-ins:

* Debian's toolchain acting as a nightly through ``RUSTC_BOOTSTRAP=1``: its ``rust-web-src``
  holds the library sources, so ``-Z build-std=core`` compiles core from them (cargo then
  ignores the prebuilt core). This covers the checklist's config and ``--ebpf-build-std=core``.
* For ``--ebpf-build-std=auto`` the toolchain must have no prebuilt core for the target, as a
  rustup nightly has none for the Tier 3 BPF targets: the same rustc with a sysroot that holds
  everything of Debian's but the BPF libraries (``nightly_standin``).

Each build is checked from outside: cargo's own "Compiling core" line, and pyelftools on the
object (eBPF machine, byte order, BTF).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from minicrate import CHECKLIST_FLAGS, make_crate, toml_list
from stable_standin import stable_without

pytestmark = pytest.mark.slow

EM_BPF = 247
ROOT = Path(__file__).resolve().parent.parent
DEBIAN_SYSROOT = Path("/usr/lib/rustlib")
COMPILING_CORE = "ebpf build: Compiling core v0.0.0"


def checklist_config(build_std: bool = True) -> str:
    """The seeds' checklist, verbatim in substance."""
    lines = ['[build]', 'target = "bpfel-unknown-none"', '']
    if build_std:
        lines += ['[unstable]', 'build-std = ["core"]', '']
    for target in ("bpfel-unknown-none", "bpfeb-unknown-none"):
        lines += [f"[target.{target}]", 'linker = "bpf-linker"',
                  f"rustflags = {toml_list(CHECKLIST_FLAGS)}", ""]
    return "\n".join(lines)


REPORT_TEST = """
import pathlib

def test_object(ebpf_build):
    pathlib.Path("object-path.txt").write_text(ebpf_build.object_path)
"""


@pytest.fixture
def target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cargo target dir of the test's own, so that cargo's "Compiling core" line proves
    this build compiled core (a shared one would hold another test's core, fresh)."""
    return tmp_path_factory.mktemp("build-std-target")


@pytest.fixture
def as_nightly(monkeypatch: pytest.MonkeyPatch, target_dir: Path) -> None:
    """Debian's toolchain as a nightly: RUSTC_BOOTSTRAP=1, cargo and rustc from /usr/bin."""
    if not (DEBIAN_SYSROOT / "src" / "rust" / "library" / "Cargo.lock").is_file():
        pytest.fail("Debian's rust-web-src is missing: run scripts/setup.sh", pytrace=False)
    monkeypatch.setenv("RUSTC_BOOTSTRAP", "1")
    monkeypatch.setenv("CARGO_TARGET_DIR", str(target_dir))
    monkeypatch.setenv("PATH", f"/usr/bin:{os.environ['PATH']}")


def _object(pytester: pytest.Pytester) -> Path:
    return Path((pytester.path / "object-path.txt").read_text())


def _check_object(path: Path, little_endian: bool) -> None:
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        assert elf["e_machine"] == "EM_BPF" or elf.header["e_machine"] == EM_BPF
        assert elf.little_endian is little_endian
        names = {s.name for s in elf.iter_sections()}
    assert {".BTF", ".BTF.ext", "xdp"} <= names, names


def _run(pytester: pytest.Pytester, crate: Path, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_obj=REPORT_TEST)
    return pytester.runpytest_subprocess(f"--ebpf-crate={crate}", "-p", "no:cacheprovider",
                                         *args, timeout=1200)


@pytest.mark.parametrize(("target", "little"), [("bpfel-unknown-none", True),
                                                ("bpfeb-unknown-none", False)])
def test_checklist_crate_builds_core_from_source(pytester: pytest.Pytester, tmp_path: Path,
                                                 as_nightly: None, target: str,
                                                 little: bool) -> None:
    crate = make_crate(tmp_path / "fw-ebpf", config=checklist_config(), toolchain=None, lto=True)
    result = _run(pytester, crate, f"--ebpf-target={target}")
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert COMPILING_CORE in text, text  # cargo really built core from rust-src
    assert f"build-std: core (from {crate / '.cargo' / 'config.toml'})" in text
    _check_object(_object(pytester), little)


def test_lto_in_rustflags_without_lto_in_the_profile(pytester: pytest.Pytester, tmp_path: Path,
                                                     as_nightly: None) -> None:
    """The checklist's `-C lto=yes` in rustflags needs `lto = true` in the cargo profile; cargo
    refuses the mix otherwise, and the plugin says so."""
    crate = make_crate(tmp_path / "fw-ebpf", config=checklist_config(), toolchain=None)
    result = _run(pytester, crate)
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "[lto-in-rustflags]" in text, text
    assert "fix: turn LTO on in the profile: `lto = true` under [profile.release]" in text


def test_build_std_option_core(pytester: pytest.Pytester, tmp_path: Path,
                               as_nightly: None) -> None:
    crate = make_crate(tmp_path / "fw-ebpf", config=checklist_config(build_std=False), lto=True,
                       toolchain=None)
    result = _run(pytester, crate, "--ebpf-build-std=core")
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert COMPILING_CORE in text, text
    assert "build-std: core (from option)" in text
    assert "-Z build-std=core" in text or "build-std: core" in text
    _check_object(_object(pytester), True)


@pytest.fixture
def nightly_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target_dir: Path) -> Path:
    """Debian's rustc and cargo as a nightly whose sysroot has rust-src but no prebuilt BPF
    core (as a rustup nightly)."""
    bindir = stable_without(tmp_path / "nightly-standin", rust_src=True, nightly=True)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("CARGO_TARGET_DIR", str(target_dir))
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert sysroot == str(bindir.parent)
    return bindir.parent


def test_build_std_auto_builds_core_when_the_sysroot_has_none(
        pytester: pytest.Pytester, tmp_path: Path, nightly_standin: Path) -> None:
    crate = make_crate(tmp_path / "fw-ebpf", config=checklist_config(build_std=False), lto=True,
                       toolchain=None)
    result = _run(pytester, crate)  # --ebpf-build-std defaults to auto
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert "build-std: auto (from default)" in text
    assert COMPILING_CORE in text, text
    assert "\nbuild-std: core\n" in text  # the summary: what auto chose
    _check_object(_object(pytester), True)


def test_build_std_auto_uses_the_prebuilt_core(pytester: pytest.Pytester, tmp_path: Path,
                                               as_nightly: None) -> None:
    """The control: with Debian's prebuilt core in the sysroot, auto does not build core."""
    crate = make_crate(tmp_path / "fw-ebpf", config=checklist_config(build_std=False), lto=True,
                       toolchain=None)
    result = _run(pytester, crate)
    result.assert_outcomes(passed=1)
    assert COMPILING_CORE not in result.stdout.str()


def test_tox_build_std_environment(tmp_path: Path) -> None:
    """tox.ini's environment for this path builds the example through build-std and runs its
    tests."""
    tox = Path(sys.executable).parent / "tox"
    env = {**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")}
    proc = subprocess.run([str(tox), "-e", "build-std", "--workdir", str(tmp_path / "tox"),
                           "--", "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env,
                          check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert COMPILING_CORE in out, out[-5000:]
    assert "build-std: core (from env PYTEST_EBPF_BUILD_STD)" in out
