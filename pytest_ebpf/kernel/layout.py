"""Kernel ABI tables for :mod:`pytest_ebpf.kernel.bpf`: flags and ``union bpf_attr`` layouts.

Written from ``include/uapi/linux/bpf.h``; the enums themselves live in :mod:`pytest_ebpf.abi`,
and the name -> number dicts here are views of them. Each ``bpf()`` command gets its own ctypes
structure holding only the leading part of ``union bpf_attr`` it uses; the kernel zero-fills
whatever lies past the size passed, so a short structure is valid on both older and newer
kernels. Key offsets are checked against the UAPI at import time (``ImportError`` on an ABI
where ``__aligned_u64`` would not be 8-byte aligned).
"""

from __future__ import annotations

import ctypes
from typing import Final

from pytest_ebpf.abi import (
    AttachType,
    Cmd,
    MapType,
    ProgType,
    PseudoCall,
    PseudoSrc,
)

# --- enums: defined once in pytest_ebpf.abi; the name -> number views the callers index ----------

BPF_CMD: Final[dict[str, int]] = {c.name: int(c) for c in Cmd}
CMD_NAMES: Final[dict[int, str]] = {int(c): "BPF_" + c.name for c in Cmd}
BPF_MAP_TYPE: Final[dict[str, int]] = {m.label: int(m) for m in MapType}
BPF_PROG_TYPE: Final[dict[str, int]] = {t.label: int(t) for t in ProgType}
BPF_ATTACH_TYPE: Final[dict[str, int]] = {t.label: int(t) for t in AttachType}

# --- flags ------------------------------------------------------------------------------------

BPF_ANY: Final = 0
BPF_NOEXIST: Final = 1
BPF_EXIST: Final = 2
BPF_F_LOCK: Final = 4

# map_flags (BPF_MAP_CREATE)
BPF_F_NO_PREALLOC: Final = 1 << 0
BPF_F_NO_COMMON_LRU: Final = 1 << 1
BPF_F_NUMA_NODE: Final = 1 << 2
BPF_F_RDONLY: Final = 1 << 3
BPF_F_WRONLY: Final = 1 << 4
BPF_F_ZERO_SEED: Final = 1 << 6
BPF_F_RDONLY_PROG: Final = 1 << 7
BPF_F_WRONLY_PROG: Final = 1 << 8
BPF_F_MMAPABLE: Final = 1 << 10
BPF_F_INNER_MAP: Final = 1 << 12

# prog_flags (BPF_PROG_LOAD)
BPF_F_STRICT_ALIGNMENT: Final = 1 << 0
BPF_F_ANY_ALIGNMENT: Final = 1 << 1
BPF_F_TEST_RND_HI32: Final = 1 << 2
BPF_F_TEST_STATE_FREQ: Final = 1 << 3
BPF_F_SLEEPABLE: Final = 1 << 4
BPF_F_XDP_HAS_FRAGS: Final = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY: Final = 1 << 6

# BPF_PROG_TEST_RUN flags
BPF_F_TEST_RUN_ON_CPU: Final = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES: Final = 1 << 1

# verifier log_level bits
BPF_LOG_LEVEL1: Final = 1
BPF_LOG_LEVEL2: Final = 2
BPF_LOG_STATS: Final = 4

# ld_imm64 / call pseudo sources (pytest_ebpf.abi.PseudoSrc, PseudoCall)
BPF_PSEUDO_MAP_FD: Final = PseudoSrc.MAP_FD
BPF_PSEUDO_MAP_VALUE: Final = PseudoSrc.MAP_VALUE
BPF_PSEUDO_BTF_ID: Final = PseudoSrc.BTF_ID
BPF_PSEUDO_FUNC: Final = PseudoSrc.FUNC
BPF_PSEUDO_MAP_IDX: Final = PseudoSrc.MAP_IDX
BPF_PSEUDO_MAP_IDX_VALUE: Final = PseudoSrc.MAP_IDX_VALUE
BPF_PSEUDO_CALL: Final = PseudoCall.CALL
BPF_PSEUDO_KFUNC_CALL: Final = PseudoCall.KFUNC_CALL

BPF_OBJ_NAME_LEN: Final = 16
BPF_TAG_SIZE: Final = 8
INSN_SIZE: Final = 8

# --- union bpf_attr, one structure per command ------------------------------------------------

_u32 = ctypes.c_uint32
_s32 = ctypes.c_int32
_u64 = ctypes.c_uint64


class MapCreateAttr(ctypes.Structure):
    _fields_ = (
        ("map_type", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("inner_map_fd", _u32),
        ("numa_node", _u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", _u32),
        ("btf_fd", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("map_extra", _u64),
    )


class ElemAttr(ctypes.Structure):
    """BPF_MAP_*_ELEM, BPF_MAP_GET_NEXT_KEY and BPF_MAP_FREEZE."""

    _fields_ = (
        ("map_fd", _u32),
        ("_pad0", _u32),
        ("key", _u64),
        ("value", _u64),  # also next_key
        ("flags", _u64),
    )


class ProgLoadAttr(ctypes.Structure):
    _fields_ = (
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
        ("prog_btf_fd", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("func_info_cnt", _u32),
        ("line_info_rec_size", _u32),
        ("line_info", _u64),
        ("line_info_cnt", _u32),
        ("attach_btf_id", _u32),
        ("attach_prog_fd", _u32),
        ("core_relo_cnt", _u32),
        ("fd_array", _u64),
        ("core_relos", _u64),
        ("core_relo_rec_size", _u32),
        ("log_true_size", _u32),  # output, kernel >= 6.4
    )


class ObjAttr(ctypes.Structure):
    """BPF_OBJ_PIN / BPF_OBJ_GET."""

    _fields_ = (
        ("pathname", _u64),
        ("bpf_fd", _u32),
        ("file_flags", _u32),
    )


class TestRunAttr(ctypes.Structure):
    _fields_ = (
        ("prog_fd", _u32),
        ("retval", _u32),
        ("data_size_in", _u32),
        ("data_size_out", _u32),
        ("data_in", _u64),
        ("data_out", _u64),
        ("repeat", _u32),
        ("duration", _u32),
        ("ctx_size_in", _u32),
        ("ctx_size_out", _u32),
        ("ctx_in", _u64),
        ("ctx_out", _u64),
        ("flags", _u32),
        ("cpu", _u32),
    )


class RawTracepointOpenAttr(ctypes.Structure):
    """BPF_RAW_TRACEPOINT_OPEN: ``name`` 0 for a tp_btf (tracing) program, whose target is
    its attach_btf_id."""

    _fields_ = (
        ("name", _u64),
        ("prog_fd", _u32),
        ("_pad", _u32),
        ("cookie", _u64),
    )


class GetIdAttr(ctypes.Structure):
    """BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID (start_id doubles as prog_id/map_id/btf_id)."""

    _fields_ = (
        ("start_id", _u32),
        ("next_id", _u32),
        ("open_flags", _u32),
    )


class InfoAttr(ctypes.Structure):
    _fields_ = (
        ("bpf_fd", _u32),
        ("info_len", _u32),
        ("info", _u64),
    )


class BtfLoadAttr(ctypes.Structure):
    _fields_ = (
        ("btf", _u64),
        ("btf_log_buf", _u64),
        ("btf_size", _u32),
        ("btf_log_size", _u32),
        ("btf_log_level", _u32),
        ("btf_log_true_size", _u32),  # output, kernel >= 6.4
    )


class RawProgInfo(ctypes.Structure):
    """struct bpf_prog_info (232 bytes in 6.x)."""

    _fields_ = (
        ("type", _u32),
        ("id", _u32),
        ("tag", ctypes.c_uint8 * BPF_TAG_SIZE),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),  # bit 0
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
        ("_pad0", _u32),
    )


class RawMapInfo(ctypes.Structure):
    """struct bpf_map_info, up to map_extra (88 bytes; later fields are left to the kernel)."""

    _fields_ = (
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("btf_id", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_id", _u32),
        ("map_extra", _u64),
    )


# Offsets that must match the UAPI whatever the host's alignment of c_uint64.
_EXPECTED_OFFSETS = (
    (MapCreateAttr, "map_extra", 64),
    (ElemAttr, "flags", 24),
    (ProgLoadAttr, "prog_name", 48),
    (ProgLoadAttr, "func_info", 80),
    (ProgLoadAttr, "fd_array", 120),
    (ProgLoadAttr, "log_true_size", 140),
    (TestRunAttr, "ctx_out", 56),
    (TestRunAttr, "cpu", 68),
    (BtfLoadAttr, "btf_log_true_size", 28),
    (RawProgInfo, "map_ids", 56),
    (RawProgInfo, "netns_dev", 88),
    (RawProgInfo, "verified_insns", 216),
    (RawMapInfo, "map_extra", 80),
)
for _struct, _field, _off in _EXPECTED_OFFSETS:
    if getattr(_struct, _field).offset != _off:  # pragma: no cover - exotic ABI
        raise ImportError(f"bpf ABI mismatch: {_struct.__name__}.{_field}")
if ctypes.sizeof(RawProgInfo) != 232:  # pragma: no cover - exotic ABI
    raise ImportError("bpf ABI mismatch: bpf_prog_info size")
