"""The running kernel's own BTF, ``/sys/kernel/btf/vmlinux``, parsed like any other BTF blob
(once per process). The file is world-readable: reading it needs no privileges, so static rules
of the host's profile may use it (CO-RE relocations resolved against it) as the loaders do."""

from __future__ import annotations

import sys
from pathlib import Path

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.btf import Btf, parse_btf

__all__ = ["VMLINUX", "read_vmlinux", "vmlinux_btf"]

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_CACHE: dict[Path, Btf] = {}


def read_vmlinux(path: Path | None = None) -> bytes:
    """The raw blob (default: :data:`VMLINUX`); :class:`ObjectError` naming the file and the
    kernel option it needs."""
    path = VMLINUX if path is None else path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ObjectError(
            f"the kernel's BTF cannot be read ({path}: {exc.strerror}): programs with a kernel "
            "attach target (fentry, fexit, lsm, tp_btf, iter), CO-RE relocations, kfuncs and "
            "typed ksyms need a kernel built with CONFIG_DEBUG_INFO_BTF=y") from exc


def vmlinux_btf(path: Path | None = None) -> Btf:
    """The kernel's BTF (default: :data:`VMLINUX`), parsed (once per process);
    :class:`ObjectError` when it cannot be read or parsed."""
    path = VMLINUX if path is None else path
    if path not in _CACHE:
        try:
            _CACHE[path] = parse_btf(read_vmlinux(path), sys.byteorder)
        except ObjectError as exc:
            if str(exc).startswith("the kernel's BTF"):
                raise
            raise ObjectError(f"the kernel's BTF ({path}) cannot be read: {exc}") from exc
    return _CACHE[path]
