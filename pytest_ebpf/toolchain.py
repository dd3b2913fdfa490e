"""Facts about the Rust-to-eBPF toolchain: rustup, rustc, its sysroot, and bpf-linker.

Every function here asks the real tools (``rustc -vV``, ``rustup show active-toolchain``,
``bpf-linker --version``, ``ldd``); nothing is guessed from paths alone. The results are
frozen dataclasses that the build, the doctor and the report header share.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


class ToolError(Exception):
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


def rustc_info(toolchain: str | None = None, cwd: Path | None = None) -> RustcInfo:
    """Ask ``rustc`` (through rustup's ``+toolchain`` when given) for its version and sysroot."""
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
    if shutil.which("rustup") is None:
        return None
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


def _linker_llvm_major(linker: str) -> int | None:
    """Ask the LLVM inside bpf-linker (static or shared) for its version.

    ``--llvm-args=--version`` reaches LLVM's own option parser, which prints
    "LLVM version 22.1.8" and exits before any input is read. ``ldd`` is the fallback.
    """
    proc = _run([linker, "--llvm-args=--version", "-o", os.devnull, os.devnull])
    match = _LLVM_VERSION.search(proc.stdout + proc.stderr)
    if match:
        return int(match.group(1))
    if shutil.which("ldd"):
        shared = _LIBLLVM.search(_run(["ldd", linker]).stdout)
        if shared:
            return int(shared.group(1))
    return None


def linker_search_path() -> str:
    """The PATH rustc will search for ``bpf-linker``: rustup's proxies put ``$CARGO_HOME/bin``
    in front of PATH for everything they run."""
    path = os.environ.get("PATH", "")
    if shutil.which("rustup") is not None:
        cargo_home = os.environ.get("CARGO_HOME") or str(Path.home() / ".cargo")
        path = f"{cargo_home}/bin{os.pathsep}{path}"
    return path


def bpf_linker_info(path_env: str | None = None) -> LinkerInfo | None:
    """The ``bpf-linker`` rustc will run, with the LLVM major version it is linked against."""
    search = path_env if path_env is not None else linker_search_path()
    found = shutil.which("bpf-linker", path=search)
    if found is None:
        return None
    proc = _run([found, "--version"])
    version = proc.stdout.strip().split()[-1] if proc.stdout.strip() else "unknown"
    llvm_major = _linker_llvm_major(found)
    return LinkerInfo(path=Path(found), version=version, llvm_major=llvm_major)
