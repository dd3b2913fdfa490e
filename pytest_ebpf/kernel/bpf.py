"""A thin, typed wrapper over the ``bpf()`` system call (ctypes only: no libbpf, no bpftool).

Every function maps to one ``bpf()`` command. File descriptors come back as :class:`Fd`, which
owns and closes them. Failures raise :class:`KernelError`, except verifier rejections in
:func:`prog_load`, which come back in the :class:`LoadOutcome` with the full verifier log.

This module is the public face; the code lives in ``kernel_sys`` (the call, errors, ``Fd``),
``kernel_maps``, ``kernel_progs``, ``kernel_objects``, ``kernel_abi`` (flags and layouts written
from ``include/uapi/linux/bpf.h``; the enums are :mod:`pytest_ebpf.abi`'s) and ``verifier_log``.
"""

from __future__ import annotations

import errno as _errno
import os
import platform

from pytest_ebpf.abi import PERCPU_MAP_TYPES, MapType
from pytest_ebpf.errors import EbpfError
from pytest_ebpf.kernel.layout import (
    BPF_ANY,
    BPF_ATTACH_TYPE,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NO_PREALLOC,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_TEST_RUN_ON_CPU,
    BPF_F_WRONLY,
    BPF_LOG_LEVEL1,
    BPF_LOG_LEVEL2,
    BPF_LOG_STATS,
    BPF_MAP_TYPE,
    BPF_NOEXIST,
    BPF_PROG_TYPE,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX,
    BPF_PSEUDO_MAP_VALUE,
)
from pytest_ebpf.kernel.maps import (
    map_create,
    map_delete,
    map_freeze,
    map_keys,
    map_lookup,
    map_update,
    map_value_size,
    percpu_values,
    possible_cpus,
)
from pytest_ebpf.kernel.objects import (
    MapInfo,
    ProgInfo,
    btf_ids,
    map_get_fd_by_id,
    map_ids,
    map_info,
    obj_get,
    obj_pin,
    prog_get_fd_by_id,
    prog_ids,
    prog_info,
)
from pytest_ebpf.kernel.progs import (
    LoadOutcome,
    TestRunResult,
    btf_load,
    prog_load,
    prog_test_run,
    raw_tracepoint_open,
)
from pytest_ebpf.kernel.sys import MAX_LOG_SIZE, Fd, KernelError, syscall_fn
from pytest_ebpf.kernel.verifier_log import VerifierSummary, parse_verifier_log

__all__ = [
    "BPF_ANY",
    "BPF_ATTACH_TYPE",
    "BPF_EXIST",
    "BPF_F_LOCK",
    "BPF_F_NO_PREALLOC",
    "BPF_F_RDONLY",
    "BPF_F_RDONLY_PROG",
    "BPF_F_TEST_RUN_ON_CPU",
    "BPF_F_WRONLY",
    "BPF_LOG_LEVEL1",
    "BPF_LOG_LEVEL2",
    "BPF_LOG_STATS",
    "BPF_MAP_TYPE",
    "BPF_NOEXIST",
    "BPF_PROG_TYPE",
    "BPF_PSEUDO_CALL",
    "BPF_PSEUDO_FUNC",
    "BPF_PSEUDO_KFUNC_CALL",
    "BPF_PSEUDO_MAP_FD",
    "BPF_PSEUDO_MAP_IDX",
    "BPF_PSEUDO_MAP_VALUE",
    "MAX_LOG_SIZE",
    "PERCPU_MAP_TYPES",
    "EbpfError",
    "Fd",
    "KernelError",
    "LoadOutcome",
    "MapInfo",
    "ProgInfo",
    "TestRunResult",
    "VerifierSummary",
    "bpf_available",
    "btf_ids",
    "btf_load",
    "map_create",
    "map_delete",
    "map_freeze",
    "map_get_fd_by_id",
    "map_ids",
    "map_info",
    "map_keys",
    "map_lookup",
    "map_update",
    "map_value_size",
    "obj_get",
    "obj_pin",
    "parse_verifier_log",
    "percpu_values",
    "possible_cpus",
    "prog_get_fd_by_id",
    "prog_ids",
    "prog_info",
    "prog_load",
    "prog_test_run",
    "raw_tracepoint_open",
]


def bpf_available() -> tuple[bool, str]:
    """Can this process use ``bpf()``? Tries to create (and closes) a one-entry array map.

    Returns ``(True, "ok")`` or ``(False, reason)``; the reason names the fix.
    """
    if syscall_fn is None:
        return False, f"bpf() is unsupported here ({platform.system()} {platform.machine()})"
    try:
        map_create(MapType.ARRAY, 4, 4, 1).close()
    except KernelError as exc:
        if exc.errno == _errno.ENOSYS:
            return False, "kernel built without CONFIG_BPF_SYSCALL (bpf() returned ENOSYS)"
        if exc.errno == _errno.EPERM:
            why = "not root and no CAP_BPF/CAP_SYS_ADMIN"
            try:
                with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
                    disabled = f.read().strip()
            except OSError:
                disabled = ""
            if os.geteuid() != 0 and disabled not in ("", "0"):
                why += f" (kernel.unprivileged_bpf_disabled={disabled})"
            return False, f"bpf() denied (EPERM): {why}; run as root or grant CAP_BPF/CAP_SYS_ADMIN"
        return False, str(exc)
    return True, "ok"
