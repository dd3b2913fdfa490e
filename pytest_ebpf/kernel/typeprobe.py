"""Which helpers each kind of program may call, asked of the running kernel (needs root).

The kernel decides it per program: ``env->ops->get_func_proto(func_id, prog)`` returns no
prototype for a helper the program's type (and expected attach type, and sleepability) may not
call, and the verifier refuses the call before it looks at any argument. So one two-instruction
program per helper and per kind of program (``call N; r0 = 0; exit``) tells the table apart
exactly: a refusal for the type says ``program of this type cannot use helper NAME#N`` (6.10 on;
``unknown func NAME#N`` before), a helper the kernel does not have says ``invalid func``, and any
other outcome (a load, or a complaint about the arguments) means the type may call it. The probe
does what ``bpftool feature probe`` does, for the attach types and sleepable kinds too, and for
tracing and LSM programs (which name a kernel function to attach to).

Kfuncs the same way: a call to a kernel function (by its BTF id) that the kind may not call
is refused first with ``calling kernel function NAME is not allowed``; a sleepable kfunc in a
program that may not sleep, next, with ``program must be sleepable to call sleepable kfunc
NAME``. The kfuncs asked about are those this kernel's BTF tags ``bpf_kfunc`` (pahole 1.26 on),
or the names given (``--kfuncs A,B``, for a kernel whose BTF has no such tags).

The context the same way again: every load and store of 1, 2, 4 and 8 bytes at each offset
below :data:`CTX_LIMIT` through the context pointer (``r0 = *(u32 *)(r1 + 8)``,
``*(u32 *)(r1 + 8) = r2``); the kernel refuses the ones the kind may not make with
``invalid bpf_context access off=8 size=4`` (the fields a kind may read, write, or read
narrowly; the layout of the context of its release).

A kind whose plain ``r0 = 0; exit`` program does not load here (a kernel without trampolines
refuses fentry with EPERM; a type the kernel lacks) is left out: the table says nothing of it.

The tables this writes (``python -m pytest_ebpf.kernel.typeprobe``) are the data of
:mod:`pytest_ebpf.analysis.helper_types`, one per kernel release; ``scripts/probe-helpers``
runs it on the host and in a VM per named kernel.
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from pytest_ebpf.abi import AttachType, ProgType, PseudoCall
from pytest_ebpf.errors import EbpfError
from pytest_ebpf.kernel.layout import BPF_F_SLEEPABLE
from pytest_ebpf.kernel.progs import prog_load
from pytest_ebpf.kernel.targets import (
    TargetError,
    attach_target,
    kernel_btf,
    kernel_type_id,
    needs_target,
)
from pytest_ebpf.obj.progtypes import ProgramKind, program_type, table_kinds

__all__ = ["CTX_LIMIT", "ProbeResult", "kernel_kfuncs", "known_kfuncs", "main", "probe",
           "probe_kinds", "table"]

_TARGETS: dict[tuple[str, bool], str] = {
    ("fentry", False): "fentry/bpf_fentry_test1",
    ("fexit", False): "fexit/bpf_fentry_test1",
    ("fentry", True): "fentry.s/bpf_modify_return_test",
    ("fexit", True): "fexit.s/bpf_modify_return_test",
    ("fmod_ret", False): "fmod_ret/bpf_modify_return_test",
    ("fmod_ret", True): "fmod_ret.s/bpf_modify_return_test",
    ("fsession", False): "fsession/bpf_fentry_test1",
    ("btf_tracepoint", False): "tp_btf/sched_switch",
    ("lsm", False): "lsm/file_open",
    ("lsm", True): "lsm.s/file_open",
    ("lsm_cgroup", False): "lsm_cgroup/socket_bind",
    ("iter", False): "iter/task",
    ("iter", True): "iter.s/task",
}
"""Per (label, sleepable): a section naming a kernel function every kernel of the profiles
has, for the kinds that must name one to load."""

_REFUSED = re.compile(r"^(?:program of this type cannot use helper|unknown func) \S+#(\d+)$",
                      re.M)
_MISSING = re.compile(r"^invalid func \S+#(\d+)$", re.M)

_KFUNC_REFUSED = re.compile(r"^calling kernel function (\w+) is not allowed$", re.M)
_KFUNC_SLEEPS = re.compile(r"^program must be sleepable to call sleepable kfunc (\w+)$", re.M)

_CALL, _MOV_R0_0, _EXIT = 0x85, 0xB7, 0x95
_LDX_MEM, _STX_MEM = 0x61, 0x63
_SIZE_BITS = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}

CTX_LIMIT = 256
"""Context offsets probed: ``[0, CTX_LIMIT)`` (every context struct of a program kind fits,
but tracepoints', whose records go on; the tables say nothing beyond)."""


def _insn(code: int, imm: int = 0, src: int = 0, dst: int = 0, off: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def _ctx_access(write: bool, size: int, off: int) -> bytes:
    if write:  # r2 = 0; *(uN *)(r1 + off) = r2
        return _insn(_MOV_R0_0, dst=2) + _insn(_STX_MEM | _SIZE_BITS[size], src=2, dst=1, off=off)
    return _insn(_LDX_MEM | _SIZE_BITS[size], src=1, off=off)  # r0 = *(uN *)(r1 + off)


def _helper_call(helper: int) -> bytes:
    return _insn(_CALL, helper)


def _kfunc_call(btf_id: int) -> bytes:
    return _insn(_CALL, btf_id, PseudoCall.KFUNC_CALL)


@dataclass(frozen=True)
class ProbeResult:
    """What one kind of program may call on this kernel."""

    scope: str
    """:attr:`ProgramKind.helper_scope`."""
    allowed: tuple[int, ...]
    """The helper ids the kind may call (of those the kernel has)."""
    last_helper: int
    """The highest helper id this kernel has."""
    kfuncs: tuple[str, ...] = ()
    """The kfuncs asked about (that this kernel has) the kind may call."""
    sleepable_kfuncs: tuple[str, ...] = ()
    """Of :attr:`kfuncs`, those the kind may call only in a sleepable program (refused as it
    is)."""
    ctx: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """``r4`` (loads of 4 bytes), ``w8`` (stores of 8)... -> the offsets below
    :data:`CTX_LIMIT` the kernel does not refuse (empty: the context was not probed)."""


@dataclass(frozen=True)
class _Load:
    kind: ProgramKind
    attach_btf_id: int

    def outcome(self, call: bytes = b"") -> tuple[bool, str]:
        """(loaded, log) of ``CALL; r0 = 0; exit`` (no call: the bare program)."""
        kind = self.kind
        attach = kind.expected_attach_type
        result = prog_load(
            int(ProgType[kind.prog_type.upper()]), call + _insn(_MOV_R0_0) + _insn(_EXIT), "GPL",
            expected_attach_type=0 if attach is None else int(AttachType[attach.upper()]),
            log_level=1, log_size=4096, attach_btf_id=self.attach_btf_id,
            prog_flags=BPF_F_SLEEPABLE if kind.sleepable else 0)
        if result.fd is not None:
            result.fd.close()
        return result.ok, result.log


def _loader(kind: ProgramKind) -> _Load | None:
    """How to load a probe of *kind*, or None when this kernel cannot load it at all."""
    btf_id = 0
    if needs_target(kind):
        section = _TARGETS.get((kind.label, kind.sleepable))
        target = program_type(section) if section is not None else None
        if target is None or kind.multi:
            return None
        try:
            btf_id = attach_target(target)[0]
        except TargetError:
            return None
        kind = target
    load = _Load(kind, btf_id)
    try:
        loaded, _ = load.outcome()
    except EbpfError:
        return None
    return load if loaded else None


def probe_kinds() -> dict[str, ProgramKind]:
    """One kind per helper scope of the section table (the first keyword that has it)."""
    out: dict[str, ProgramKind] = {}
    for kind in table_kinds():
        out.setdefault(kind.helper_scope, kind)
    return out


def _last_helper(load: _Load) -> int:
    """The highest helper id the kernel has: ``invalid func`` above it (a binary search)."""
    low, high = 1, 1024
    while low < high:
        mid = (low + high + 1) // 2
        if _MISSING.search(load.outcome(_helper_call(mid))[1]):
            high = mid - 1
        else:
            low = mid
    return low


def kernel_kfuncs() -> list[str]:
    """The kfuncs this kernel's BTF tags ``bpf_kfunc``, by name (none: an older pahole)."""
    btf = kernel_btf()
    return sorted({btf.types[t.type].name for t in btf.types
                   if t.kind == "decl_tag" and t.name == "bpf_kfunc" and t.type is not None})


def known_kfuncs(names: list[str]) -> dict[str, int]:
    """Of *names*, the kfuncs this kernel has: name -> BTF id."""
    ids = {}
    for name in names:
        found = kernel_type_id(name, "func")
        if found is not None:
            ids[name] = found
    return ids


def _kfuncs(load: _Load, ids: Mapping[str, int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    allowed, sleeps = [], []
    for name, btf_id in ids.items():
        _, log = load.outcome(_kfunc_call(btf_id))
        refused = _KFUNC_REFUSED.search(log)
        if refused is not None and refused.group(1) == name:
            continue
        allowed.append(name)
        sleep = _KFUNC_SLEEPS.search(log)
        if sleep is not None and sleep.group(1) == name:
            sleeps.append(name)
    return tuple(allowed), tuple(sleeps)


def _ctx(load: _Load) -> dict[str, tuple[int, ...]]:
    out = {}
    for size in _SIZE_BITS:
        for write in (False, True):
            valid = []
            for off in range(CTX_LIMIT):
                _, log = load.outcome(_ctx_access(write, size, off))
                if f"invalid bpf_context access off={off} size={size}\n" not in log + "\n":
                    valid.append(off)
            out[f"{'w' if write else 'r'}{size}"] = tuple(valid)
    return out


def probe(kinds: dict[str, ProgramKind] | None = None, kfuncs: Mapping[str, int] | None = None,
          ctx_scopes: Collection[str] | None = ()) -> list[ProbeResult]:
    """Ask the running kernel which helpers, and which of *kfuncs* (name -> BTF id, as
    :func:`known_kfuncs` finds them; None: none), each kind may call, and which context
    accesses the kinds of *ctx_scopes* may make (None: every kind) (root); kinds it cannot load
    are left out."""
    kinds = probe_kinds() if kinds is None else kinds
    ids = kfuncs or {}
    out: list[ProbeResult] = []
    last: int | None = None
    for scope, kind in kinds.items():
        load = _loader(kind)
        if load is None:
            continue
        if last is None:
            last = _last_helper(load)
        allowed = []
        for helper in range(1, last + 1):
            _, log = load.outcome(_helper_call(helper))
            refused = _REFUSED.search(log)
            if refused is None or int(refused.group(1)) != helper:
                allowed.append(helper)
        ctx = (_ctx(load) if (ctx_scopes is None or scope in ctx_scopes)
               and not needs_target(kind) else {})
        out.append(ProbeResult(scope, tuple(allowed), last, *_kfuncs(load, ids), ctx=ctx))
    return out


def _ranges(ids: tuple[int, ...]) -> str:
    """``1-5,8,12-14``."""
    parts: list[str] = []
    start = prev = None
    for i in (*ids, None):
        if i is not None and prev is not None and i == prev + 1:
            prev = i
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = i
    return ",".join(parts)


def table(results: list[ProbeResult], kfuncs: Iterable[str]) -> dict[str, object]:
    """The results as the JSON document :mod:`pytest_ebpf.analysis.helper_types` reads:
    helper ids and kfuncs (indices into ``kfuncs.names``: *kfuncs*, those asked about that the
    kernel has) as ``1-5,8`` ranges."""
    names = sorted(kfuncs)
    index = {name: i for i, name in enumerate(names)}

    def ranges_of(kfuncs: tuple[str, ...]) -> str:
        return _ranges(tuple(sorted(index[k] for k in kfuncs)))

    return {
        "release": os.uname().release,
        "arch": os.uname().machine,
        "last_helper": results[0].last_helper if results else 0,
        "scopes": {r.scope: _ranges(r.allowed) for r in results},
        "kfuncs": {"names": names,
                   "allowed": {r.scope: ranges_of(r.kfuncs) for r in results},
                   "sleepable": {r.scope: ranges_of(r.sleepable_kfuncs) for r in results
                                 if r.sleepable_kfuncs}},
        "ctx": {"limit": CTX_LIMIT,
                "scopes": {r.scope: {k: _ranges(v) for k, v in r.ctx.items()}
                           for r in results if r.ctx}},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m pytest_ebpf.kernel.typeprobe [--kfuncs A,B] [--scopes A,B]``: print this
    kernel's table as JSON. ``--kfuncs``: the kfunc names to ask about (default: the ones this
    kernel's BTF tags); ``--scopes``: only these kinds."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pytest_ebpf.kernel.typeprobe")
    parser.add_argument("--kfuncs", help="kfunc names, comma-separated")
    parser.add_argument("--scopes", help="helper scopes to probe, comma-separated")
    args = parser.parse_args(argv)
    kinds = probe_kinds()
    if args.scopes:
        kinds = {s: k for s, k in kinds.items() if s in args.scopes.split(",")}
    try:
        kfuncs = known_kfuncs(args.kfuncs.split(",") if args.kfuncs else kernel_kfuncs())
        results = probe(kinds, kfuncs, ctx_scopes=None)
    except EbpfError as exc:
        print(f"pytest-ebpf: the helper probe failed: {exc}", file=sys.stderr)
        return 1
    if not results:
        print("pytest-ebpf: no kind of program loads here (root is needed)", file=sys.stderr)
        return 1
    print(json.dumps(table(results, kfuncs), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
