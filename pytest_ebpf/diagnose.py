"""Known Rust-to-eBPF toolchain failures, recognised in cargo's output, each with its fix.

A rule is a regular expression over cargo's stderr plus a function that writes the answer from
the build's context (target, toolchain, LLVM versions). The table is data: add a rule, add a test
that provokes the real error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class BuildContext:
    """What the diagnoses may mention: the build's target, toolchain and LLVM versions."""

    target: str = "bpfel-unknown-none"
    toolchain: str = ""
    """The toolchain as the user would type it after ``+`` (empty: rustup's pick)."""
    rustc_llvm: str = ""
    linker_llvm_major: int | None = None
    build_std: tuple[str, ...] = ()
    root_config: str = ""
    """A workspace-root ``.cargo/config.toml`` that sets a BPF target, if any."""


@dataclass(frozen=True)
class Diagnosis:
    """One recognised problem: what is wrong, and the exact fix."""

    key: str
    problem: str
    fix: str
    evidence: str = ""
    """The line of the tool output that matched."""

    def render(self) -> str:
        lines = [f"[{self.key}] {self.problem}", f"    fix: {self.fix}"]
        if self.evidence:
            lines.insert(1, f"    seen: {self.evidence}")
        return "\n".join(lines)


def _tc(ctx: BuildContext) -> str:
    return ctx.toolchain or "<toolchain>"


def _plus(ctx: BuildContext) -> str:
    return f" +{ctx.toolchain}" if ctx.toolchain else ""


def _llvm_feature(ctx: BuildContext) -> str:
    major = ctx.rustc_llvm.split(".", 1)[0] if ctx.rustc_llvm else ""
    if major.isdigit():
        return (
            f"cargo install bpf-linker --force --no-default-features --features llvm-{major} "
            f"(with LLVM_SYS_{major}1_PREFIX=/usr/lib/llvm-{major}; "
            f"Debian: apt-get install llvm-{major}-dev)"
        )
    return "cargo install bpf-linker --force (built against the LLVM of your rustc: rustc -vV)"


def _toolchain_missing(ctx: BuildContext, m: re.Match[str]) -> tuple[str, str]:
    name = m.group(1)
    return (
        f"rust toolchain {name!r} is not installed",
        f"rustup toolchain install {name} --component rust-src, or pass "
        f"--ebpf-toolchain=NAME with an installed one (rustup toolchain list)",
    )


def _target_missing(ctx: BuildContext, m: re.Match[str]) -> tuple[str, str]:
    return (
        f"no `core` for {ctx.target} in the sysroot of toolchain {_tc(ctx)}: the BPF targets "
        "are Tier 3, rustup has no prebuilt std for them (`rustup target add` answers "
        "\"component 'rust-std' ... is unavailable\")",
        f"build core from source: --ebpf-build-std=core on a nightly with rust-src "
        f"(rustup component add rust-src --toolchain {_tc(ctx)}), or use a toolchain whose "
        "sysroot ships core for BPF (Debian: apt-get install rustc-web libstd-rust-web-dev-bpf; "
        "rustup toolchain link debian /usr)",
    )


def _rust_std_unavailable(ctx: BuildContext, m: re.Match[str]) -> tuple[str, str]:
    return (
        f"rustup cannot install std for {m.group(1) or m.group(2)}: BPF targets are Tier 3, "
        "no prebuilt "
        "std is distributed",
        "remove the BPF target from rust-toolchain.toml `targets`, and build core from "
        "source instead: --ebpf-build-std=core with `rustup component add rust-src` on a nightly",
    )


def _z_on_stable(ctx: BuildContext, m: re.Match[str]) -> tuple[str, str]:
    return (
        f"`-Z` flags (build-std) need a nightly cargo, but toolchain {_tc(ctx)} is "
        f"{m.group(1)}",
        "use a nightly toolchain with rust-src (--ebpf-toolchain=nightly), or a toolchain "
        "with prebuilt core for BPF so no build-std is needed (--ebpf-build-std=none), or "
        "set RUSTC_BOOTSTRAP=1 to allow -Z on this toolchain",
    )


def _rust_src_missing(ctx: BuildContext, m: re.Match[str]) -> tuple[str, str]:
    return (
        f"-Z build-std needs the library sources (component rust-src), missing from "
        f"toolchain {_tc(ctx)}",
        f"rustup component add rust-src --toolchain {_tc(ctx)}",
    )


def _linker_missing(ctx: BuildContext, m: re.Match[str]) -> tuple[str, str]:
    return (
        "bpf-linker is not on PATH (rustc links BPF targets with it)",
        _llvm_feature(ctx) + "; then make sure ~/.cargo/bin is on PATH",
    )


def _llvm_mismatch(ctx: BuildContext, m: re.Match[str]) -> tuple[str, str]:
    linker = f"LLVM {ctx.linker_llvm_major}" if ctx.linker_llvm_major else "another LLVM"
    rustc = f"LLVM {ctx.rustc_llvm}" if ctx.rustc_llvm else "its own LLVM"
    return (
        f"bpf-linker ({linker}) cannot read the bitcode rustc wrote ({rustc}): their LLVM "
        "versions must match (bpf-linker's LLVM must not be older than rustc's)",
        _llvm_feature(ctx),
    )


def _std_for_bpf(ctx: BuildContext, m: re.Match[str] | None) -> tuple[str, str]:
    if not ctx.root_config:
        return (
            f"the eBPF crate or one of its dependencies needs `std`, which does not exist "
            f"for {ctx.target}",
            "put #![no_std] (and #![no_main]) at the top of the eBPF crate, and use its "
            "dependencies with default-features = false",
        )
    return (
        f"a crate that needs `std` is being built for {ctx.target}: BPF settings in "
        f"{ctx.root_config} apply to every crate of the workspace, the user-space ones too",
        "move `[build] target` and the BPF rustflags into the eBPF crate's own "
        ".cargo/config.toml (e.g. lock-ebpf/.cargo/config.toml) and delete them from the "
        "workspace root",
    )


def _cargo_missing(ctx: BuildContext, m: re.Match[str]) -> tuple[str, str]:
    return (
        "cargo is not on PATH",
        "install Rust (rustup, or Debian: apt-get install cargo-web rustc-web) and put "
        "~/.cargo/bin on PATH",
    )


Rule = Callable[[BuildContext, "re.Match[str]"], "tuple[str, str]"]

#: (key, pattern over the tool output, answer). Order matters: the first rules are the most
#: specific; several rules may match one output.
RULES: tuple[tuple[str, re.Pattern[str], Rule], ...] = (
    (
        "toolchain-not-installed",
        re.compile(r"(?:override )?toolchain '([^']+)' is not installed"),
        _toolchain_missing,
    ),
    (
        "rust-std-unavailable",
        re.compile(r"(?:component 'rust-std' for target '([^']+)' is unavailable"
                   r"|has no prebuilt artifacts available for target '([^']+)')"),
        _rust_std_unavailable,
    ),
    (
        "z-flag-on-stable",
        re.compile(r"the `-Z` flag is only accepted on the nightly channel of Cargo, "
                   r"but this is the `(\w+)` channel"),
        _z_on_stable,
    ),
    (
        "rust-src-missing",
        re.compile(r"(?:rustlib/src/rust/library/Cargo\.lock\"? does not exist"
                   r"|rustup component add rust-src)"),
        _rust_src_missing,
    ),
    (
        "linker-not-found",
        # rustc's own message, or the aya-template build.rs: which("bpf-linker").unwrap()
        re.compile(r"linker `bpf-linker` not found"
                   r"|panicked at [^\n]*build\.rs[^\n]*\n[^\n]*CannotFindBinaryPath"),
        _linker_missing,
    ),
    (
        "llvm-mismatch",
        re.compile(r"(Invalid record|Unknown attribute kind[^\n]*|"
                   r"Invalid bitcode[^\n]*|Invalid value \(Producer: 'LLVM[^\n]*)"),
        _llvm_mismatch,
    ),
    (
        "std-built-for-bpf",
        re.compile(r"can't find crate for `std`"),
        _std_for_bpf,
    ),
    (
        "no-core-for-target",
        re.compile(r"can't find crate for `core`"),
        _target_missing,
    ),
    (
        "cargo-not-found",
        re.compile(r"`cargo` is not on PATH"),
        _cargo_missing,
    ),
)


def root_config_diagnosis(ctx: BuildContext) -> Diagnosis:
    """The workspace-root BPF config problem, found by reading the config (before any build)."""
    problem, fix = _std_for_bpf(ctx, None)
    return Diagnosis("std-built-for-bpf", problem, fix,
                     evidence=f"{ctx.root_config}: [build] target = \"{ctx.target}\"")


def diagnose(output: str, ctx: BuildContext) -> tuple[Diagnosis, ...]:
    """Every known problem in ``output`` (cargo's stderr), most specific first, each once."""
    found: list[Diagnosis] = []
    for key, pattern, rule in RULES:
        match = pattern.search(output)
        if match is None:
            continue
        problem, fix = rule(ctx, match)
        line_start = output.rfind("\n", 0, match.start()) + 1
        line_end = output.find("\n", match.end())
        evidence = output[line_start : line_end if line_end != -1 else len(output)].strip()
        found.append(Diagnosis(key=key, problem=problem, fix=fix, evidence=evidence[:200]))
    keys = {d.key for d in found}
    if "std-built-for-bpf" in keys and "no-core-for-target" in keys:
        found = [d for d in found if d.key != "no-core-for-target"]
    if "z-flag-on-stable" in keys:
        found = [d for d in found if d.key != "rust-src-missing"]
    return tuple(found)
