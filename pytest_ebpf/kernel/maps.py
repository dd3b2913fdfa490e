"""Map commands of :mod:`pytest_ebpf.kernel.bpf` and per-CPU value helpers."""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import sys
from collections.abc import Iterator

from pytest_ebpf.abi import PERCPU_MAP_TYPES, MapType
from pytest_ebpf.kernel.layout import (
    BPF_ANY,
    BPF_CMD,
    ElemAttr,
    MapCreateAttr,
)
from pytest_ebpf.kernel.objects import map_info
from pytest_ebpf.kernel.sys import (
    Fd,
    FdLike,
    KernelError,
    addressof,
    bpf_call,
    fail,
    fdnum,
    in_buf,
    new_buf,
    obj_name,
    ptr,
)


@functools.cache
def possible_cpus() -> int:
    """Number of possible CPUs (``/sys/devices/system/cpu/possible``, e.g. ``0-3,6``)."""
    with open("/sys/devices/system/cpu/possible") as f:
        spec = f.read().strip()
    count = 0
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        count += (int(hi) - int(lo) + 1) if hi else 1
    return count


def map_value_size(map_type: int, value_size: int) -> int:
    """Size of the user buffer for one value: per-CPU maps hold round_up(value_size, 8) bytes
    per possible CPU."""
    if map_type in PERCPU_MAP_TYPES:
        return ((value_size + 7) & ~7) * possible_cpus()
    return value_size


def percpu_values(blob: bytes, value_size: int) -> list[bytes]:
    """Split a per-CPU value buffer into one ``value_size`` value per possible CPU."""
    stride = (value_size + 7) & ~7
    return [blob[i : i + value_size] for i in range(0, len(blob), stride)]


# --- maps -------------------------------------------------------------------------------------


def map_create(
    map_type: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    flags: int = 0,
    name: str = "",
    btf_fd: FdLike | None = None,
    btf_key_type_id: int = 0,
    btf_value_type_id: int = 0,
    inner_map_fd: FdLike | None = None,
    map_extra: int = 0,
) -> Fd:
    attr = MapCreateAttr(
        map_type=map_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=flags,
        map_name=obj_name(name),
        map_extra=map_extra,
    )
    if inner_map_fd is not None:
        attr.inner_map_fd = fdnum(inner_map_fd)
    if btf_fd is not None:
        attr.btf_fd = fdnum(btf_fd)
        attr.btf_key_type_id = btf_key_type_id
        attr.btf_value_type_id = btf_value_type_id
    ret = bpf_call(BPF_CMD["MAP_CREATE"], attr)
    if ret < 0:
        raise fail(BPF_CMD["MAP_CREATE"], -ret)
    return Fd(ret)


def map_lookup(fd: FdLike, key: bytes, value_size: int, flags: int = 0) -> bytes | None:
    """The value under ``key`` (``value_size`` bytes: use :func:`map_value_size` for per-CPU
    maps), or None when there is no such key."""
    kbuf = in_buf(key)
    vbuf = new_buf(value_size)
    attr = ElemAttr(map_fd=fdnum(fd), key=ptr(kbuf), value=addressof(vbuf), flags=flags)
    ret = bpf_call(BPF_CMD["MAP_LOOKUP_ELEM"], attr)
    if ret < 0:
        if -ret == _errno.ENOENT:
            return None
        raise fail(BPF_CMD["MAP_LOOKUP_ELEM"], -ret)
    return vbuf.raw


def map_update(fd: FdLike, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
    kbuf, vbuf = in_buf(key), in_buf(value)
    attr = ElemAttr(map_fd=fdnum(fd), key=ptr(kbuf), value=ptr(vbuf), flags=flags)
    ret = bpf_call(BPF_CMD["MAP_UPDATE_ELEM"], attr)
    if ret < 0:
        detail = _update_detail(fd, key) if -ret == _errno.E2BIG else ""
        raise fail(BPF_CMD["MAP_UPDATE_ELEM"], -ret, detail=detail)


def map_delete(fd: FdLike, key: bytes) -> bool:
    """Delete ``key``; False when it was not there."""
    kbuf = in_buf(key)
    ret = bpf_call(BPF_CMD["MAP_DELETE_ELEM"], ElemAttr(map_fd=fdnum(fd), key=ptr(kbuf)))
    if ret < 0:
        if -ret == _errno.ENOENT:
            return False
        raise fail(BPF_CMD["MAP_DELETE_ELEM"], -ret)
    return True


def map_keys(fd: FdLike, key_size: int) -> Iterator[bytes]:
    """Every key, via BPF_MAP_GET_NEXT_KEY starting from NULL."""
    num = fdnum(fd)
    prev: ctypes.Array[ctypes.c_char] | None = None
    while True:
        nxt = new_buf(key_size)
        attr = ElemAttr(map_fd=num, key=ptr(prev), value=addressof(nxt))
        ret = bpf_call(BPF_CMD["MAP_GET_NEXT_KEY"], attr)
        if ret < 0:
            if -ret == _errno.ENOENT:
                return
            raise fail(BPF_CMD["MAP_GET_NEXT_KEY"], -ret)
        yield nxt.raw
        prev = nxt


def map_freeze(fd: FdLike) -> None:
    ret = bpf_call(BPF_CMD["MAP_FREEZE"], ElemAttr(map_fd=fdnum(fd)))
    if ret < 0:
        raise fail(BPF_CMD["MAP_FREEZE"], -ret)


# Maps indexed by a u32 whose update refuses an index >= max_entries with E2BIG.
_INDEXED = frozenset((
    MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
    MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS, MapType.DEVMAP, MapType.CPUMAP, MapType.XSKMAP,
    MapType.SOCKMAP,
))  # fmt: skip


def _update_detail(fd: FdLike, key: bytes) -> str:
    """E2BIG from an update: a key out of an array's range, or a full map."""
    try:
        info = map_info(fd)
    except KernelError:
        return ""
    label = f"map {info.name}" if info.name else "the map"
    if info.type in _INDEXED and len(key) >= 4:
        index = int.from_bytes(key[:4], sys.byteorder)
        return (f"key {index} is out of range: {label} is an array of {info.max_entries} "
                f"entries, so its keys are 0..{info.max_entries - 1}")
    return f"{label} is full: it holds at most {info.max_entries} entries (max_entries)"
