"""Object commands of :mod:`pytest_ebpf.kernel.bpf`: info, pin/get, ids."""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from dataclasses import dataclass

from pytest_ebpf.kernel.layout import (
    BPF_CMD,
    GetIdAttr,
    InfoAttr,
    ObjAttr,
    RawMapInfo,
    RawProgInfo,
)
from pytest_ebpf.kernel.sys import (
    Fd,
    FdLike,
    PathLike,
    addressof,
    bpf_call,
    fail,
    fdnum,
    new_buf,
    sizeof,
)

# --- object info, pinning, ids ----------------------------------------------------------------


@dataclass(frozen=True)
class ProgInfo:
    id: int
    name: str
    type: int
    tag: str  # hex, as bpftool prints it
    verified_insns: int
    xlated_len: int
    jited_len: int
    map_ids: tuple[int, ...]
    load_time: int
    created_by_uid: int
    btf_id: int
    gpl_compatible: bool
    run_time_ns: int
    run_cnt: int


@dataclass(frozen=True)
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    name: str
    flags: int
    btf_id: int = 0
    map_extra: int = 0


def _get_info(fd: FdLike, info: ctypes.Structure) -> None:
    attr = InfoAttr(bpf_fd=fdnum(fd), info_len=sizeof(info), info=addressof(info))
    ret = bpf_call(BPF_CMD["OBJ_GET_INFO_BY_FD"], attr)
    if ret < 0:
        raise fail(BPF_CMD["OBJ_GET_INFO_BY_FD"], -ret)


def prog_info(fd: FdLike) -> ProgInfo:
    room = 64
    while True:
        ids = (ctypes.c_uint32 * room)()
        raw = RawProgInfo(nr_map_ids=room, map_ids=addressof(ids))
        _get_info(fd, raw)
        if raw.nr_map_ids <= room:
            break
        room = raw.nr_map_ids
    return ProgInfo(
        id=raw.id,
        name=raw.name.decode("utf-8", "replace"),
        type=raw.type,
        tag=bytes(raw.tag).hex(),
        verified_insns=raw.verified_insns,
        xlated_len=raw.xlated_prog_len,
        jited_len=raw.jited_prog_len,
        map_ids=tuple(ids[: raw.nr_map_ids]),
        load_time=raw.load_time,
        created_by_uid=raw.created_by_uid,
        btf_id=raw.btf_id,
        gpl_compatible=bool(raw.gpl_compatible & 1),
        run_time_ns=raw.run_time_ns,
        run_cnt=raw.run_cnt,
    )


def map_info(fd: FdLike) -> MapInfo:
    raw = RawMapInfo()
    _get_info(fd, raw)
    return MapInfo(
        id=raw.id,
        type=raw.type,
        key_size=raw.key_size,
        value_size=raw.value_size,
        max_entries=raw.max_entries,
        name=raw.name.decode("utf-8", "replace"),
        flags=raw.map_flags,
        btf_id=raw.btf_id,
        map_extra=raw.map_extra,
    )


def obj_pin(fd: FdLike, path: PathLike) -> None:
    """Pin a program or map at ``path`` (which must be on a bpf filesystem)."""
    p = new_buf(os.fsencode(path))
    ret = bpf_call(BPF_CMD["OBJ_PIN"], ObjAttr(pathname=addressof(p), bpf_fd=fdnum(fd)))
    if ret < 0:
        raise fail(BPF_CMD["OBJ_PIN"], -ret, detail=os.fsdecode(path))


def obj_get(path: PathLike, flags: int = 0) -> Fd:
    """Open a pinned object (``flags``: 0, BPF_F_RDONLY or BPF_F_WRONLY)."""
    p = new_buf(os.fsencode(path))
    ret = bpf_call(BPF_CMD["OBJ_GET"], ObjAttr(pathname=addressof(p), file_flags=flags))
    if ret < 0:
        raise fail(BPF_CMD["OBJ_GET"], -ret, detail=os.fsdecode(path))
    return Fd(ret)


def _fd_by_id(cmd: int, obj_id: int) -> Fd:
    ret = bpf_call(cmd, GetIdAttr(start_id=obj_id))
    if ret < 0:
        raise fail(cmd, -ret, detail=f"id {obj_id}")
    return Fd(ret)


def prog_get_fd_by_id(prog_id: int) -> Fd:
    return _fd_by_id(BPF_CMD["PROG_GET_FD_BY_ID"], prog_id)


def map_get_fd_by_id(map_id: int) -> Fd:
    return _fd_by_id(BPF_CMD["MAP_GET_FD_BY_ID"], map_id)


def _ids(cmd: int) -> list[int]:
    out: list[int] = []
    attr = GetIdAttr()
    while True:
        ret = bpf_call(cmd, attr)
        if ret < 0:
            if -ret == _errno.ENOENT:
                return out
            raise fail(cmd, -ret)
        out.append(attr.next_id)
        attr.start_id = attr.next_id


def prog_ids() -> list[int]:
    """Ids of every program loaded in the system (needs CAP_SYS_ADMIN)."""
    return _ids(BPF_CMD["PROG_GET_NEXT_ID"])


def map_ids() -> list[int]:
    """Ids of every map in the system (needs CAP_SYS_ADMIN)."""
    return _ids(BPF_CMD["MAP_GET_NEXT_ID"])


def btf_ids() -> list[int]:
    """Ids of every BTF object in the system (needs CAP_SYS_ADMIN)."""
    return _ids(BPF_CMD["BTF_GET_NEXT_ID"])
