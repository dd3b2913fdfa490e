"""Known Rust-to-eBPF toolchain failures, recognised in cargo's output, each with its fix.

A rule is a regular expression over cargo's stderr plus a function that writes the answer from
the build's context (target, toolchain, LLVM versions). The table is data: add a rule, add a test
that provokes the real error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional


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
    """The toolchain in prose: ``toolchain nightly``, or the one rustup picks."""
    return f"toolchain {ctx.toolchain}" if ctx.toolchain else "the crate's toolchain"


def _tc_flag(ctx: BuildContext) -> str:
    """`` --toolchain NAME`` for rustup commands; empty: rustup picks the crate's toolchain
    when run in the crate's directory."""
    return f" --toolchain {ctx.toolchain}" if ctx.toolchain else ""


def _in_crate(ctx: BuildContext) -> str:
    return "" if ctx.toolchain else " (run it in the eBPF crate's directory)"


def _llvm_feature(ctx: BuildContext) -> str:
    major = ctx.rustc_llvm.split(".", 1)[0] if ctx.rustc_llvm else ""
    if major.isdigit():
        return (
            f"cargo install bpf-linker --force --no-default-features --features llvm-{major} "
            f"(with LLVM_SYS_{major}1_PREFIX=/usr/lib/llvm-{major}; "
            f"Debian: apt-get install llvm-{major}-dev)"
        )
    return "cargo install bpf-linker --force (built against the LLVM of your rustc: rustc -vV)"


Match = Optional["re.Match[str]"]


def _toolchain_missing(ctx: BuildContext, m: Match) -> tuple[str, str]:
    name = m.group(1) if m else ctx.toolchain or "nightly"
    return (
        f"rust toolchain {name!r} is not installed",
        f"rustup toolchain install {name} --component rust-src, or pass "
        f"--ebpf-toolchain=NAME with an installed one (rustup toolchain list)",
    )


def _target_missing(ctx: BuildContext, m: Match) -> tuple[str, str]:
    return (
        f"no `core` for {ctx.target} in the sysroot of {_tc(ctx)}: the BPF targets "
        "are Tier 3, rustup has no prebuilt std for them (`rustup target add` answers "
        "\"component 'rust-std' ... is unavailable\")",
        f"build core from source: --ebpf-build-std=core on a nightly with rust-src "
        f"(rustup component add rust-src{_tc_flag(ctx)}{_in_crate(ctx)}), or use a toolchain whose "
        "sysroot ships core for BPF (Debian: apt-get install rustc-web libstd-rust-web-dev-bpf; "
        "rustup toolchain link debian /usr)",
    )


def _rust_std_unavailable(ctx: BuildContext, m: Match) -> tuple[str, str]:
    target = (m.group(1) or m.group(2)) if m else ctx.target
    return (
        f"rustup cannot install std for {target}: BPF targets are Tier 3, "
        "no prebuilt "
        "std is distributed",
        "remove the BPF target from rust-toolchain.toml `targets`, and build core from "
        "source instead: --ebpf-build-std=core with `rustup component add rust-src` on a nightly",
    )


def _toolchain_without_rustup(ctx: BuildContext, m: Match) -> tuple[str, str]:
    name = m.group(1) if m else ctx.toolchain
    return (
        f"toolchain {name!r} is named (--ebpf-toolchain, PYTEST_EBPF_TOOLCHAIN or "
        "ebpf_toolchain), but rustup, which picks toolchains by name, is not on PATH",
        "drop the setting to build with the cargo and rustc on PATH, or install rustup and "
        f"the toolchain (rustup toolchain install {name} --component rust-src)",
    )


def _z_on_stable(ctx: BuildContext, m: Match) -> tuple[str, str]:
    channel = (m.group(1) or "stable") if m and m.group(1) != "nightly" else "stable"
    return (
        f"`-Z` flags (build-std) need a nightly toolchain, but {_tc(ctx)} is {channel}",
        "use a nightly toolchain with rust-src (--ebpf-toolchain=nightly), or a toolchain "
        "with prebuilt core for BPF so no build-std is needed (--ebpf-build-std=none), or "
        "set RUSTC_BOOTSTRAP=1 to allow -Z on this toolchain",
    )


def _rust_src_missing(ctx: BuildContext, m: Match) -> tuple[str, str]:
    return (
        f"-Z build-std needs the library sources (component rust-src), missing from "
        f"{_tc(ctx)}",
        f"rustup component add rust-src{_tc_flag(ctx)}{_in_crate(ctx)}, or a toolchain "
        "with prebuilt core for BPF and --ebpf-build-std=none",
    )


def _linker_missing(ctx: BuildContext, m: Match) -> tuple[str, str]:
    return (
        "bpf-linker is not on PATH (rustc links BPF targets with it)",
        _llvm_feature(ctx) + "; then make sure ~/.cargo/bin is on PATH",
    )


def _llvm_mismatch(ctx: BuildContext, m: Match) -> tuple[str, str]:
    linker = f"LLVM {ctx.linker_llvm_major}" if ctx.linker_llvm_major else "another LLVM"
    rustc = f"LLVM {ctx.rustc_llvm}" if ctx.rustc_llvm else "its own LLVM"
    return (
        f"bpf-linker ({linker}) cannot read the bitcode rustc wrote ({rustc}): their LLVM "
        "versions must match (bpf-linker's LLVM must not be older than rustc's)",
        _llvm_feature(ctx),
    )


def _std_for_bpf(ctx: BuildContext, m: Match) -> tuple[str, str]:
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


def _cargo_missing(ctx: BuildContext, m: Match) -> tuple[str, str]:
    return (
        "cargo is not on PATH",
        "install Rust (rustup, or Debian: apt-get install cargo-web rustc-web) and put "
        "~/.cargo/bin on PATH",
    )


def _rustc_too_old(ctx: BuildContext, m: Match) -> tuple[str, str]:
    rustc, package, version, needs = (m.groups() if m else ("?", "a dependency", "?", "?"))
    return (
        f"dependency {package} {version} needs rustc {needs}, but the toolchain is rustc "
        f"{rustc}: cargo's resolver picked the newest {package} that matches Cargo.toml, "
        "whatever rustc it needs",
        f"pin a release that supports rustc {rustc}: `cargo update {package}@{version} "
        f"--precise <older version>` (or `{package} = \"=<older version>\"` in Cargo.toml; "
        "`resolver = \"3\"` picks rustc-compatible versions by itself), or use rustc "
        f"{needs} or newer",
    )


def _feature_on_stable(ctx: BuildContext, m: Match) -> tuple[str, str]:
    crate = m.group(1) if m and m.group(1) else ""
    ident = crate.replace("-", "_")
    who = f"{crate} uses" if crate else "a crate uses"
    env = (f"RUSTC_BOOTSTRAP = \"{ident}\" in the [env] table of the eBPF crate's "
           f".cargo/config.toml (that crate only; not \"1\": aya-build then adds "
           "-Z build-std)") if crate else "a nightly toolchain"
    return (
        f"{who} `#![feature]` (nightly-only), and {_tc(ctx)} is a stable release",
        f"use a nightly toolchain (--ebpf-toolchain=nightly), or allow it on this one: {env}",
    )


def _lto_in_rustflags(ctx: BuildContext, m: Match) -> tuple[str, str]:
    return (
        "`-C lto` is in the rustflags, but cargo compiles with `-C embed-bitcode=no` wherever "
        "the cargo profile has no LTO (the two cannot be combined)",
        "turn LTO on in the profile: `lto = true` under [profile.release] of the workspace's "
        "Cargo.toml (the crate's own when it is not in a workspace); `-C lto=yes` in rustflags "
        "is then redundant",
    )


Rule = Callable[[BuildContext, Match], "tuple[str, str]"]

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
                   r"but this is the `(\w+)` channel"
                   r"|the option `Z` is only accepted on the (nightly) compiler"),
        _z_on_stable,
    ),
    (
        "toolchain-without-rustup",
        re.compile(r"toolchain '([^']+)' was named, but rustup is not on PATH"),
        _toolchain_without_rustup,
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
        "rustc-too-old-for-dependency",
        re.compile(r"rustc (\S+) is not supported by the following package:\s*\n\s*"
                   r"([\w-]+)@(\S+) requires rustc (\S+)"),
        _rustc_too_old,
    ),
    (
        "feature-on-stable",
        re.compile(r"`#!\[feature\]` may not be used on the \w+ release channel"
                   r"(?:[^\n]*\n\s*-->\s*[^\n]*?/registry/src/[^/\n]+/([A-Za-z0-9_-]+?)-\d)?"),
        _feature_on_stable,
    ),
    (
        "lto-in-rustflags",
        re.compile(r"options `-C embed-bitcode=no` and `-C lto` are incompatible"),
        _lto_in_rustflags,
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


def explain(key: str, ctx: BuildContext) -> Diagnosis:
    """The diagnosis of rule ``key`` without a tool output to match (the doctor finds the
    same problems by looking, and gives the same fix)."""
    for rule_key, _, rule in RULES:
        if rule_key == key:
            problem, fix = rule(ctx, None)
            return Diagnosis(key, problem, fix)
    raise KeyError(key)


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
