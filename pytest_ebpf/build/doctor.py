"""``pytest-ebpf doctor``: check every prerequisite of building, inspecting and loading eBPF.

Each check asks the real tool or the real file. The result is a table of OK / warn / problem
rows with the fix; the exit code is 1 when a problem blocks an eBPF build, else 0.
"""

from __future__ import annotations

import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pytest_ebpf.build.diagnose import BuildContext, explain
from pytest_ebpf.build.project import Crate, CrateError, find_crate, root_bpf_config
from pytest_ebpf.build.toolchain import (
    LinkerInfo,
    RustcInfo,
    ToolError,
    active_toolchain,
    bpf_linker_info,
    installed_toolchains,
    rustc_info,
)

OK, WARN, PROBLEM = "ok", "warn", "problem"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    @property
    def blocks_build(self) -> bool:
        return self.status == PROBLEM


def _check_cargo() -> Check:
    cargo = shutil.which("cargo")
    if cargo is None:
        return Check("cargo", PROBLEM, "not on PATH",
                     "install rustup (or Debian cargo-web) and put ~/.cargo/bin on PATH")
    rustup = shutil.which("rustup")
    detail = cargo + ("" if rustup else " (no rustup: toolchains cannot be chosen)")
    return Check("cargo", OK if rustup else WARN, detail,
                 "" if rustup else "install rustup to pick toolchains per crate")


def _check_toolchain(toolchain: str | None, crate: Crate | None
                     ) -> tuple[Check, RustcInfo | None]:
    cwd = crate.directory if crate else Path.cwd()
    try:
        label = toolchain
        if label is None:
            active = active_toolchain(cwd)
            label = active.name if active else "cargo on PATH"
        info = rustc_info(toolchain, cwd)
    except ToolError as exc:
        names = ", ".join(installed_toolchains()) or "none"
        fix = explain("toolchain-not-installed", BuildContext(toolchain=toolchain or "")).fix
        return Check("toolchain", PROBLEM, f"{toolchain or 'default'}: {exc}",
                     f"{fix} (installed: {names})"), None
    detail = f"{label}: rustc {info.release}, LLVM {info.llvm_version or '?'}"
    return Check("toolchain", OK, detail), info


def _ctx(info: RustcInfo | None, target: str, toolchain: str | None,
         linker: LinkerInfo | None) -> BuildContext:
    return BuildContext(target=target, toolchain=toolchain or "",
                        rustc_llvm=info.llvm_version if info else "",
                        linker_llvm_major=linker.llvm_major if linker else None)


def _check_core(info: RustcInfo | None, target: str, build_std: str,
                toolchain: str | None = None) -> Check:
    name = f"core for {target}"
    if info is None:
        return Check(name, PROBLEM, "no working toolchain", "fix the toolchain first")
    ctx = _ctx(info, target, toolchain, bpf_linker_info())
    if info.has_core(target) and build_std in ("auto", "none"):
        return Check(name, OK, f"prebuilt in {info.sysroot}")
    if info.has_rust_src():
        if info.channel == "nightly" or os.environ.get("RUSTC_BOOTSTRAP") == "1":
            return Check(name, OK, "built from rust-src with -Z build-std")
        why = explain("z-flag-on-stable", ctx)
        return Check(name, PROBLEM, f"rust-src present, but {why.problem}", why.fix)
    if build_std not in ("auto", "none"):
        why = explain("rust-src-missing", ctx)
        return Check(name, PROBLEM, why.problem, why.fix)
    why = explain("no-core-for-target", ctx)
    return Check(name, PROBLEM, f"no prebuilt core in {info.sysroot} and no rust-src",
                 why.fix)


def _linker_off_path() -> list[Path]:
    """bpf-linker binaries where cargo installs them but PATH does not reach."""
    homes = [os.environ.get("CARGO_HOME"), str(Path.home() / ".cargo")]
    found = []
    for home in dict.fromkeys(h for h in homes if h):
        candidate = Path(home) / "bin" / "bpf-linker"
        if os.access(candidate, os.X_OK):
            found.append(candidate)
    return found


def _check_linker(info: RustcInfo | None, target: str = "bpfel-unknown-none",
                  toolchain: str | None = None) -> Check:
    linker = bpf_linker_info()
    ctx = _ctx(info, target, toolchain, linker)
    major = info.llvm_major if info else None
    if linker is None:
        why = explain("linker-not-found", ctx)
        off = _linker_off_path()
        if off:
            return Check("bpf-linker", PROBLEM,
                         f"not on PATH, but found {off[0]} (PATH does not include "
                         f"{off[0].parent})",
                         f"export PATH={off[0].parent}:$PATH to use it, or {why.fix}")
        return Check("bpf-linker", PROBLEM, "not on PATH", why.fix)
    llvm = f"LLVM {linker.llvm_major}" if linker.llvm_major else "LLVM unknown (static)"
    detail = f"{linker.path} {linker.version}, {llvm}"
    fix = explain("llvm-mismatch", ctx).fix
    if major and linker.llvm_major and linker.llvm_major < major:
        return Check("bpf-linker", PROBLEM,
                     f"{detail}; rustc uses LLVM {major}: bitcode will not be readable", fix)
    if major and linker.llvm_major and linker.llvm_major != major:
        return Check("bpf-linker", WARN, f"{detail}; rustc uses LLVM {major}", fix)
    return Check("bpf-linker", OK, detail)


def _needs_std(crate_dir: Path) -> bool:
    """Does this crate's root source lack ``#![no_std]`` (so it needs std)?"""
    for rel in ("src/lib.rs", "src/main.rs"):
        src = crate_dir / rel
        if src.is_file():
            try:
                if "#![no_std]" in src.read_text(errors="replace"):
                    return False
            except OSError:
                return False
            return True
    return False


def _check_crate(spec: str | None, rootdir: Path) -> tuple[list[Check], Crate | None]:
    if not spec:
        return [Check("eBPF crate", WARN, "none given", "pass --ebpf-crate=PATH_OR_PACKAGE")], None
    try:
        crate = find_crate(spec, rootdir)
    except CrateError as exc:
        return [Check("eBPF crate", PROBLEM, str(exc), "name an existing crate")], None
    checks = [Check("eBPF crate", OK, f"{crate.name} at {crate.directory}")]
    root = root_bpf_config(crate)
    if root is not None:
        std_members = sorted(
            path.parent.name for path in crate.workspace_root.glob("*/Cargo.toml")
            if path.parent != crate.directory and _needs_std(path.parent)
        )
        who = (f": members that need std ({', '.join(std_members)}) will not build with it"
               if std_members else "")
        checks.append(Check("crate config", WARN,
                            f"{root} sets a BPF target for the whole workspace{who}; "
                            "the eBPF crate itself can build",
                            "move it into the eBPF crate's own .cargo/config.toml"))
    elif not crate.config.target:
        checks.append(Check("crate config", WARN, "no [build] target in .cargo/config.toml",
                            f"add {crate.directory}/.cargo/config.toml with "
                            "target = \"bpfel-unknown-none\""))
    else:
        flags = " ".join(crate.config.rustflags)
        missing = [f for f in ("--btf", "debuginfo=2") if f not in flags]
        if missing:
            checks.append(Check("crate config", WARN,
                                f"rustflags lack {', '.join(missing)}: no BTF in the object",
                                'rustflags = ["-C", "debuginfo=2", "-C", "link-arg=--btf"]'))
        else:
            where = crate.config.target_file
            checks.append(Check("crate config", OK,
                                f"target {crate.config.target}, BTF on ({where})"))
    return checks, crate


def _check_kernel() -> list[Check]:
    checks = [Check("kernel", OK, f"Linux {platform.release()}")]
    vmlinux = Path("/sys/kernel/btf/vmlinux")
    checks.append(Check("kernel BTF", OK if vmlinux.exists() else WARN,
                        str(vmlinux) + ("" if vmlinux.exists() else " missing"),
                        "" if vmlinux.exists()
                        else "use a kernel built with CONFIG_DEBUG_INFO_BTF"))
    bpftool = shutil.which("bpftool")
    checks.append(Check("bpftool", OK if bpftool else WARN, bpftool or "not on PATH",
                        "" if bpftool else "apt-get install bpftool"))
    root = os.geteuid() == 0
    checks.append(Check("privileges", OK if root else WARN,
                        "root" if root else f"uid {os.geteuid()}: privileged tests will skip",
                        "" if root else "run as root or grant CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN"))
    mounted = any(line.split()[2:3] == ["bpf"] for line in _mounts())
    checks.append(Check("bpffs", OK if mounted else WARN,
                        "/sys/fs/bpf mounted" if mounted else "no bpf filesystem mounted",
                        "" if mounted else "mount -t bpf bpf /sys/fs/bpf"))
    return checks


def _mounts() -> list[str]:
    try:
        return Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []


def run_checks(crate_spec: str | None, rootdir: Path, toolchain: str | None = None,
               target: str = "bpfel-unknown-none", build_std: str = "auto") -> list[Check]:
    checks = [_check_cargo()]
    crate_checks, crate = _check_crate(crate_spec, rootdir)
    tc_check, info = _check_toolchain(toolchain, crate)
    checks += [tc_check, _check_core(info, target, build_std, toolchain),
               _check_linker(info, target, toolchain)]
    checks += crate_checks
    checks += _check_kernel()
    return checks


def render(checks: list[Check], out: TextIO) -> None:
    width = max(len(c.name) for c in checks)
    out.write(f"{'check':<{width}}  {'status':<7}  detail\n")
    for c in checks:
        out.write(f"{c.name:<{width}}  {c.status:<7}  {c.detail}\n")
        if c.fix:
            out.write(f"{'':<{width}}  {'':<7}  fix: {c.fix}\n")
    blocking = [c for c in checks if c.blocks_build]
    if blocking:
        out.write(f"{len(blocking)} problem(s) block an eBPF build: "
                  f"{', '.join(c.name for c in blocking)}\n")
    else:
        out.write("nothing blocks an eBPF build\n")
