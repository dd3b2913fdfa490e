"""The cache of toolchain facts: asked once, asked again whenever what decides the answer changes.

Real tool runs are counted: ``rustc``, ``rustup`` and ``bpf-linker`` are wrapped by scripts
first on PATH that log their arguments and exec the real tool. rustup runs with a private
``RUSTUP_HOME`` whose toolchains are links to the one ``scripts/setup.sh`` links as ``debian``,
so toolchains can be installed, removed and chosen for real without touching the user's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from stable_standin import rustup_missing
from toolchain_facts import linker_version, rustc_llvm_major, rustc_release

from pytest_ebpf.build.toolchain import (
    _LDD_LLVM,
    ToolError,
    _stamp,
    active_toolchain,
    bpf_linker_info,
    cache_file,
    linker_search_path,
    rustc_info,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
OLD_LINKER = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
              / "pytest-ebpf" / "bpf-linker-llvm19" / "bin" / "bpf-linker")


def _real(name: str, path: str | None = None) -> str:
    found = shutil.which(name, path=path)
    assert found, f"{name} is not on PATH; run scripts/setup.sh"
    return found


def _needs_rustup(why: str) -> None:
    if reason := rustup_missing(why):
        pytest.skip(reason)


def _debian_toolchain() -> str:
    if shutil.which("rustup") is None:  # rustc on PATH is Debian's: its sysroot is the toolchain
        return os.path.realpath(Path(_real("rustc")).parent.parent)
    home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    linked = home / "toolchains" / "debian"
    assert linked.is_dir(), f"{linked} missing: run scripts/setup.sh"
    return os.path.realpath(linked)


def write_wrapper(path: Path, real: str, log: Path) -> None:
    """A script at ``path`` that logs ``NAME ARGS`` to ``log`` and execs ``real``."""
    path.write_text(f"#!/bin/sh\necho \"{path.name} $*\" >> {shlex.quote(str(log))}\n"
                    f"exec {shlex.quote(real)} \"$@\"\n")
    path.chmod(0o755)


@dataclass
class Tools:
    wrappers: Path
    log: Path
    rustup_home: Path
    """Without rustup, an unused directory."""
    crate: Path
    linker: Path
    """The bpf-linker wrapper, alone in its directory (pass its parent as ``path_env``)."""
    toolchain_dir: str
    """Where the user's ``debian`` toolchain is (``pe-one`` and ``pe-two`` link there)."""
    real_linker: str

    def runs(self, tool: str, args: str) -> int:
        """How many times the wrapped ``tool`` ran with ``args`` among its arguments."""
        if not self.log.exists():
            return 0
        return sum(line.split(" ", 1)[0] == tool and f" {args}" in line
                   for line in self.log.read_text().splitlines())

    def rustup(self, *args: str) -> None:
        """Run the real rustup (not the wrapper: its runs are not counted)."""
        wrapped = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                  if p != str(self.wrappers))
        subprocess.run([_real("rustup", wrapped), *args], check=True, capture_output=True)


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tools:
    debian = _debian_toolchain()
    real_rustc = _real("rustc")
    real_linker = _real("bpf-linker", linker_search_path())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PYTEST_EBPF_TOOLCHAIN_CACHE", raising=False)
    monkeypatch.delenv("RUSTUP_TOOLCHAIN", raising=False)
    home = tmp_path / "rustup-home"
    (home / "toolchains").mkdir(parents=True)
    (home / "settings.toml").write_text(
        'version = "12"\ndefault_toolchain = "pe-one"\nprofile = "minimal"\n')
    for name in ("pe-one", "pe-two"):
        (home / "toolchains" / name).symlink_to(debian)
    monkeypatch.setenv("RUSTUP_HOME", str(home))
    log = tmp_path / "runs.log"
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    write_wrapper(wrappers / "rustc", real_rustc, log)
    if shutil.which("rustup") is not None:  # without it, the tests that ask rustup skip
        write_wrapper(wrappers / "rustup", _real("rustup"), log)
    linker_dir = tmp_path / "linker"
    linker_dir.mkdir()
    write_wrapper(linker_dir / "bpf-linker", real_linker, log)
    monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}{os.environ['PATH']}")
    crate = tmp_path / "work" / "crate"
    crate.mkdir(parents=True)
    return Tools(wrappers, log, home, crate, linker_dir / "bpf-linker", debian,
                 real_linker)


def _touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _replace(path: Path) -> None:
    """A new file with the same content and mode in place of ``path`` (a reinstall)."""
    new = path.with_name(path.name + ".new")
    shutil.copy2(path, new)
    os.replace(new, path)


# ---------------------------------------------------------------------------------------------
# Hits
# ---------------------------------------------------------------------------------------------


def test_rustc_info_is_asked_once(tools: Tools) -> None:
    first = rustc_info(None, tools.crate)
    assert tools.runs("rustc", "-vV") == 1
    assert tools.runs("rustc", "--print sysroot") == 1
    assert first.sysroot == Path(tools.toolchain_dir)
    assert cache_file().is_file()
    assert str(cache_file()).startswith(os.environ["XDG_CACHE_HOME"])
    second = rustc_info(None, tools.crate)
    assert second == first
    assert tools.runs("rustc", "-vV") == 1
    assert tools.runs("rustc", "--print sysroot") == 1


def test_active_toolchain_is_asked_once(tools: Tools) -> None:
    _needs_rustup("asks `rustup show active-toolchain`")
    first = active_toolchain(tools.crate)
    assert first is not None
    assert (first.name, first.reason) == ("pe-one", "default")
    assert active_toolchain(tools.crate) == first
    assert tools.runs("rustup", "show active-toolchain") == 1


def test_bpf_linker_info_is_asked_once(tools: Tools) -> None:
    first = bpf_linker_info(str(tools.linker.parent))
    assert first is not None
    assert first.path == tools.linker
    assert first.llvm_major == 22
    assert bpf_linker_info(str(tools.linker.parent)) == first
    assert tools.runs("bpf-linker", "--version") == 1
    assert tools.runs("bpf-linker", "--llvm-args") == 1


def test_an_explicit_toolchain_is_its_own_entry(tools: Tools) -> None:
    _needs_rustup("`rustc +pe-two` runs a rustup toolchain")
    assert rustc_info("pe-two", tools.crate).toolchain == "pe-two"
    assert rustc_info(None, tools.crate).toolchain is None
    assert tools.runs("rustc", "-vV") == 2
    assert rustc_info("pe-two", tools.crate).toolchain == "pe-two"
    assert tools.runs("rustc", "-vV") == 2


# ---------------------------------------------------------------------------------------------
# Misses: the binary
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [_touch, _replace], ids=["touched", "reinstalled"])
def test_a_changed_rustc_is_asked_again(tools: Tools, change: Callable[[Path], None]) -> None:
    info = rustc_info(None, tools.crate)
    change(tools.wrappers / "rustc")
    assert rustc_info(None, tools.crate) == info
    assert tools.runs("rustc", "-vV") == 2
    assert rustc_info(None, tools.crate) == info
    assert tools.runs("rustc", "-vV") == 2


@pytest.mark.parametrize("change", [_touch, _replace], ids=["touched", "reinstalled"])
def test_a_changed_rustup_is_asked_again(tools: Tools, change: Callable[[Path], None]) -> None:
    _needs_rustup("changes the rustup binary")
    active_toolchain(tools.crate)
    change(tools.wrappers / "rustup")
    active_toolchain(tools.crate)
    assert tools.runs("rustup", "show active-toolchain") == 2


@pytest.mark.parametrize("change", [_touch, _replace], ids=["touched", "reinstalled"])
def test_a_changed_bpf_linker_is_asked_again(tools: Tools,
                                             change: Callable[[Path], None]) -> None:
    bpf_linker_info(str(tools.linker.parent))
    change(tools.linker)
    assert bpf_linker_info(str(tools.linker.parent)) is not None
    assert tools.runs("bpf-linker", "--version") == 2
    assert tools.runs("bpf-linker", "--llvm-args") == 2


def test_another_bpf_linker_or_none_is_noticed(tools: Tools, tmp_path: Path) -> None:
    assert OLD_LINKER.is_file(), f"{OLD_LINKER} missing: run scripts/setup.sh test"
    new = bpf_linker_info(str(tools.linker.parent))
    assert new is not None and new.llvm_major == 22
    other = tmp_path / "other-linker"
    other.mkdir()
    (other / "bpf-linker").symlink_to(OLD_LINKER)
    old = bpf_linker_info(str(other))
    assert old is not None
    assert (old.path, old.llvm_major) == (other / "bpf-linker", 19)
    assert old.version != new.version
    empty = tmp_path / "no-linker"
    empty.mkdir()
    assert bpf_linker_info(str(empty)) is None
    assert bpf_linker_info(str(tools.linker.parent)) == new
    assert tools.runs("bpf-linker", "--version") == 1


def test_the_linker_in_cargo_home_is_noticed(tools: Tools, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """rustup puts $CARGO_HOME/bin first: the linker found there, or its absence, decides."""
    _needs_rustup("rustup puts $CARGO_HOME/bin first on PATH; cargo on PATH does not")
    assert OLD_LINKER.is_file(), f"{OLD_LINKER} missing: run scripts/setup.sh test"
    first = bpf_linker_info()
    assert first is not None and first.llvm_major == 22
    home = tmp_path / "cargo-home"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "bpf-linker").symlink_to(OLD_LINKER)
    monkeypatch.setenv("CARGO_HOME", str(home))
    old = bpf_linker_info()
    assert old is not None and old.llvm_major == 19
    (home / "bin" / "bpf-linker").unlink()
    monkeypatch.setenv("PATH", f"{tools.wrappers}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert shutil.which("bpf-linker", path=linker_search_path()) is None
    assert bpf_linker_info() is None


def test_a_changed_libllvm_is_noticed(tools: Tools, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The libLLVM bpf-linker loads is checked on every hit: here it is found through
    LD_LIBRARY_PATH, first a link to the real one, then a broken file in its place."""
    ldd = subprocess.run(["ldd", tools.real_linker], capture_output=True, text=True,
                         check=True).stdout
    libs = [(m.group(1), m.group(2)) for m in _LDD_LLVM.finditer(ldd)]
    assert libs, f"bpf-linker loads no shared libLLVM:\n{ldd}"
    bindir, libdir = tmp_path / "real-linker", tmp_path / "lib"
    bindir.mkdir()
    libdir.mkdir()
    (bindir / "bpf-linker").symlink_to(tools.real_linker)
    for soname, path in libs:
        (libdir / soname).symlink_to(path)
    monkeypatch.setenv("LD_LIBRARY_PATH", str(libdir))
    info = bpf_linker_info(str(bindir))
    assert info is not None and info.llvm_major == 22 and info.version != "unknown"
    entry, = json.loads(cache_file().read_text())["entries"].values()
    assert [stamp[0] for stamp in entry["stamps"]] == [str(libdir / soname) for soname, _ in libs]
    for soname, _ in libs:
        (libdir / soname).unlink()
        (libdir / soname).write_bytes(b"not a library")
    broken = bpf_linker_info(str(bindir))
    assert broken is not None and broken.version == "unknown"


# ---------------------------------------------------------------------------------------------
# Misses: what decides the toolchain
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rust-toolchain.toml", "rust-toolchain"])
def test_an_edited_toolchain_file_is_noticed(tools: Tools, name: str) -> None:
    _needs_rustup("rust-toolchain.toml is read by rustup")
    assert active_toolchain(tools.crate).name == "pe-one"  # type: ignore[union-attr]
    rustc_info(None, tools.crate)
    toolchain_file = tools.crate / name
    toolchain_file.write_text('[toolchain]\nchannel = "pe-two"\n')
    active = active_toolchain(tools.crate)
    assert active is not None and active.name == "pe-two"
    assert str(toolchain_file) in active.reason
    rustc_info(None, tools.crate)
    assert tools.runs("rustc", "-vV") == 2
    toolchain_file.write_text('[toolchain]\nchannel = "pe-one"\n')
    assert active_toolchain(tools.crate).name == "pe-one"  # type: ignore[union-attr]
    assert tools.runs("rustup", "show active-toolchain") == 3
    toolchain_file.write_text('[toolchain]\nchannel = "pe-two"\n')
    assert active_toolchain(tools.crate).name == "pe-two"  # type: ignore[union-attr]
    assert tools.runs("rustup", "show active-toolchain") == 3, "same content: the earlier answer"


def test_a_toolchain_file_in_a_parent_directory_is_noticed(tools: Tools) -> None:
    _needs_rustup("rust-toolchain.toml is read by rustup")
    assert active_toolchain(tools.crate).name == "pe-one"  # type: ignore[union-attr]
    (tools.crate.parent / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "pe-two"\n')
    assert active_toolchain(tools.crate).name == "pe-two"  # type: ignore[union-attr]
    assert tools.runs("rustup", "show active-toolchain") == 2


def test_rustup_toolchain_variable_is_noticed(tools: Tools,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_rustup("RUSTUP_TOOLCHAIN is read by rustup")
    info = rustc_info(None, tools.crate)
    assert active_toolchain(tools.crate).name == "pe-one"  # type: ignore[union-attr]
    monkeypatch.setenv("RUSTUP_TOOLCHAIN", "pe-two")
    active = active_toolchain(tools.crate)
    assert active is not None and active.name == "pe-two"
    assert "RUSTUP_TOOLCHAIN" in active.reason
    assert rustc_info(None, tools.crate) == info
    assert tools.runs("rustc", "-vV") == 2
    monkeypatch.delenv("RUSTUP_TOOLCHAIN")
    assert active_toolchain(tools.crate).name == "pe-one"  # type: ignore[union-attr]
    rustc_info(None, tools.crate)
    assert tools.runs("rustc", "-vV") == 2, "back to the first setting: its answer is still good"
    assert tools.runs("rustup", "show active-toolchain") == 2


def test_rustup_default_is_noticed(tools: Tools) -> None:
    _needs_rustup("runs `rustup default`")
    assert active_toolchain(tools.crate).name == "pe-one"  # type: ignore[union-attr]
    tools.rustup("default", "pe-two")
    assert active_toolchain(tools.crate).name == "pe-two"  # type: ignore[union-attr]


def test_rustup_override_is_noticed(tools: Tools) -> None:
    _needs_rustup("runs `rustup override set`")
    assert active_toolchain(tools.crate).name == "pe-one"  # type: ignore[union-attr]
    tools.rustup("override", "set", "pe-two", "--path", str(tools.crate))
    active = active_toolchain(tools.crate)
    assert active is not None and active.name == "pe-two"
    other = tools.crate.parent / "other"
    other.mkdir()
    assert active_toolchain(other).name == "pe-one"  # type: ignore[union-attr]


def test_a_relinked_toolchain_is_noticed(tools: Tools, tmp_path: Path) -> None:
    """``rustup toolchain uninstall`` and ``link`` to another directory: rustc is asked
    again, however fast it happens."""
    _needs_rustup("runs `rustup toolchain uninstall` and `link`")
    rustc_info(None, tools.crate)
    rustc_info("pe-two", tools.crate)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "bin").mkdir(parents=True)
    (elsewhere / "lib").symlink_to(Path(tools.toolchain_dir) / "lib")
    (elsewhere / "bin" / "rustc").symlink_to(Path(tools.toolchain_dir) / "bin" / "rustc")
    tools.rustup("toolchain", "uninstall", "pe-one")
    tools.rustup("toolchain", "link", "pe-one", str(elsewhere))
    rustc_info(None, tools.crate)
    rustc_info("pe-two", tools.crate)
    assert tools.runs("rustc", "-vV") == 4


def test_a_new_toolchain_is_noticed(tools: Tools) -> None:
    _needs_rustup("runs `rustup toolchain link`")
    active_toolchain(tools.crate)
    tools.rustup("toolchain", "link", "pe-three", tools.toolchain_dir)
    active_toolchain(tools.crate)
    assert tools.runs("rustup", "show active-toolchain") == 2


def test_a_removed_toolchain_is_not_answered_from_the_cache(tools: Tools) -> None:
    _needs_rustup("runs `rustup toolchain uninstall`")
    rustc_info("pe-two", tools.crate)
    tools.rustup("toolchain", "uninstall", "pe-two")
    with pytest.raises(ToolError, match="pe-two"):
        rustc_info("pe-two", tools.crate)


# ---------------------------------------------------------------------------------------------
# The cache file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe\x00garbage", b"[1, 2]", b'{"version": 1, "entries": []}',
    b'{"version": 99, "entries": {}}', b"[" * 100_000,
], ids=["empty", "truncated", "binary", "list", "entries-list", "other-version", "deep"])
def test_a_corrupt_cache_file_is_ignored(tools: Tools, content: bytes) -> None:
    cache_file().parent.mkdir(parents=True)
    cache_file().write_bytes(content)
    info = rustc_info(None, tools.crate)
    assert info.release
    assert json.loads(cache_file().read_text())["version"] == 1
    assert rustc_info(None, tools.crate) == info
    assert tools.runs("rustc", "-vV") == 1


@pytest.mark.parametrize("damage", [
    lambda e: e.update(value={}),
    lambda e: e.update(value={"release": 1}),
    lambda e: e.update(stamps="nonsense"),
    lambda e: e.update(stamps=[["/no/such/file", None, 3]]),
    lambda e: e.clear(),
], ids=["no-fields", "wrong-type", "stamps-not-a-list", "bad-stamp", "empty-entry"])
def test_damaged_entries_are_asked_again(tools: Tools,
                                         damage: Callable[[dict[str, object]], None]) -> None:
    info = rustc_info(None, tools.crate)
    data = json.loads(cache_file().read_text())
    for entry in data["entries"].values():
        damage(entry)
    cache_file().write_text(json.dumps(data))
    assert rustc_info(None, tools.crate) == info
    assert tools.runs("rustc", "-vV") == 2


def test_an_unwritable_cache_is_not_an_error(tools: Tools) -> None:
    cache_file().mkdir(parents=True)  # a directory where the file should be
    first = rustc_info(None, tools.crate)
    assert rustc_info(None, tools.crate) == first
    assert tools.runs("rustc", "-vV") == 2
    assert list(cache_file().parent.iterdir()) == [cache_file()], "no temporary file left"


def test_the_cache_can_be_turned_off(tools: Tools, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_EBPF_TOOLCHAIN_CACHE", "off")
    rustc_info(None, tools.crate)
    rustc_info(None, tools.crate)
    assert tools.runs("rustc", "-vV") == 2
    assert not cache_file().exists()


# ---------------------------------------------------------------------------------------------
# A session on an up-to-date crate
# ---------------------------------------------------------------------------------------------

BUILD_TEST = """
def test_build(ebpf_build):
    assert ebpf_build.path.is_file()
"""


@pytest.mark.slow
def test_a_second_session_asks_no_toolchain_question(
        pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        example_object: Callable[[str], Path]) -> None:
    """The example workspace, copied with its built target dir, built by two sessions: the
    second runs cargo and nothing else (no rustc or rustup through PATH; no answer written to
    the cache, so bpf-linker was not asked either), and its report still names the facts."""
    example_object("bpfel-unknown-none")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PYTEST_EBPF_TOOLCHAIN_CACHE", raising=False)
    ws = tmp_path / "ws"
    shutil.copytree(EXAMPLE, ws, symlinks=True, ignore=shutil.ignore_patterns(
        "tests", ".pytest*", "incremental", "bpfeb-unknown-none"))
    log = tmp_path / "runs.log"
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    write_wrapper(wrappers / "rustc", _real("rustc"), log)
    rustup = shutil.which("rustup") is not None  # without it, cargo on PATH builds: no choice
    if rustup:
        write_wrapper(wrappers / "rustup", _real("rustup"), log)
    monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}{os.environ['PATH']}")
    pytester.makepyfile(test_build=BUILD_TEST)

    def session() -> tuple[str, list[str]]:
        before = log.read_text().splitlines() if log.exists() else []
        result = pytester.runpytest(f"--ebpf-crate={ws / 'lock-ebpf'}", "-p",
                                    "no:cacheprovider")
        result.assert_outcomes(passed=1)
        return result.stdout.str(), log.read_text().splitlines()[len(before):]

    first_out, first_runs = session()
    assert any(run.startswith("rustc -vV") for run in first_runs), first_runs
    assert any(run.startswith("rustup show active-toolchain") for run in first_runs) == rustup
    entries = json.loads(cache_file().read_text())["entries"]
    assert len(entries) == (3 if rustup else 2), entries  # rustc, bpf-linker (, rustup's pick)
    written = _stamp(cache_file())
    second_out, second_runs = session()
    assert second_runs == []
    assert _stamp(cache_file()) == written, "the second session wrote to the cache"
    assert _header(second_out) == _header(first_out)
    assert f"rustc {rustc_release()}" in _header(second_out)
    assert f"bpf-linker {linker_version()} (LLVM {rustc_llvm_major()})" in _header(second_out)
    if rustup:
        assert "toolchain chosen by rustup: overridden by" in second_out
    else:
        assert "with toolchain cargo on PATH (" in _header(second_out)


def _header(out: str) -> str:
    """The report's ``built ...`` line without the build time."""
    line = next(line for line in out.splitlines() if line.startswith("built "))
    return re.sub(r" in [0-9.]+s ", " in Ns ", line)
