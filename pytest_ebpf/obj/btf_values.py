"""Decoding bytes through a BTF type: what a map value (or key) means, as ``bpftool map dump``
shows it for maps with BTF.

============ ===================================================================
BTF kind     Python value
============ ===================================================================
int          ``int`` (signed or not as the type says); ``bool`` for bool types
enum         ``int``
float        ``float``
ptr          ``int`` (the address)
array        ``list`` of elements; ``bytes`` for arrays of ``char``/``u8``
struct       ``dict`` member name -> value (bitfields extracted); anonymous members
             are merged into their parent, as C accesses them
union        ``dict`` of every member's reading of the same bytes
============ ===================================================================
"""

from __future__ import annotations

import struct
from typing import Any, Literal

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.btf import Btf

__all__ = ["decode"]

_MAX_DEPTH = 32


def decode(btf: Btf, type_id: int, data: bytes, byteorder: str = "little") -> Any:
    """*data* read as BTF type *type_id*; ObjectError when it is too short for the type."""
    size = btf.size_of(type_id)
    if len(data) < size:
        raise ObjectError(f"{len(data)} bytes for a {size}-byte BTF type {type_id}")
    return _decode(btf, type_id, bytes(data[:size]), byteorder, 0)


def _decode(btf: Btf, type_id: int, data: bytes, order: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ObjectError("BTF type nesting too deep to decode")
    t = btf.resolve(type_id)
    endian: Literal["little", "big"] = "little" if order == "little" else "big"
    if t.kind == "int" and t.int_info is not None:
        if t.int_info.is_bool:
            return data != bytes(len(data))
        return int.from_bytes(data, endian, signed=t.int_info.signed)
    if t.kind in ("enum", "enum64"):
        return int.from_bytes(data, endian, signed=bool(t.kflag))
    if t.kind == "ptr":
        return int.from_bytes(data, endian)
    if t.kind == "float":
        fmt = {4: "f", 8: "d"}.get(len(data))
        if fmt is None:
            return data
        return struct.unpack(("<" if endian == "little" else ">") + fmt, data)[0]
    if t.kind == "array" and t.array is not None:
        elem = btf.resolve(t.array.type)
        step = btf.size_of(elem.id)
        if elem.kind == "int" and step == 1 and elem.int_info is not None \
                and not elem.int_info.is_bool:
            return data[: step * t.array.nelems]
        return [_decode(btf, elem.id, data[i * step:(i + 1) * step], order, depth + 1)
                for i in range(t.array.nelems)]
    if t.kind in ("struct", "union"):
        out: dict[str, Any] = {}
        for m in t.members:
            if m.bitfield_size:
                raw = int.from_bytes(data, endian)
                shift = m.bit_offset if endian == "little" else \
                    len(data) * 8 - m.bit_offset - m.bitfield_size
                value: Any = (raw >> shift) & ((1 << m.bitfield_size) - 1)
            else:
                start = m.bit_offset // 8
                msize = btf.size_of(m.type)
                value = _decode(btf, m.type, data[start:start + msize], order, depth + 1)
            if m.name:
                out[m.name] = value
            elif isinstance(value, dict):
                out.update(value)
        return out
    return data  # void, fwd, func: nothing to read the bytes as
