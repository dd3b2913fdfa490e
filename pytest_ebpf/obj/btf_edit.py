"""Edits of a ``.BTF`` blob that loaders make before the kernel sees it (libbpf and Aya make
the same ones): what the compiler leaves to the loader, and what the kernel refuses.

Each takes the parsed :class:`~pytest_ebpf.obj.btf.Btf` (for where each record is) and returns
new bytes; :func:`datasec_layout` and :func:`static_functions` keep the layout (so they can be
chained on one blob), :func:`ksyms_as_vars` changes it and comes last.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.btf import Btf

__all__ = ["datasec_layout", "extern_vars_allocated", "ksyms_as_vars", "static_functions"]

_U32_MAX = 0xFFFFFFFF
_TYPE_FORMAT = "III"  # name_off info size_or_type
_TYPE_SIZE = 12
_VAR_KIND = 14


def datasec_layout(btf: Btf, section_sizes: Mapping[str, int],
               var_offsets: Mapping[tuple[str, str], int]) -> bytes:
    """The blob with what the compiler leaves to the loader filled in, as libbpf and Aya
    do: each DATASEC's size (0 in ``.o`` files) from ``section_sizes`` (by section name)
    and each variable's offset from ``var_offsets`` (by section and variable name).
    DATASECs of sections not given (externs) are left as they are. ObjectError when a
    size or an offset does not fit the u32 the kernel reads."""
    end = "<" if btf.header.byteorder == "little" else ">"
    blob = bytearray(btf.raw)
    for t in btf.types[1:]:
        if t.kind != "datasec" or t.name not in section_sizes:
            continue
        pos = btf.record_offsets[t.id]
        size = section_sizes[t.name]
        if size > _U32_MAX:
            raise ObjectError(f"section {t.name!r} is {size} bytes, more than its BTF "
                              "DATASEC can describe (4 GiB)")
        if t.size != size:
            struct.pack_into(end + "I", blob, pos + 8, size)
        for i, var in enumerate(t.datasec_vars):
            name = btf.types[var.type].name
            value = var_offsets.get((t.name, name)) if name else None
            if value is None:
                continue
            if value > _U32_MAX:
                raise ObjectError(f"symbol {name!r} of section {t.name!r} is at offset "
                                  f"{value}, more than its BTF DATASEC can describe (4 GiB)")
            struct.pack_into(end + "I", blob, pos + _TYPE_SIZE + i * 12 + 4, value)
    return bytes(blob)


def static_functions(btf: Btf, names: Collection[str], blob: bytes | None = None
                 ) -> tuple[bytes, tuple[str, ...]]:
    """*blob* (default: :attr:`raw`, or a same-layout copy such as
    :func:`datasec_layout` returns) with the global or extern FUNCs named in *names*
    made static, and the names changed. A global function is verified alone against its
    prototype; a static one in its caller's context."""
    end = "<" if btf.header.byteorder == "little" else ">"
    out = bytearray(btf.raw if blob is None else blob)
    changed = []
    for t in btf.types[1:]:
        if t.kind == "func" and t.linkage in ("global", "extern") and t.name in names:
            pos = btf.record_offsets[t.id] + 4  # the info word: vlen is the linkage
            (info,) = struct.unpack_from(end + "I", out, pos)
            struct.pack_into(end + "I", out, pos, info & ~0xFFFF)
            changed.append(t.name)
    return bytes(out), tuple(changed)


def ksyms_as_vars(btf: Btf, blob: bytes | None = None) -> tuple[bytes, int]:
    """*blob* (a same-layout copy of :attr:`raw`) with the ``.ksyms`` DATASEC made
    loadable, as libbpf makes it: its members are kfunc declarations (FUNCs, size 0),
    which the kernel refuses in a DATASEC; each becomes a 4-byte slot of one new ``int``
    VAR (appended, named as the first kfunc), and the DATASEC gets their size. Returns the
    blob and how many members were rewritten (0: nothing to do, the blob as it was)."""
    end = "<" if btf.header.byteorder == "little" else ">"
    out = bytearray(btf.raw if blob is None else blob)
    sec = btf.find(".ksyms", "datasec")
    if sec is None or not sec.datasec_vars:
        return bytes(out), 0
    int_id = next((t.id for t in btf.types[1:] if t.kind == "int" and t.size == 4), None)
    if int_id is None:
        return bytes(out), 0  # nothing to type the slots with: left to the kernel
    h = btf.header
    if h.str_off < h.type_off + h.type_len:
        return bytes(out), 0  # strings before types: not a layout compilers write
    types_end = h.hdr_len + h.type_off + h.type_len
    new_id = len(btf.types)
    name_off = btf.types[sec.datasec_vars[0].type].name_off
    var = struct.pack(end + _TYPE_FORMAT + "I", name_off, _VAR_KIND << 24, int_id, 0)  # VAR
    pos = btf.record_offsets[sec.id]
    n = len(sec.datasec_vars)
    struct.pack_into(end + "I", out, pos + 8, 4 * n)  # the DATASEC's size
    for i in range(n):
        struct.pack_into(end + "III", out, pos + _TYPE_SIZE + 12 * i, new_id, 4 * i, 4)
    out[types_end:types_end] = var
    struct.pack_into(end + "II", out, 12, h.type_len + len(var), h.str_off + len(var))
    return bytes(out), n


def extern_vars_allocated(btf: Btf, section: str, blob: bytes | None = None) -> bytes:
    """*blob* with the extern VARs of DATASEC *section* (``.kconfig``) made global allocated,
    as libbpf makes them once it has laid them out in a map: the kernel knows no extern VAR
    linkage. Keeps the layout."""
    end = "<" if btf.header.byteorder == "little" else ">"
    out = bytearray(btf.raw if blob is None else blob)
    sec = btf.find(section, "datasec")
    for member in sec.datasec_vars if sec is not None else ():
        var = btf.types[member.type]
        if var.kind == "var" and var.linkage == "extern":
            struct.pack_into(end + "I", out, btf.record_offsets[var.id] + _TYPE_SIZE, 1)
    return bytes(out)
