"""Build the eBPF crate with cargo, once, and say what was built or why it failed.

The artifact comes from cargo's JSON messages (``compiler-artifact`` with an ``executable``),
never from guessing paths under ``target/``. A failure keeps cargo's rendered diagnostics and
adds a :class:`~pytest_ebpf.build.diagnose.Diagnosis` for every known toolchain problem in them.
Both outcomes are plain data that travel to xdist workers as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from pytest_ebpf.build.diagnose import BuildContext, Diagnosis, diagnose
from pytest_ebpf.build.project import Crate, root_bpf_config
from pytest_ebpf.build.shipped import ShippedBuild, find_shipped_build
from pytest_ebpf.build.toolchain import (
    RustcInfo,
    ToolError,
    active_toolchain,
    bpf_linker_info,
    rustc_info,
    short_toolchain_name,
)

BPF_TARGETS = ("bpfel-unknown-none", "bpfeb-unknown-none")
_OUTPUT_CAP = 60_000


@dataclass(frozen=True)
class BuildRequest:
    """What to build: the resolved settings of one session."""

    crate: Crate
    toolchain: str | None = None
    """A rustup toolchain name; ``None`` lets rustup pick (rust-toolchain.toml, default)."""
    target: str = "bpfel-unknown-none"
    profile: str = "release"
    features: tuple[str, ...] = ()
    build_std: str = "auto"
    """``auto``, ``none``, or a comma list of crates (``core``, ``core,alloc``)."""
    toolchain_source: str = "option"
    """Where ``toolchain`` came from (``option``, ``env PYTEST_EBPF_TOOLCHAIN``, ...)."""


@dataclass(frozen=True)
class BuildResult:
    """A successful build (or a prebuilt object given with ``--ebpf-object``)."""

    object_path: str
    objects: tuple[str, ...]
    """Every binary artifact of the crate (Aya: one object per ``[[bin]]``)."""
    package: str
    crate_dir: str
    toolchain: str
    toolchain_source: str
    rustc_release: str
    llvm_version: str
    linker: str
    """``bpf-linker 0.13.0 (LLVM 22)`` or empty."""
    target: str
    profile: str
    build_std: tuple[str, ...]
    command: tuple[str, ...]
    duration: float
    """Seconds spent in cargo."""
    prebuilt: bool = False
    warnings: tuple[str, ...] = ()
    """rustc's and cargo's warnings of this build, each as cargo rendered it."""
    rustflags: tuple[str, ...] = ()
    """The flags cargo gave rustc when the plugin chose them (empty: cargo's own config)."""
    rustflags_source: str = ""
    """Why those flags: ``aya-build in lock/build.rs`` (the build that ships)."""
    notes: tuple[str, ...] = ()
    """Settings that did not reach cargo as the user may think, each named."""

    @property
    def path(self) -> Path:
        return Path(self.object_path)


@dataclass(frozen=True)
class BuildFailure:
    """A build that failed, with cargo's diagnostics and the known problems found in them."""

    package: str
    command: tuple[str, ...]
    returncode: int
    output: str
    diagnoses: tuple[Diagnosis, ...] = field(default_factory=tuple)
    summary: str = ""

    @property
    def headline(self) -> str:
        """The failure in one line: the first known problem, else cargo's first error."""
        if self.diagnoses:
            return self.diagnoses[0].problem
        if self.summary:
            return self.summary
        for line in self.output.splitlines():
            if line.startswith("error"):
                return line.strip()
        return "cargo failed"

    def render(self, max_output_lines: int = 40) -> str:
        """Summary first, cargo's decisive lines next, the fixes last."""
        lines = [f"eBPF build of {self.package} failed: {self.headline}"]
        if self.command:
            lines.append(f"command: {' '.join(self.command)} (exit {self.returncode})")
        excerpt = _decisive_lines(self.output, max_output_lines)
        if excerpt:
            tool = self.command[0] if self.command else "the toolchain"
            lines += ["", f"{tool} said:", *(f"  {line}" for line in excerpt)]
        if self.diagnoses:
            lines += ["", "what is wrong and how to fix it:"]
            lines += [d.render() for d in self.diagnoses]
        elif not self.summary:
            lines += ["", "fix: read cargo's errors above; run `pytest-ebpf doctor` to check "
                      "the toolchain"]
        return "\n".join(lines)


Outcome = Union[BuildResult, BuildFailure]
Progress = Callable[[str], None]

#: cargo's own status words, printed right-aligned before a crate or a step.
STATUS_WORDS = ("Compiling", "Checking", "Finished", "Downloaded", "Downloading", "Updating",
                "Locking", "Adding", "Blocking", "Fresh", "Running", "Building")
_GENERATED = re.compile(r"^warning: `[^`]+` \([^)]*\) generated \d+ warnings?")


def _source_label(source: str, name: str) -> str:
    flag = "--ebpf-" + name.replace("_", "-")
    if source == "option":
        return flag
    if source.startswith("env "):
        return f"the environment ({source[4:]})"
    if source.startswith("ini "):
        return f"the ini file ({source[4:]})"
    return source


def status_line(line: str) -> bool:
    """Is this one of cargo's progress lines (``   Compiling aya-ebpf v0.2.1``)?"""
    word = line.strip().split(" ", 1)[0]
    return word in STATUS_WORDS


def build_warnings(stderr: str) -> list[str]:
    """The warnings of a build, each as cargo rendered it (the ``warning: ...`` line and its
    indented body); cargo's "generated N warnings" summaries are left out."""
    found: list[str] = []
    block: list[str] | None = None
    for line in stderr.splitlines():
        if line.startswith("warning"):
            if block:
                found.append("\n".join(block).rstrip())
            block = None if _GENERATED.match(line) else [line]
            continue
        if block is None:
            continue
        if not line.strip() or status_line(line) or line.startswith("error"):
            found.append("\n".join(block).rstrip())
            block = None
        else:
            block.append(line)
    if block:
        found.append("\n".join(block).rstrip())
    return found


def _normalized(flags: tuple[str, ...]) -> tuple[str, ...]:
    """``-C x``/``-Cx`` and ``--cfg x``/``--cfg=x`` spelled one way, to compare flag sets."""
    out: list[str] = []
    pending = ""
    for flag in flags:
        if pending:
            out.append(pending + flag)
            pending = ""
        elif flag in ("-C", "--cfg"):
            pending = "-C" if flag == "-C" else "--cfg="
        else:
            out.append(flag)
    return tuple(sorted(out))


def _shipped_env(crate: Crate, env: dict[str, str]) -> tuple[ShippedBuild | None, list[str]]:
    """Set aya-build's flags when the workspace builds the crate with it; name what they
    override."""
    shipped = find_shipped_build(crate)
    notes: list[str] = []
    if shipped is None:
        return None, notes
    for name in ("CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS"):
        if env.get(name):
            notes.append(f"{name} from the environment is not used: the eBPF crate is built "
                         f"with the flags of {shipped.describe()}, as the shipped build is")
    own = crate.config.rustflags
    if own and _normalized(own) != _normalized(shipped.rustflags):
        notes.append(f"rustflags of {crate.config.files[0]} ({' '.join(own)}) are not used: "
                     f"{shipped.describe()} builds the crate from {shipped.builder}'s "
                     "directory, where that file is not read")
    env["CARGO_ENCODED_RUSTFLAGS"] = shipped.encoded
    env.pop("RUSTFLAGS", None)
    return shipped, notes


def _run_cargo(argv: list[str], cwd: Path, progress: Progress | None,
               env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    """Run cargo, passing its status lines to ``progress`` as they come; returns the exit
    status, stdout's lines (JSON messages) and stderr."""
    stdout_lines: list[str] = []
    with subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env if env is not None else os.environ.copy()
                          ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        reader = threading.Thread(target=lambda: stdout_lines.extend(proc.stdout or ()),
                                  daemon=True)
        reader.start()
        err: list[str] = []
        try:
            for line in proc.stderr:
                err.append(line)
                if progress is not None and status_line(line):
                    progress(line.strip())
            proc.wait()
        except BaseException:
            proc.kill()
            raise
        reader.join()
    return proc.returncode, [ln.rstrip("\n") for ln in stdout_lines], "".join(err)


def _decisive_lines(output: str, limit: int) -> list[str]:
    """Error and warning blocks of cargo's output, without the ``Compiling`` noise."""
    kept: list[str] = []
    keep_block = False
    for line in output.splitlines():
        stripped = line.strip()
        if stripped.startswith(("Compiling ", "Downloaded ", "Downloading ", "Updating ",
                                "Locking ", "Adding ", "Blocking ", "Finished ", "Checking ")):
            keep_block = False
            continue
        if stripped.startswith(("error", "warning: unused")) or "error:" in stripped:
            keep_block = True
        if re.match(r"(\d+: |at /|stack backtrace:|note: Some details are omitted)", stripped):
            continue  # a build script's panic backtrace: noise
        if keep_block and stripped:
            kept.append(line.rstrip())
    if not kept:
        kept = [line.rstrip() for line in output.splitlines() if line.strip()][-limit:]
    if len(kept) > limit:
        kept = [*kept[:limit - 1], f"... ({len(kept) - limit + 1} more lines)"]
    return kept


def outcome_to_json(outcome: Outcome) -> str:
    kind = "result" if isinstance(outcome, BuildResult) else "failure"
    return json.dumps({"kind": kind, "data": asdict(outcome)})


def outcome_from_json(text: str) -> Outcome:
    payload: dict[str, Any] = json.loads(text)
    data = payload["data"]
    for key, value in list(data.items()):
        if isinstance(value, list) and key != "diagnoses":
            data[key] = tuple(value)
    if payload["kind"] == "result":
        return BuildResult(**data)
    data["diagnoses"] = tuple(Diagnosis(**d) for d in data["diagnoses"])
    return BuildFailure(**data)


def prebuilt(path: Path) -> BuildResult:
    """``--ebpf-object``: use an object as it is; no cargo runs."""
    return BuildResult(
        object_path=str(path.resolve()),
        objects=(str(path.resolve()),),
        package=path.name,
        crate_dir="",
        toolchain="",
        toolchain_source="prebuilt object (--ebpf-object)",
        rustc_release="",
        llvm_version="",
        linker="",
        target="",
        profile="",
        build_std=(),
        command=(),
        duration=0.0,
        prebuilt=True,
    )


def _build_std_crates(request: BuildRequest, info: RustcInfo) -> tuple[str, ...]:
    if request.build_std == "none":
        return ()
    if request.build_std != "auto":
        return tuple(c for c in request.build_std.split(",") if c)
    if request.crate.config.build_std:
        return ()  # the crate's own config already asks cargo for it
    return () if info.has_core(request.target) else ("core",)


def build_command(request: BuildRequest, build_std: tuple[str, ...]) -> list[str]:
    """The cargo command line (run in the crate's directory so its config applies)."""
    argv = ["cargo"]
    if request.toolchain:
        argv.append(f"+{request.toolchain}")
    argv += ["build", "--package", request.crate.name, "--bins", "--target", request.target,
             "--message-format=json-render-diagnostics"]
    argv += ["--release"] if request.profile == "release" else ["--profile", request.profile]
    if request.features:
        argv += ["--features", ",".join(request.features)]
    if build_std:
        argv += ["-Z", f"build-std={','.join(build_std)}"]
    return argv


def _context(request: BuildRequest, info: RustcInfo | None, build_std: tuple[str, ...],
             root_config: Path | None, active: str = "") -> BuildContext:
    linker = bpf_linker_info()
    return BuildContext(
        target=request.target,
        toolchain=request.toolchain or (short_toolchain_name(active, info.host)
                                        if info and active else ""),
        rustc_llvm=info.llvm_version if info else "",
        linker_llvm_major=linker.llvm_major if linker else None,
        build_std=build_std,
        root_config=str(root_config) if root_config else "",
    )


def run_build(request: BuildRequest, progress: Progress | None = None) -> Outcome:
    """Run cargo once for the eBPF crate and return what it built, or why it failed.

    ``progress`` is called with each of cargo's status lines (``Compiling x v1``) while it
    runs, so the user can watch a cold build."""
    crate = request.crate
    if shutil.which("cargo") is None:
        text = "`cargo` is not on PATH"
        return BuildFailure(crate.name, (), 127, text,
                            diagnose(text, BuildContext(target=request.target)))
    try:
        info = rustc_info(request.toolchain, crate.directory)
    except ToolError as exc:
        text = str(exc)
        ctx = BuildContext(target=request.target, toolchain=request.toolchain or "")
        found = diagnose(text, ctx)
        return BuildFailure(crate.name, ("rustc", "-vV"), 1, text, found,
                            summary=f"rustc could not be asked for its version: {text}")
    active = None
    if request.toolchain is None:
        active = active_toolchain(crate.directory)
        toolchain_name = active.name if active else "cargo on PATH"
        toolchain_source = (f"rustup: {active.reason}" if active
                            else "the PATH (no rustup: cargo and rustc on PATH)")
    else:
        toolchain_name = request.toolchain
        toolchain_source = _source_label(request.toolchain_source, "toolchain")
    build_std = _build_std_crates(request, info)
    argv = build_command(request, build_std)
    started = time.monotonic()
    env = os.environ.copy()
    shipped, notes = _shipped_env(crate, env)
    returncode, stdout_lines, stderr_text = _run_cargo(argv, crate.directory, progress, env)
    duration = time.monotonic() - started
    artifacts: list[str] = []
    for line in stdout_lines:
        if not line.startswith("{"):
            continue
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            continue
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            artifacts.append(str(message["executable"]))
    stderr = stderr_text[-_OUTPUT_CAP:]
    if returncode != 0:
        active_name = "" if request.toolchain or active is None else active.name
        ctx = _context(request, info, build_std, root_bpf_config(crate), active_name)
        return BuildFailure(crate.name, tuple(argv), returncode, stderr,
                            diagnose(stderr, ctx))
    if not artifacts:
        return BuildFailure(
            crate.name, tuple(argv), 0, stderr,
            summary=f"cargo built no binary for {crate.name}: an Aya eBPF crate needs a "
                    "[[bin]] target (src/main.rs with #![no_main]); add one to its Cargo.toml",
        )
    primary = next((a for a in artifacts if Path(a).name == crate.name), artifacts[0])
    linker = bpf_linker_info()
    linker_text = ""
    if linker is not None:
        llvm = f" (LLVM {linker.llvm_major})" if linker.llvm_major else ""
        linker_text = f"bpf-linker {linker.version}{llvm}"
    return BuildResult(
        object_path=primary,
        objects=tuple(artifacts),
        package=crate.name,
        crate_dir=str(crate.directory),
        toolchain=toolchain_name,
        toolchain_source=toolchain_source,
        rustc_release=info.release,
        llvm_version=info.llvm_version,
        linker=linker_text,
        target=request.target,
        profile=request.profile,
        build_std=build_std,
        command=tuple(argv),
        duration=round(duration, 3),
        warnings=tuple(build_warnings(stderr_text)),
        rustflags=shipped.rustflags if shipped else (),
        rustflags_source=shipped.describe() if shipped else "",
        notes=tuple(notes),
    )
