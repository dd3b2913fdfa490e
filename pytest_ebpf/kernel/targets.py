"""Kernel BTF attach targets: the ``attach_btf_id`` that fentry, fexit, fmod_ret, lsm,
tp_btf (Aya's ``btf_tracepoint``) and iter programs must name when they are loaded.

The id is the kernel's own type id in ``/sys/kernel/btf/vmlinux`` (read once per process), as
libbpf and Aya look it up:

=================== ======================================= ========================
program             section                                 kernel BTF type
=================== ======================================= ========================
fentry/fexit        ``fentry/tcp_connect``                  FUNC ``tcp_connect``
fmod_ret            ``fmod_ret/bpf_modify_return_test``     FUNC of that name
lsm                 ``lsm/file_open``                       FUNC ``bpf_lsm_file_open``
tp_btf              ``tp_btf/sched_process_exec``           TYPEDEF ``btf_trace_sched_process_exec``
iter                ``iter/task``                           FUNC ``bpf_iter_task``
=================== ======================================= ========================

Targets in kernel modules (their own split BTF under ``/sys/kernel/btf/``) and ``freplace``
(which names another loaded program) are refused with the reason.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pytest_ebpf.errors import EbpfError, ObjectError
from pytest_ebpf.obj.btf import Btf
from pytest_ebpf.obj.btf_names import BtfNames, btf_names
from pytest_ebpf.obj.progtypes import BTF_CTX_TYPES, ProgramKind
from pytest_ebpf.obj.vmlinux import VMLINUX, read_vmlinux, vmlinux_btf

__all__ = ["VMLINUX", "TargetError", "attach_target", "kernel_btf", "kernel_type_id"]

_NAMES: dict[Path, BtfNames] = {}


class TargetError(EbpfError):
    """The program's kernel attach target cannot be found; the message names it and the fix."""


@dataclass(frozen=True)
class _Rule:
    kind: str
    """The BTF kind to look for."""
    prefix: str
    """Put before the section's target to make the type's name."""


_RULES: dict[str, _Rule] = {
    "fentry": _Rule("func", ""),
    "fexit": _Rule("func", ""),
    "fmod_ret": _Rule("func", ""),
    "fsession": _Rule("func", ""),
    "lsm": _Rule("func", "bpf_lsm_"),
    "lsm_cgroup": _Rule("func", "bpf_lsm_"),
    "btf_tracepoint": _Rule("typedef", "btf_trace_"),
    "iter": _Rule("func", "bpf_iter_"),
}


def _read(path: Path) -> bytes:
    try:
        return read_vmlinux(path)
    except ObjectError as exc:
        raise TargetError(str(exc)) from exc


def kernel_btf(path: Path = VMLINUX) -> Btf:
    """The running kernel's BTF, parsed (once per process): for CO-RE, which compares types.
    Looking up ids by name needs only :func:`kernel_type_id`, which is much faster."""
    try:
        return vmlinux_btf(path)
    except ObjectError as exc:
        raise TargetError(str(exc)) from exc


def kernel_type_id(name: str, kind: str, path: Path = VMLINUX) -> int | None:
    """The id of the kernel's BTF type *name* of *kind* (``func``, ``typedef``, ``var``), or
    ``None``: the index of :mod:`pytest_ebpf.obj.btf_names`, built once per process."""
    if path not in _NAMES:
        try:
            _NAMES[path] = btf_names(_read(path), sys.byteorder)
        except ObjectError as exc:
            raise TargetError(f"the kernel's BTF ({path}) cannot be read: {exc}") from exc
    return _NAMES[path].find_id(name, kind)


def needs_target(kind: ProgramKind) -> bool:
    """Does a program of *kind* name a kernel BTF type when it is loaded?"""
    return kind.prog_type in BTF_CTX_TYPES


def attach_target(kind: ProgramKind, path: Path = VMLINUX) -> tuple[int, str]:
    """``(attach_btf_id, "FUNC tcp_connect")`` for a program of *kind*; :class:`TargetError`
    when the kind has no such target, the section names none, or the kernel has no such
    type."""
    rule = _RULES.get(kind.label)
    if rule is None or kind.multi:
        what = "freplace (it replaces a function of another loaded program)" \
            if kind.prog_type == "ext" else f"{kind.label} ({kind.keyword})"
        raise TargetError(f"the native loader cannot load {what} programs: they need more "
                          "than a kernel BTF type to attach to")
    if not kind.attach_target:
        raise TargetError(f"section {kind.keyword!r} names no target: write "
                          f"{kind.keyword}/NAME (Aya: the macro's function/hook argument)")
    target = kind.attach_target
    if ":" in target:
        raise TargetError(f"{target!r}: targets in kernel modules (module:function) are not "
                          "resolved by the native loader; fix: a vmlinux function")
    name = rule.prefix + target
    found = kernel_type_id(name, rule.kind, path)
    if found is None:
        raise TargetError(f"this kernel's BTF ({path}) has no {rule.kind.upper()} {name!r} for "
                          f"{kind.keyword}/{target}: the kernel does not have it (or it is in a "
                          "module, or named differently on this kernel)")
    return found, f"{rule.kind.upper()} {name}"
