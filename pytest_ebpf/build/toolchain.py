"""Facts about the Rust-to-eBPF toolchain: rustup, rustc, its sysroot, and bpf-linker.

Every function here asks the real tools (``rustc -vV``, ``rustup show active-toolchain``,
``bpf-linker --version``, ``ldd``); nothing is guessed from paths alone. The results are
frozen dataclasses that the build, the doctor and the report header share.

The answers of :func:`rustc_info`, :func:`active_toolchain` and :func:`bpf_linker_info` are
cached in ``$XDG_CACHE_HOME/pytest-ebpf/toolchain-facts.json`` (``~/.cache/...``), keyed by
the identity of everything that decides them, checked without running a process:

* the binary PATH resolves to: its path, the file behind its symlinks, and that file's
  device, inode, size, mtime and ctime;
* rustup's state: ``$RUSTUP_HOME/settings.toml``, the entries of its ``toolchains``
  directory, the ``rust-toolchain(.toml)`` found from the directory upward,
  ``RUSTUP_TOOLCHAIN`` and the other variables rustup reads;
* checked again on every hit, the files learnt from the answer: the toolchain's
  ``bin/rustc`` and ``librustc_driver``, the libLLVM bpf-linker loads.

Any change misses the cache and asks the tools again; failures are never cached.
``PYTEST_EBPF_TOOLCHAIN_CACHE=off`` turns the cache off; an unreadable or corrupt cache file
is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pytest_ebpf.errors import EbpfError

_TIMEOUT = 60


@dataclass(frozen=True)
class RustcInfo:
    """What ``rustc [+toolchain] -vV`` and ``--print sysroot`` say."""

    toolchain: str | None
    """The rustup toolchain asked for (``None``: whatever rustup picks in the crate dir)."""
    release: str
    """``1.96.0``, ``1.97.0-nightly``..."""
    channel: str
    """``stable``, ``beta``, ``nightly`` or ``dev``."""
    llvm_version: str
    """``22.1.8``; empty when rustc does not say."""
    host: str
    sysroot: Path

    @property
    def llvm_major(self) -> int | None:
        head = self.llvm_version.split(".", 1)[0]
        return int(head) if head.isdigit() else None

    def has_core(self, target: str) -> bool:
        """Is a prebuilt ``core`` for ``target`` in the sysroot (so no build-std is needed)?"""
        libdir = self.sysroot / "lib" / "rustlib" / target / "lib"
        return any(libdir.glob("libcore-*.rlib"))

    @property
    def rust_src(self) -> Path:
        return self.sysroot / "lib" / "rustlib" / "src" / "rust" / "library"

    def has_rust_src(self) -> bool:
        """Is the ``rust-src`` component (library sources for ``-Z build-std``) present?"""
        return (self.rust_src / "Cargo.lock").is_file()


@dataclass(frozen=True)
class ActiveToolchain:
    """The toolchain rustup would pick in a directory, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class LinkerInfo:
    """The ``bpf-linker`` on PATH."""

    path: Path
    version: str
    llvm_major: int | None
    """The LLVM major version bpf-linker is linked against, from its shared libLLVM."""


class ToolError(EbpfError):
    """A tool could not be run or answered nonsense; the message says which and why."""


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolError(f"`{argv[0]}` is not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"`{' '.join(argv)}` did not answer within {_TIMEOUT}s") from exc


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "(no output)"


# ---------------------------------------------------------------------------------------------
# The cache of toolchain facts
# ---------------------------------------------------------------------------------------------

_CACHE_VERSION = 1
_CACHE_NAME = "toolchain-facts.json"
_CACHE_ENTRIES = 64
_CACHE_SWITCH = "PYTEST_EBPF_TOOLCHAIN_CACHE"
#: The environment that decides which toolchain rustup runs and what a binary loads.
_RUSTUP_ENV = ("RUSTUP_TOOLCHAIN", "RUSTUP_HOME", "CARGO_HOME", "HOME", "LD_LIBRARY_PATH",
               "LD_PRELOAD")
_TOOLCHAIN_FILES = ("rust-toolchain", "rust-toolchain.toml")

Stamp = Optional[list[int]]


def cache_file() -> Path:
    """Where the toolchain facts are kept: ``$XDG_CACHE_HOME/pytest-ebpf/toolchain-facts.json``
    (a relative ``XDG_CACHE_HOME`` is ignored, as the XDG spec says)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "pytest-ebpf" / _CACHE_NAME


def _cache_on() -> bool:
    return os.environ.get(_CACHE_SWITCH, "").strip().lower() not in ("off", "0", "no", "false")


def _stamp(path: str | os.PathLike[str]) -> Stamp:
    """The identity of the file at ``path`` (symlinks followed); ``None`` when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _binary_identity(found: str) -> list[Any]:
    """What PATH resolved to: the name, the file behind its symlinks, and that file's stamp."""
    path = os.path.abspath(found)
    real = os.path.realpath(path)
    return [path, real, _stamp(real)]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def _toolchain_file(cwd: Path) -> list[Any]:
    """The ``rust-toolchain(.toml)`` rustup would read in ``cwd``: the nearest directory, from
    ``cwd`` upward, holding either, with both files' contents."""
    here = Path(os.path.realpath(cwd))
    for directory in (here, *here.parents):
        found = [[name, text] for name in _TOOLCHAIN_FILES
                 if (text := _read_text(directory / name)) is not None]
        if found:
            return [str(directory), found]
    return []


def _installed(toolchains: Path) -> list[Any]:
    """The entries of rustup's ``toolchains`` directory: each name with its inode and, for a
    linked toolchain, where the link points (a toolchain installed, removed or re-linked
    changes this, however fast it happens)."""
    try:
        with os.scandir(toolchains) as listing:
            found = []
            for entry in listing:
                target = os.readlink(entry.path) if entry.is_symlink() else None
                found.append([entry.name, entry.inode(), target])
    except OSError:
        return []
    return sorted(found)


def _rustup_state(cwd: Path) -> list[Any]:
    """Everything (but the proxy itself) that decides the toolchain rustup picks in ``cwd``."""
    home = Path(os.environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
    return [
        str(home),
        _read_text(home / "settings.toml"),
        _installed(home / "toolchains"),
        _toolchain_file(cwd),
        os.path.realpath(cwd),
        [os.environ.get(name) for name in _RUSTUP_ENV],
    ]


def _key(kind: str, *parts: Any) -> str:
    material = json.dumps([_CACHE_VERSION, kind, *parts], sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()


def _load_entries() -> dict[str, Any]:
    try:
        with open(cache_file(), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _cached(key: str) -> dict[str, Any] | None:
    """The value stored under ``key`` if every file it was learnt from is still the same."""
    if not _cache_on():
        return None
    entry = _load_entries().get(key)
    if not isinstance(entry, dict):
        return None
    stamps, value = entry.get("stamps"), entry.get("value")
    if not isinstance(stamps, list) or not isinstance(value, dict):
        return None
    for item in stamps:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            return None
        if _stamp(item[0]) != item[1]:
            return None
    return value


def _remember(key: str, value: dict[str, Any], learnt: Iterable[str | Path] = ()) -> None:
    """Store ``value`` under ``key`` with the stamps of the files in ``learnt``; the file is
    replaced atomically, and a cache that cannot be written is left alone."""
    if not _cache_on():
        return
    path = cache_file()
    entries = _load_entries()
    entries[key] = {"stamps": [[str(p), _stamp(p)] for p in learnt], "value": value,
                    "time": time.time()}
    if len(entries) > _CACHE_ENTRIES:
        def age(k: str) -> float:
            item = entries[k]
            when = item.get("time") if isinstance(item, dict) else None
            return when if isinstance(when, (int, float)) else 0.0
        entries = {k: entries[k] for k in sorted(entries, key=age)[-_CACHE_ENTRIES:]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".toolchain-facts-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": _CACHE_VERSION, "entries": entries}, handle)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def rustc_info(toolchain: str | None = None, cwd: Path | None = None) -> RustcInfo:
    """Ask ``rustc`` (through rustup's ``+toolchain`` when given) for its version and sysroot.

    The answer is cached (see the module's doc); failures are not."""
    found = shutil.which("rustc")
    if found is None:
        raise ToolError("`rustc` is not on PATH")
    if toolchain and shutil.which("rustup") is None:
        raise ToolError(f"toolchain {toolchain!r} was named, but rustup is not on PATH: "
                        "only rustup picks a toolchain by name")
    where = Path(cwd) if cwd is not None else Path.cwd()
    key = _key("rustc", toolchain, _binary_identity(found), _rustup_state(where))
    cached = _cached(key)
    if cached is not None:
        try:
            return RustcInfo(toolchain=toolchain, release=str(cached["release"]),
                             channel=str(cached["channel"]),
                             llvm_version=str(cached["llvm_version"]),
                             host=str(cached["host"]), sysroot=Path(cached["sysroot"]))
        except (KeyError, TypeError):
            pass
    info = _ask_rustc(toolchain, cwd)
    sysroot = info.sysroot
    learnt: list[Path] = [sysroot / "bin" / "rustc"]
    learnt += sorted((sysroot / "lib").glob("librustc_driver-*.so"))
    _remember(key, {"release": info.release, "channel": info.channel,
                    "llvm_version": info.llvm_version, "host": info.host,
                    "sysroot": str(sysroot)}, learnt)
    return info


def _ask_rustc(toolchain: str | None, cwd: Path | None) -> RustcInfo:
    plus = [f"+{toolchain}"] if toolchain else []
    proc = _run(["rustc", *plus, "-vV"], cwd)
    if proc.returncode != 0:
        raise ToolError(_first_error_line(proc.stderr or proc.stdout))
    fields = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in proc.stdout.splitlines())
        if _
    )
    release = fields.get("release", "")
    if not release:
        raise ToolError(f"`rustc {' '.join(plus)} -vV` printed no release line")
    channel = "stable"
    for name in ("nightly", "beta", "dev"):
        if name in release:
            channel = name
    sysroot_proc = _run(["rustc", *plus, "--print", "sysroot"], cwd)
    if sysroot_proc.returncode != 0:
        raise ToolError(_first_error_line(sysroot_proc.stderr))
    return RustcInfo(
        toolchain=toolchain,
        release=release,
        channel=channel,
        llvm_version=fields.get("LLVM version", ""),
        host=fields.get("host", ""),
        sysroot=Path(sysroot_proc.stdout.strip()),
    )


def active_toolchain(cwd: Path) -> ActiveToolchain | None:
    """The toolchain rustup picks in ``cwd`` (``rust-toolchain.toml``, override or default).

    ``None`` when rustup is not installed (cargo is then whatever is on PATH).
    """
    rustup = shutil.which("rustup")
    if rustup is None:
        return None
    key = _key("active-toolchain", _binary_identity(rustup), _rustup_state(cwd))
    cached = _cached(key)
    if cached is not None:
        try:
            return ActiveToolchain(name=str(cached["name"]), reason=str(cached["reason"]))
        except (KeyError, TypeError):
            pass
    active = _ask_active_toolchain(cwd)
    _remember(key, {"name": active.name, "reason": active.reason})
    return active


def _ask_active_toolchain(cwd: Path) -> ActiveToolchain:
    proc = _run(["rustup", "show", "active-toolchain"], cwd)
    if proc.returncode != 0:
        raise ToolError(_first_error_line(proc.stderr))
    line = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    match = re.match(r"(\S+)\s*(?:\((.*)\))?", line)
    if not match:
        raise ToolError(f"`rustup show active-toolchain` printed {line!r}")
    return ActiveToolchain(name=match.group(1), reason=match.group(2) or "")


def installed_toolchains() -> tuple[str, ...]:
    """Names from ``rustup toolchain list`` (empty without rustup)."""
    if shutil.which("rustup") is None:
        return ()
    proc = _run(["rustup", "toolchain", "list"])
    names = []
    for line in proc.stdout.splitlines():
        if line.strip():
            names.append(line.split()[0])
    return tuple(names)


def short_toolchain_name(name: str, host: str) -> str:
    """``nightly-x86_64-unknown-linux-gnu`` -> ``nightly`` (rustup accepts both)."""
    suffix = f"-{host}"
    return name[: -len(suffix)] if host and name.endswith(suffix) else name


_LIBLLVM = re.compile(r"libLLVM(?:-|\.so\.)(\d+)")
_LLVM_VERSION = re.compile(r"LLVM version (\d+)\.")


_LDD_LLVM = re.compile(r"^\s*(\S*libLLVM\S*)\s+=>\s+(/\S+)", re.MULTILINE)


def _ldd(binary: str) -> str:
    """What ``ldd`` says about ``binary`` (empty without ldd)."""
    if shutil.which("ldd") is None:
        return ""
    try:
        return _run(["ldd", binary]).stdout
    except ToolError:
        return ""


def _linker_llvm_major(linker: str, ldd_output: str | None = None) -> int | None:
    """Ask the LLVM inside bpf-linker (static or shared) for its version.

    ``--llvm-args=--version`` reaches LLVM's own option parser, which prints
    "LLVM version 22.1.8" and exits before any input is read. ``ldd`` is the fallback.
    """
    proc = _run([linker, "--llvm-args=--version", "-o", os.devnull, os.devnull])
    match = _LLVM_VERSION.search(proc.stdout + proc.stderr)
    if match:
        return int(match.group(1))
    shared = _LIBLLVM.search(_ldd(linker) if ldd_output is None else ldd_output)
    return int(shared.group(1)) if shared else None


def linker_search_path() -> str:
    """The PATH rustc will search for ``bpf-linker``: rustup's proxies put ``$CARGO_HOME/bin``
    in front of PATH for everything they run."""
    path = os.environ.get("PATH", "")
    if shutil.which("rustup") is not None:
        cargo_home = os.environ.get("CARGO_HOME") or str(Path.home() / ".cargo")
        path = f"{cargo_home}/bin{os.pathsep}{path}"
    return path


def bpf_linker_info(path_env: str | None = None) -> LinkerInfo | None:
    """The ``bpf-linker`` rustc will run, with the LLVM major version it is linked against.

    The answer is cached, keyed by the binary PATH finds and checked against the libLLVM it
    loads (what ``ldd`` names; a wrapper script is known by its own file only); none on PATH
    is never cached."""
    search = path_env if path_env is not None else linker_search_path()
    found = shutil.which("bpf-linker", path=search)
    if found is None:
        return None
    key = _key("bpf-linker", _binary_identity(found),
               [os.environ.get(name) for name in ("LD_LIBRARY_PATH", "LD_PRELOAD")])
    cached = _cached(key)
    if cached is not None:
        major = cached.get("llvm_major")
        if isinstance(cached.get("version"), str) and (major is None or isinstance(major, int)):
            return LinkerInfo(path=Path(found), version=cached["version"], llvm_major=major)
    proc = _run([found, "--version"])
    version = proc.stdout.strip().split()[-1] if proc.stdout.strip() else "unknown"
    libraries = _ldd(found) if _cache_on() else None
    llvm_major = _linker_llvm_major(found, libraries)
    learnt = [m.group(2) for m in _LDD_LLVM.finditer(libraries or "")]
    _remember(key, {"version": version, "llvm_major": llvm_major}, learnt)
    return LinkerInfo(path=Path(found), version=version, llvm_major=llvm_major)
