"""The plugin's settings: declared once, resolved option > environment > ini > project files.

Each setting remembers where its value came from, so the report header can say which won
(like pytest-django's "settings: ... (from option)").
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, cast

import pytest

from pytest_ebpf.analysis.baseline import Threshold, parse_thresholds
from pytest_ebpf.analysis.budgets import (
    BudgetError,
    Budgets,
    budgets_from_metadata,
    parse_budget_text,
)
from pytest_ebpf.analysis.profiles import (
    KernelProfile,
    ProfileError,
    choose_kernels,
)
from pytest_ebpf.analysis.rules import rule_ids
from pytest_ebpf.build.cargo import BPF_TARGETS
from pytest_ebpf.build.project import Crate, CrateError, find_crate, load_manifest
from pytest_ebpf.obj.file import DEFAULT_MAX_OBJECT_SIZE, parse_size

GROUP = "ebpf"
Target = Literal["bpfel-unknown-none", "bpfeb-unknown-none"]
SETTINGS_KEY = pytest.StashKey["Settings"]()
"""The session's settings, in ``config.stash`` from ``pytest_configure`` on."""


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
    Option("kernel", "kernel profiles the static rules judge by, comma-separated: host (the "
           "running kernel, detected) and/or 5.10, 5.15, 6.1, 6.6, 6.12, 6.18",
           default="host"),
    Option("stack_frame", "override every kernel profile's frame rounding in the combined "
           "stack depth: 32 (the interpreter's) or 16 (the JIT's since 6.9)",
           choices=("32", "16")),
    Option("checks", "generated checks: one item per program, rule and kernel profile (and "
           "one 'loads' item per program when privileged), with or without test files",
           default="yes", choices=("yes", "no")),
    Option("skip_rules", "comma-separated rules the generated checks leave out (" +
           ", ".join(rule_ids()) + ")", default=""),
    Option("budget", "per-program limits, e.g. stack=384, instructions=4000, "
           "lock.processed_insns=100000 (also [package.metadata.pytest-ebpf] in the eBPF "
           "crate's Cargo.toml; this wins per figure)", default=""),
    Option("report", "write the session's figures and verdicts as JSON to this file"),
    Option("save_baseline", "write the report to this file, to compare later runs with"),
    Option("baseline", "compare with this saved report: a figure grown past its threshold "
           "fails the program's baseline check"),
    Option("baseline_threshold", "how much a figure may grow over the baseline, e.g. "
           "instructions=10%,stack=0,processed_insns=5% (defaults: 10%, 0, 10%)", default=""),
    Option("privileged", "tests that load programs into the kernel: auto (run when root/CAP_BPF "
           "and bpffs allow, else skip with the reason), require (fail instead: CI gates), no",
           default="auto", choices=("auto", "require", "no")),
    Option("max_object_size", "refuse eBPF object files larger than this (bytes, or with a "
           "K/M/G suffix) before reading them", default="256M"),
    Option("map_sizes", "maps sized at load time, as Aya's EbpfLoader::set_max_entries: "
           "NAME=ENTRIES, comma-separated (e.g. EVENTS=4096 for a ring buffer declared with "
           "size 0); the native loader applies them", default=""),
    Option("vm", "run the privileged tests (ebpf_privileged, the generated 'loads' checks) "
           "on each named kernel that has a VM image (6.1, 6.12: Debian's kernels) in a "
           "throwaway qemu VM, as items with the kernel in their id: auto, or no (the named "
           "kernels are then judged by their profiles only)", default="auto",
           choices=("auto", "no")),
    Option("vm_timeout", "seconds one kernel's VM may run (boot and all its tests) before it "
           "is stopped and its unfinished tests fail", default="900"),
    Option("loader", "how programs are loaded: auto (bpftool when libbpf can open the object, "
           "else native), bpftool, native (our bpf() loader, for Aya objects)",
           default="auto", choices=("auto", "bpftool", "native")),
)


@dataclass(frozen=True)
class Resolved:
    value: str | None
    source: str
    """``option``, ``env PYTEST_EBPF_X``, ``ini ebpf_x``, a project file, or ``default``."""
    base: Path | None = None
    """Where a relative path in ``value`` is taken from: the directory pytest was started in
    (option, environment) or the ini file's directory (ini), as pytest treats paths."""
    file: Path | None = None
    """The ini file, for an ini value."""

    def spelled(self, opt: Option) -> str:
        """The setting as the user wrote it, for error messages: ``--ebpf-x=v``,
        ``PYTEST_EBPF_X=v (environment)``, ``ebpf_x = v (pytest.ini)``."""
        if self.source == "option":
            return f"{opt.flag}={self.value}"
        if self.source.startswith("env "):
            return f"{opt.env}={self.value} (environment)"
        if self.source.startswith("ini "):
            where = self.file.name if self.file is not None else "ini file"
            return f"{opt.ini} = {self.value} ({where})"
        return f"{opt.name.replace('_', '-')} {self.value} (from {self.source})"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "eBPF (pytest-ebpf)")
    for opt in OPTIONS:
        extra = f" [env {opt.env}, ini {opt.ini}]"
        default = f" (default: {opt.default})" if opt.default else ""
        group.addoption(opt.flag, dest=f"ebpf_{opt.name}", default=None,
                        metavar=opt.name.upper(),
                        help=(opt.help + default + extra).replace("%", "%%"))
        parser.addini(opt.ini, help=opt.help + default, default=None)
    group.addoption("--ebpf-doctor", action="store_true", default=False,
                    help="check every prerequisite of an eBPF build and exit")


ProjectLookup = Callable[[str], Optional[Resolved]]


def option(name: str) -> Option:
    return next(o for o in OPTIONS if o.name == name)


#: Settings for which an empty value can only be a mistake (``--ebpf-crate=``).
_NOT_EMPTY = ("crate", "object", "toolchain", "target", "profile", "build_std", "stack_frame",
              "privileged", "loader", "max_object_size", "kernel", "checks", "report",
              "save_baseline", "baseline", "vm", "vm_timeout")


def resolve(config: pytest.Config, name: str, project: ProjectLookup | None = None) -> Resolved:
    """Resolve one setting: option > env > ini > project files > default.

    An empty value given on purpose (``--ebpf-crate=``, ``ebpf_crate =``) is a usage error that
    names where it came from; an empty environment variable counts as unset."""
    opt = option(name)
    found = _explicit(config, opt)
    if found is not None:
        if name in _NOT_EMPTY and not (found.value or "").strip():
            raise pytest.UsageError(
                f"{found.spelled(opt)}: empty value; give a value or drop the setting "
                f"({opt.help})"
            )
        return found
    if project is not None:
        from_project = project(name)
        if from_project is not None:
            return from_project
    return Resolved(opt.default, "default")


def _explicit(config: pytest.Config, opt: Option) -> Resolved | None:
    invocation = Path(str(config.invocation_params.dir))
    value = config.getoption(f"ebpf_{opt.name}")
    if value is not None:
        return Resolved(str(value), "option", invocation)
    if os.environ.get(opt.env):
        return Resolved(os.environ[opt.env], f"env {opt.env}", invocation)
    ini = config.getini(opt.ini)
    if ini is not None and (ini != "" or _ini_has(config, opt.ini)):
        inipath = config.inipath
        base = inipath.parent if inipath else Path(str(config.rootpath))
        return Resolved(str(ini), f"ini {opt.ini}", base, inipath)
    return None


def _ini_has(config: pytest.Config, name: str) -> bool:
    """Is ``name`` written in the ini file (even as ``name =``)?"""
    inicfg: Any = getattr(config, "inicfg", {})
    try:
        return name in inicfg
    except TypeError:
        return False


@dataclass(frozen=True)
class Settings:
    """Every setting of a session, resolved and checked once at configure time: typed values
    to read everywhere else, and ``values`` with each one's source for the report header."""

    values: dict[str, Resolved]
    crate: Crate | None
    object_path: Path | None
    toolchain: str | None = None
    """A rustup toolchain name; ``None``: rustup's (or PATH's) choice."""
    target: Target = "bpfel-unknown-none"
    profile: str = "release"
    features: tuple[str, ...] = ()
    build_std: str = "auto"
    """``auto``, ``none`` or a comma list of crates (checked)."""
    kernels: tuple[KernelProfile, ...] = ()
    """The kernel profiles the static rules judge by (first: the report's main one)."""
    checks: bool = True
    skip_rules: tuple[str, ...] = ()
    budgets: Budgets = field(default_factory=Budgets)
    report: Path | None = None
    save_baseline: Path | None = None
    baseline: Path | None = None
    baseline_thresholds: dict[str, Threshold] = field(default_factory=dict)
    privileged: Literal["auto", "require", "no"] = "auto"
    map_sizes: dict[str, int] = field(default_factory=dict)
    loader: Literal["auto", "bpftool", "native"] = "auto"
    max_object_size: int = DEFAULT_MAX_OBJECT_SIZE
    vms: tuple[str, ...] = ()
    """The named kernels whose privileged tests run in VMs (``--ebpf-vm=auto``)."""
    vm_timeout: float = 900.0

    @property
    def load_kernels(self) -> tuple[str, ...]:
        """The kernels the privileged tests run on: the VM kernels and ``host`` when it is
        named; just ``host`` without VMs."""
        if not self.vms:
            return ("host",)
        return tuple(p.name for p in self.kernels if p.name == "host" or p.name in self.vms)

    def get(self, name: str) -> str | None:
        """The raw text of a setting, as the user gave it (or its default)."""
        return self.values[name].value

    @property
    def active(self) -> bool:
        """Is there anything to build or read (a crate or an object)?"""
        return self.crate is not None or self.object_path is not None

    def header_lines(self) -> list[str]:
        lines = []
        for name, res in self.values.items():
            label = name.replace("_", "-")
            if name == "kernel" and self.kernels:
                lines.append(f"  kernel: {res.value} (from {res.source})")
                lines += [f"    {p.label}: {p.source}, {p.frame_round_why}" for p in self.kernels]
                continue
            if name == "vm" and self.kernels:
                lines.append(f"  vm: {res.value} (from {res.source})")
                lines += [f"    {k}: runs in a VM" if k in self.vms else
                          f"    {k}: profile only{_no_vm_why(res.value)}"
                          for k in (p.name for p in self.kernels) if k != "host"]
                continue
            if name == "budget":
                budget_lines = self.budgets.lines()
                if budget_lines:
                    lines.append("  budgets:")
                    lines += [f"    {b}" for b in budget_lines]
                continue
            if res.value:
                lines.append(f"  {label}: {res.value} (from {res.source})")
            elif res.source != "default":
                if name != "toolchain":
                    shown = "none"
                elif res.source.startswith("rustup"):
                    shown = "rustup's choice"
                else:
                    shown = "cargo on PATH"
                lines.append(f"  {label}: {shown} (from {res.source})")
        return lines


def _check_choice(name: str, res: Resolved) -> None:
    opt = option(name)
    if res.value is None and opt.default is None:
        return  # unset, and the setting may be
    if opt.choices and res.value not in opt.choices:
        raise pytest.UsageError(
            f"{res.spelled(opt)}: not a valid value; use one of {', '.join(opt.choices)}"
        )


def _check_build_std(res: Resolved) -> None:
    value = res.value or "auto"
    if value in ("auto", "none"):
        return
    allowed = {"core", "alloc", "compiler_builtins"}
    crates = [c for c in value.split(",") if c]
    if not crates or any(c not in allowed for c in crates):
        raise pytest.UsageError(
            f"{res.spelled(option('build_std'))}: use auto, none, or a comma list of "
            f"{', '.join(sorted(allowed))} (e.g. core)"
        )


def _path(res: Resolved, fallback: Path) -> Path:
    path = Path(res.value or "").expanduser()
    return path if path.is_absolute() else (res.base or fallback) / path


def load_settings(config: pytest.Config) -> Settings:
    """Resolve every option; bad values become one ``pytest.UsageError`` naming the fix.

    Paths given on the command line or in the environment are taken from the directory pytest
    was started in; paths in the ini file from the ini file's directory. Package names are
    looked up below pytest's rootdir."""
    rootdir = Path(str(config.rootpath))
    values: dict[str, Resolved] = {}
    for name in ("crate", "object"):
        values[name] = resolve(config, name)
    crate: Crate | None = None
    object_path: Path | None = None
    if values["object"].value and values["crate"].value:
        raise pytest.UsageError(
            f"{values['object'].spelled(option('object'))} and "
            f"{values['crate'].spelled(option('crate'))} are both set: pick one (the object "
            "is used as it is, the crate is built with cargo)"
        )
    if values["object"].value:
        object_path = _path(values["object"], rootdir)
        if not object_path.is_file():
            raise pytest.UsageError(
                f"{values['object'].spelled(option('object'))}: no such file "
                f"({object_path}); give the path of a built eBPF object"
            )
    elif values["crate"].value:
        spec = values["crate"].value
        base = values["crate"].base or rootdir
        try:
            crate = find_crate(spec, base, search_root=rootdir)
        except CrateError as exc:
            raise pytest.UsageError(f"{values['crate'].spelled(option('crate'))}: {exc}"
                                    ) from exc

    def from_project(name: str) -> Resolved | None:
        if crate is None:
            return None
        if name == "target" and crate.config.target:
            return Resolved(crate.config.target, str(crate.config.target_file))
        if name == "build_std" and crate.config.build_std:
            return Resolved(",".join(crate.config.build_std), str(crate.config.files[0]))
        if name == "toolchain" and crate.toolchain_file is not None:
            if shutil.which("rustup") is None:
                return Resolved(None, f"no rustup, so {crate.toolchain_file.name} is not read")
            return Resolved(None, f"rustup reads {crate.toolchain_file}")
        return None

    for name in ("toolchain", "target", "profile", "features", "build_std", "kernel",
                 "stack_frame", "checks", "skip_rules", "budget", "report", "save_baseline",
                 "baseline", "baseline_threshold", "privileged", "map_sizes", "loader",
                 "max_object_size", "vm", "vm_timeout"):
        values[name] = resolve(config, name, from_project)
    try:
        parse_size(values["max_object_size"].value or "")
    except ValueError as exc:
        raise pytest.UsageError(
            f"{values['max_object_size'].spelled(option('max_object_size'))}: {exc}") from exc
    _check_choice("target", values["target"])
    for name in ("stack_frame", "privileged", "loader", "checks", "vm"):
        _check_choice(name, values[name])
    stack_frame = int(values["stack_frame"].value) if values["stack_frame"].value else None
    kernels = _kernels(values["kernel"], stack_frame)
    skip = _skip_rules(values["skip_rules"])
    budgets = _budgets(crate, values["budget"])
    thresholds = _thresholds(values["baseline_threshold"])
    map_sizes = _map_sizes(values["map_sizes"])
    vm_timeout = _seconds(values["vm_timeout"])
    _check_build_std(values["build_std"])
    if crate is not None and crate.config.build_std:
        chosen = values["build_std"]
        wanted = ",".join(crate.config.build_std)
        if chosen.value == "none" or (chosen.value not in ("auto", wanted)):
            raise pytest.UsageError(
                f"{chosen.spelled(option('build_std'))} conflicts with "
                f"{crate.config.files[0]}, whose [unstable] build-std = {wanted} cargo applies "
                "whatever the plugin asks; change or remove it there, or drop the setting"
            )
    raw = {name: res.value for name, res in values.items()}
    return Settings(
        values=values,
        crate=crate,
        object_path=object_path,
        toolchain=raw["toolchain"] or None,
        target=cast(Target, raw["target"] or "bpfel-unknown-none"),
        profile=raw["profile"] or "release",
        features=tuple(f for f in (raw["features"] or "").split(",") if f),
        build_std=raw["build_std"] or "auto",
        kernels=kernels,
        checks=raw["checks"] != "no",
        skip_rules=skip,
        budgets=budgets,
        report=_path(values["report"], rootdir) if raw["report"] else None,
        save_baseline=(_path(values["save_baseline"], rootdir) if raw["save_baseline"]
                       else None),
        baseline=_path(values["baseline"], rootdir) if raw["baseline"] else None,
        baseline_thresholds=thresholds,
        map_sizes=map_sizes,
        privileged=cast(Literal["auto", "require", "no"], raw["privileged"] or "auto"),
        loader=cast(Literal["auto", "bpftool", "native"], raw["loader"] or "auto"),
        max_object_size=parse_size(raw["max_object_size"] or "256M"),
        vms=_vms(kernels, raw["vm"] or "auto"),
        vm_timeout=vm_timeout,
    )


def _vms(kernels: tuple[KernelProfile, ...], mode: str) -> tuple[str, ...]:
    from pytest_ebpf.vm.images import KNOWN

    if mode == "no":
        return ()
    return tuple(p.name for p in kernels if p.name in KNOWN)


def _no_vm_why(mode: str | None) -> str:
    from pytest_ebpf.vm.images import KNOWN

    if mode == "no":
        return ""
    return f" (no VM image for it; VM kernels: {', '.join(KNOWN)})"


def _seconds(res: Resolved) -> float:
    try:
        value = float(res.value or "")
    except ValueError:
        value = 0.0
    if not value > 0:
        raise pytest.UsageError(f"{res.spelled(option('vm_timeout'))}: give a number of "
                                "seconds above 0, e.g. 900")
    return value


def _kernels(res: Resolved, stack_frame: int | None) -> tuple[KernelProfile, ...]:
    """The profiles named; the default (``host``, else the oldest profile) when unset."""
    try:
        return choose_kernels(None if res.source == "default" else res.value,
                              source=f"named by {res.source}", stack_frame=stack_frame)
    except ProfileError as exc:
        raise pytest.UsageError(f"{res.spelled(option('kernel'))}: {exc}") from exc


def _skip_rules(res: Resolved) -> tuple[str, ...]:
    names = tuple(n.strip() for n in (res.value or "").split(",") if n.strip())
    unknown = [n for n in names if n not in rule_ids()]
    if unknown:
        raise pytest.UsageError(f"{res.spelled(option('skip_rules'))}: unknown rule(s) "
                                f"{', '.join(unknown)}; rules are {', '.join(rule_ids())}")
    return names


def _budgets(crate: Crate | None, res: Resolved) -> Budgets:
    """``[package.metadata.pytest-ebpf]`` of the eBPF crate, then the ini/option (wins)."""
    try:
        found = Budgets()
        if crate is not None:
            package = load_manifest(crate.manifest).get("package", {})
            metadata = package.get("metadata", {}) if isinstance(package, dict) else {}
            table = metadata.get("pytest-ebpf") if isinstance(metadata, dict) else None
            if isinstance(table, dict):
                found = budgets_from_metadata(table, str(crate.manifest))
        if res.value:
            found = found.merged(parse_budget_text(res.value, res.spelled(option("budget"))))
        return found
    except (BudgetError, CrateError) as exc:
        raise pytest.UsageError(f"{exc}; fix: write budgets as FIGURE = LIMIT (stack, "
                                "instructions, processed_insns)") from exc


def _map_sizes(res: Resolved) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in (p.strip() for p in (res.value or "").split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) <= 0:
            raise pytest.UsageError(f"{res.spelled(option('map_sizes'))}: {part!r} is not "
                                    "NAME=ENTRIES (a positive number), e.g. EVENTS=4096")
        out[name.strip()] = int(value)
    return out


def _thresholds(res: Resolved) -> dict[str, Threshold]:
    try:
        return parse_thresholds(res.value or "")
    except ValueError as exc:
        raise pytest.UsageError(f"{res.spelled(option('baseline_threshold'))}: {exc}"
                                ) from exc


def unconfigured() -> Settings:
    """The settings of a session that asked only for help: nothing active, every default."""
    return Settings(values={}, crate=None, object_path=None)
