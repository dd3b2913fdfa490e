"""Which helpers and kfuncs a program may call, and which context fields it may touch, by its
kind and the kernel: the helper tables.

The kernel gives each program type its own set of helpers (``get_func_proto``), narrowed or
widened by the expected attach type and by whether the program may sleep, and the sets grow
from release to release (between 6.12 and 6.18, XDP and tc programs gained the current
task's ids and comm, among others).
A call outside the set is refused before anything else is checked:
``program of this type cannot use helper bpf_redirect_map#51`` (6.10 on; before,
``unknown func bpf_redirect_map#51``). Kfuncs likewise, by the sets each kfunc is registered in
(``register_btf_kfunc_id_set`` per program type, with filters): ``calling kernel function
bpf_task_acquire is not allowed``; and a sleepable kfunc in a program that may not sleep:
``program must be sleepable to call sleepable kfunc bpf_copy_from_user_str``. And the context:
which offsets a kind may load and store, at which sizes (``invalid bpf_context access off=8
size=4`` otherwise; the layouts grow with the releases).

The sets are not read from kernel sources: they are what real kernels answered
(:mod:`pytest_ebpf.kernel.typeprobe`, one JSON file per release in ``helper_tables/``, written
by ``scripts/probe-helpers``: this machine's kernel and Debian's 6.1 and 6.12 in VMs). A profile
is judged by the table of its release, or else by the nearest newer one (a helper a kind may not
call on a newer kernel was not allowed it before: the sets only grew across the probed
releases, except for the helpers of :data:`MACHINE_DEPENDENT`). A profile newer than every table,
a kind a table does not have (fentry where the probing kernel had no trampolines), and the
machine-dependent helpers are not judged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pytest_ebpf.abi import Helper
from pytest_ebpf.analysis.checks import source_line
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.analysis.profiles import KernelProfile, Version
from pytest_ebpf.errors import EbpfError
from pytest_ebpf.obj.core import POISON_HELPER
from pytest_ebpf.obj.helpers import helper_name
from pytest_ebpf.obj.isa import Insn
from pytest_ebpf.obj.model import EbpfObject, Program
from pytest_ebpf.obj.progtypes import BTF_CTX_TYPES

__all__ = ["MACHINE_DEPENDENT", "HelperTable", "call_findings", "context_findings",
           "kfunc_absent", "refusal_line", "table_for", "tables"]

TABLES = Path(__file__).with_name("helper_tables")

MACHINE_DEPENDENT: dict[int, str] = {
    Helper.probe_write_user: "kernel lockdown (integrity) withdraws it",
    Helper.override_return: "only with CONFIG_BPF_KPROBE_OVERRIDE",
}
"""Helpers whose availability depends on the machine (its lockdown state or its config), not on
the release and the program's kind: never judged."""


class HelperTableError(EbpfError):
    """A helper table shipped with the package cannot be read (a broken install)."""


@dataclass(frozen=True)
class HelperTable:
    """What one probed kernel let each kind of program call."""

    release: str
    """``uname -r`` of the kernel probed."""
    arch: str
    """``uname -m`` of the kernel probed (a context's layout is the architecture's)."""
    version: Version
    last_helper: int
    scopes: dict[str, frozenset[int]]
    """:attr:`~pytest_ebpf.obj.progtypes.ProgramKind.helper_scope` -> helper ids allowed."""
    kfunc_names: frozenset[str] = frozenset()
    """The kfuncs the kernel was asked about (and has)."""
    kfuncs: dict[str, frozenset[str]] = field(default_factory=dict)
    """Scope -> the kfuncs of :attr:`kfunc_names` it may call."""
    sleepable_kfuncs: dict[str, frozenset[str]] = field(default_factory=dict)
    """Scope -> the kfuncs it may call only when the program may sleep."""
    ctx_limit: int = 0
    """Context offsets below it were probed."""
    ctx: dict[str, dict[str, frozenset[int]]] = field(default_factory=dict)
    """Scope -> ``r4`` (4-byte loads), ``w8`` (8-byte stores)... -> the offsets the kernel
    lets it access in its context."""

    @property
    def label(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def allows(self, scope: str, helper: int) -> bool | None:
        """Does the kind *scope* may call *helper*? None: this table cannot say."""
        allowed = self.scopes.get(scope)
        if allowed is None or helper > self.last_helper or helper in MACHINE_DEPENDENT:
            return None
        return helper in allowed

    def scopes_allowing(self, helper: int) -> list[str]:
        return [scope for scope, allowed in self.scopes.items() if helper in allowed]

    def allows_kfunc(self, scope: str, name: str) -> bool | None:
        """May the kind *scope* call kfunc *name*? None: this table cannot say."""
        allowed = self.kfuncs.get(scope)
        if allowed is None or name not in self.kfunc_names:
            return None
        return name in allowed

    def kfunc_needs_sleep(self, scope: str, name: str) -> bool:
        """Is *name* refused to *scope* because the program may not sleep?"""
        return name in self.sleepable_kfuncs.get(scope, ())

    def ctx_refuses(self, scope: str, off: int, size: int, write: bool) -> bool | None:
        """Does the kernel refuse a *size*-byte load (store) at *off* in the context of the
        kind *scope* (``invalid bpf_context access``)? None: this table cannot say."""
        valid = self.ctx.get(scope, {}).get(f"{'w' if write else 'r'}{size}")
        if valid is None or not 0 <= off < self.ctx_limit:
            return None
        return off not in valid

    def scopes_allowing_kfunc(self, name: str) -> list[str]:
        return [scope for scope, allowed in self.kfuncs.items()
                if name in allowed and name not in self.sleepable_kfuncs.get(scope, ())]


def _ids(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return frozenset(out)


def _read(path: Path) -> HelperTable:
    try:
        raw = json.loads(path.read_text())
        major, minor = (int(x) for x in path.stem.split("."))
        kf = raw["kfuncs"]
        names = [str(n) for n in kf["names"]]

        def named(ranges: dict[str, str]) -> dict[str, frozenset[str]]:
            return {k: frozenset(names[i] for i in _ids(v)) for k, v in ranges.items()}

        ctx = raw["ctx"]
        return HelperTable(release=str(raw["release"]), arch=str(raw["arch"]),
                           version=(major, minor),
                           last_helper=int(raw["last_helper"]),
                           scopes={k: _ids(v) for k, v in raw["scopes"].items()},
                           kfunc_names=frozenset(names), kfuncs=named(kf["allowed"]),
                           sleepable_kfuncs=named(kf["sleepable"]),
                           ctx_limit=int(ctx["limit"]),
                           ctx={scope: {k: _ids(v) for k, v in access.items()}
                                for scope, access in ctx["scopes"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        why = f"no {exc} field" if isinstance(exc, KeyError) else str(exc)
        raise HelperTableError(f"the helper table {path} cannot be read ({why}); fix: "
                               "reinstall pytest-ebpf") from exc


@cache
def tables() -> tuple[HelperTable, ...]:
    """Every shipped table, oldest first."""
    return tuple(sorted((_read(p) for p in TABLES.glob("*.json")), key=lambda t: t.version))


def table_for(profile: KernelProfile) -> HelperTable | None:
    """The table that judges *profile*: its release's, else the nearest newer, of the profile's
    architecture; None when the profile is newer than every table."""
    for table in tables():
        if table.version >= profile.version and table.arch == profile.arch:
            return table
    return None


def kfunc_absent(profile: KernelProfile, name: str) -> HelperTable | None:
    """The table showing that *profile*'s kernel has no kfunc *name* (its BTF has no such
    function, so loaders refuse the call), or None: it has it, or no table can say. Every table
    was asked about the kfuncs of the newest one."""
    table, every = table_for(profile), tables()
    if table is None or name in table.kfunc_names or name not in every[-1].kfunc_names:
        return None
    return table


def refusal_line(profile: KernelProfile, helper_name: str, helper: int) -> str:
    """The verifier's line on *profile* for a helper the program's type may not call."""
    if profile.has("helper_refusal_wording"):
        return f"program of this type cannot use helper {helper_name}#{helper}"
    return f"unknown func {helper_name}#{helper}"


# --- findings ---------------------------------------------------------------------------------


def _scope_words(scope: str) -> str:
    """``sched_cls:tcx_ingress`` -> ``sched_cls (tcx_ingress)``."""
    ptype, _, rest = scope.partition(":")
    attach, sleep = rest.removesuffix(".s"), rest.endswith(".s")
    words = ", ".join(w for w in (attach, "sleepable" if sleep else "") if w)
    return f"{ptype} ({words})" if words else ptype


def _kinds_that_may(scopes: list[str], table_label: str) -> str:
    others = sorted({_scope_words(s).split(" ")[0] for s in scopes})
    if not others:
        return "no kind of program may call it there"
    more = f" and {len(others) - 6} more" if len(others) > 6 else ""
    return f"kinds that may call it on {table_label}: {', '.join(others[:6])}{more}"


def call_findings(obj: EbpfObject, prog: Program, profile: KernelProfile) -> list[Finding]:
    """Helpers and kfuncs *prog*'s kind may not call on *profile*'s kernel."""
    table = table_for(profile)
    if table is None:
        return []
    scope, last = prog.kind.helper_scope, profile.last_helper
    probed = "" if table.version == profile.version else f" (as on {table.label})"
    out: list[Finding] = []
    seen: set[object] = set()
    for fn in prog.functions:
        for call in fn.calls:
            hid, name = call.helper_id, call.target or ""
            if call.kind == "helper" and hid is not None and hid not in seen:
                if (hid == POISON_HELPER or (last is not None and hid > last)  # features says
                        or table.allows(scope, hid) is not False):
                    continue
                seen.add(hid)
                what, line = f"{helper_name(hid)} (helper {hid})", refusal_line(
                    profile, helper_name(hid), hid)
                why = f"{_scope_words(scope)} programs may not call it"
                fix = (f"do without {helper_name(hid)} in this {prog.kind.label} program, or "
                       f"move the work to a program that may call it "
                       f"({_kinds_that_may(table.scopes_allowing(hid), table.label)})")
            elif call.kind == "kfunc" and name and name not in seen:
                allowed = table.allows_kfunc(scope, name)
                if allowed is False:
                    line = f"calling kernel function {name} is not allowed"
                    why = f"{_scope_words(scope)} programs may not call it"
                    fix = (f"do without {name} in this {prog.kind.label} program, or move the "
                           f"work to a program that may call it "
                           f"({_kinds_that_may(table.scopes_allowing_kfunc(name), table.label)})")
                elif allowed and table.kfunc_needs_sleep(scope, name):
                    line = f"program must be sleepable to call sleepable kfunc {name}"
                    why = "it sleeps, and this program may not"
                    fix = (f"call {name} from a sleepable program (libbpf: SEC(\"fentry.s/...\"), "
                           "\"lsm.s/...\", \"uprobe.s/...\"; Aya: the macro's sleepable flag), "
                           f"or do without it in this {prog.kind.label} program")
                else:
                    continue
                seen.add(name)
                what = f"kfunc {name}"
            else:
                continue
            src = source_line(obj, fn, call.insn)
            at = f", at {src}" if src else ""
            out.append(Finding(
                check=("helper_not_allowed" if call.kind == "helper" else
                       "kfunc_sleepable" if line.startswith("program must") else
                       "kfunc_not_allowed"),
                rule="helper_types", program=prog.name, function=fn.name, insn=call.insn,
                kernel=profile.label, reason=line,
                message=(f"program {prog.name}: {what} called in {fn.name} ({fn.section}){at}: "
                         f"{why} on {profile.label}{probed}; the verifier says \"{line}\""),
                fix=fix))
    return out


def context_findings(obj: EbpfObject, prog: Program, profile: KernelProfile,
                     accesses: Iterable[tuple[Insn, int, int, bool]]) -> list[Finding]:
    """Context loads and stores *profile*'s kernel refuses to *prog*'s kind (outside XDP, which
    memory_safety judges), among *accesses* (instruction, offset, size, store)."""
    table = table_for(profile)
    if table is None or prog.prog_type == "xdp" or prog.prog_type in BTF_CTX_TYPES:
        return []
    scope = prog.kind.helper_scope
    probed = "" if table.version == profile.version else f" (as on {table.label})"
    out: list[Finding] = []
    for insn, off, size, write in accesses:
        if table.ctx_refuses(scope, off, size, write) is not True:
            continue
        line = f"invalid bpf_context access off={off} size={size}"
        verb = "store to" if write else "load from"
        fits = [n for n in (1, 2, 4, 8) if table.ctx_refuses(scope, off, n, write) is False]
        there = (f"at offset {off} it takes {verb.split()[0]}s of "
                 f"{' or '.join(str(n) for n in fits)} bytes" if fits else
                 f"it takes no {verb.split()[0]} at offset {off}")
        src = source_line(obj, prog.entry, insn)
        at = f", at {src}" if src else ""
        out.append(Finding(
            check="ctx_field", rule="context", program=prog.name, function=prog.entry.name,
            insn=insn, kernel=profile.label, reason=line,
            message=(f"program {prog.name}: a {size}-byte {verb} the context at offset {off} "
                     f"in {prog.entry.name} ({prog.entry.section}){at}: {_scope_words(scope)} "
                     f"programs may not make it on {profile.label}{probed}; the verifier says "
                     f"\"{line}\""),
            fix=(f"use the context's fields as the program type has them ({there}; C: the "
                 "fields of its context struct, e.g. struct __sk_buff; Aya: the context's "
                 "accessors); what it may not write, keep in a map")))
    return out
