"""The plugin's settings: declared once, resolved option > environment > ini > project files.

Each setting remembers where its value came from, so the report header can say which won
(like pytest-django's "settings: ... (from option)").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

from pytest_ebpf.build import BPF_TARGETS
from pytest_ebpf.cargo_project import Crate, CrateError, find_crate

GROUP = "ebpf"


@dataclass(frozen=True)
class Option:
    """One ``--ebpf-*`` option with its ini twin and environment variable."""

    name: str
    """``crate`` -> ``--ebpf-crate``, ini ``ebpf_crate``, env ``PYTEST_EBPF_CRATE``."""
    help: str
    default: str | None = None
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--ebpf-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "ebpf_" + self.name

    @property
    def env(self) -> str:
        return "PYTEST_EBPF_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("crate", "the eBPF crate to build: a directory or a package name in the workspace"),
    Option("object", "use this prebuilt eBPF object instead of building (no cargo)"),
    Option("toolchain", "rustup toolchain for the eBPF build (default: what "
           "rust-toolchain.toml or rustup picks in the crate)"),
    Option("target", "BPF target triple", default="bpfel-unknown-none", choices=BPF_TARGETS),
    Option("profile", "cargo profile", default="release"),
    Option("features", "comma-separated cargo features of the eBPF crate", default=""),
    Option("build_std", "auto (only when the sysroot has no core for the target), none, or "
           "crates to build from source, e.g. core", default="auto"),
    Option("stack_frame", "bytes each call frame is rounded up to when checking combined "
           "stack depth: 32 (the kernel's interpreter rule) or 16 (JIT kernels)",
           default="32", choices=("32", "16")),
    Option("privileged", "tests that load programs into the kernel: auto (run when root/CAP_BPF "
           "and bpffs allow, else skip with the reason), require (fail instead: CI gates), no",
           default="auto", choices=("auto", "require", "no")),
    Option("loader", "how programs are loaded: auto (bpftool when libbpf can open the object, "
           "else native), bpftool, native (our bpf() loader, for Aya objects)",
           default="auto", choices=("auto", "bpftool", "native")),
)


@dataclass(frozen=True)
class Resolved:
    value: str | None
    source: str
    """``option``, ``env PYTEST_EBPF_X``, ``ini ebpf_x``, a project file, or ``default``."""


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "eBPF (pytest-ebpf)")
    for opt in OPTIONS:
        extra = f" [env {opt.env}, ini {opt.ini}]"
        default = f" (default: {opt.default})" if opt.default else ""
        group.addoption(opt.flag, dest=f"ebpf_{opt.name}", default=None,
                        metavar=opt.name.upper(), help=opt.help + default + extra)
        parser.addini(opt.ini, help=opt.help + default, default=None)
    group.addoption("--ebpf-doctor", action="store_true", default=False,
                    help="check every prerequisite of an eBPF build and exit")


ProjectLookup = Callable[[str], Optional[Resolved]]


def resolve(config: pytest.Config, name: str, project: ProjectLookup | None = None) -> Resolved:
    """Resolve one setting: option > env > ini > project files > default."""
    opt = next(o for o in OPTIONS if o.name == name)
    value = config.getoption(f"ebpf_{name}")
    if value is not None:
        return Resolved(str(value), "option")
    if os.environ.get(opt.env):
        return Resolved(os.environ[opt.env], f"env {opt.env}")
    ini = config.getini(opt.ini)
    if ini:
        return Resolved(str(ini), f"ini {opt.ini}")
    if project is not None:
        found = project(name)
        if found is not None:
            return found
    return Resolved(opt.default, "default")


@dataclass(frozen=True)
class Settings:
    """Every resolved setting of a session, with its source."""

    values: dict[str, Resolved]
    crate: Crate | None
    object_path: Path | None

    def get(self, name: str) -> str | None:
        return self.values[name].value

    @property
    def active(self) -> bool:
        """Is there anything to build or read (a crate or an object)?"""
        return self.crate is not None or self.object_path is not None

    def header_lines(self) -> list[str]:
        lines = []
        for name, res in self.values.items():
            label = name.replace("_", "-")
            if res.value:
                lines.append(f"  {label}: {res.value} (from {res.source})")
            elif res.source != "default":
                lines.append(f"  {label}: rustup's choice (from {res.source})")
        return lines


def _check_choice(name: str, value: str | None) -> None:
    opt = next(o for o in OPTIONS if o.name == name)
    if opt.choices and value not in opt.choices:
        raise pytest.UsageError(
            f"{opt.flag}={value}: not a valid value; use one of {', '.join(opt.choices)}"
        )


def _check_build_std(value: str) -> None:
    if value in ("auto", "none"):
        return
    allowed = {"core", "alloc", "compiler_builtins"}
    crates = [c for c in value.split(",") if c]
    if not crates or any(c not in allowed for c in crates):
        raise pytest.UsageError(
            f"--ebpf-build-std={value}: use auto, none, or a comma list of "
            f"{', '.join(sorted(allowed))} (e.g. core)"
        )


def load_settings(config: pytest.Config) -> Settings:
    """Resolve every option; bad values become one ``pytest.UsageError`` naming the fix."""
    rootdir = Path(str(config.rootpath))
    values: dict[str, Resolved] = {}
    for name in ("crate", "object"):
        values[name] = resolve(config, name)
    crate: Crate | None = None
    object_path: Path | None = None
    if values["object"].value:
        object_path = Path(values["object"].value)
        if not object_path.is_absolute():
            object_path = rootdir / object_path
        if not object_path.is_file():
            raise pytest.UsageError(
                f"--ebpf-object={values['object'].value}: no such file "
                f"({object_path}); give the path of a built eBPF object"
            )
    elif values["crate"].value:
        try:
            crate = find_crate(values["crate"].value, rootdir)
        except CrateError as exc:
            raise pytest.UsageError(f"--ebpf-crate: {exc}") from exc

    def from_project(name: str) -> Resolved | None:
        if crate is None:
            return None
        if name == "target" and crate.config.target:
            return Resolved(crate.config.target, str(crate.config.target_file))
        if name == "build_std" and crate.config.build_std:
            return Resolved(",".join(crate.config.build_std), str(crate.config.files[0]))
        if name == "toolchain" and crate.toolchain_file is not None:
            return Resolved(None, f"rustup reads {crate.toolchain_file}")
        return None

    for name in ("toolchain", "target", "profile", "features", "build_std", "stack_frame",
                 "privileged", "loader"):
        values[name] = resolve(config, name, from_project)
    _check_choice("target", values["target"].value)
    for name in ("stack_frame", "privileged", "loader"):
        _check_choice(name, values[name].value)
    _check_build_std(values["build_std"].value or "auto")
    if not (values["profile"].value or "").strip():
        raise pytest.UsageError("--ebpf-profile: empty; use release, dev or a custom profile")
    return Settings(values=values, crate=crate, object_path=object_path)
