"""Map definitions: legacy ``maps`` sections and BTF-defined ``.maps`` sections.

Legacy definitions are C structs of ``u32`` fields in the ``maps`` section, one per map symbol:

* ``struct bpf_map_def`` (libbpf, old samples): ``type, key_size, value_size, max_entries,
  map_flags`` (20 bytes);
* Aya's ``bpf_map_def`` and iproute2's ``bpf_elf_map``: the same five followed by ``id`` and
  ``pinning`` (28 bytes). Larger definitions are read by their first seven fields.

BTF definitions (libbpf's ``__uint``/``__type``/``__array`` macros, Aya's ``#[btf_map]``) are
variables in ``.maps`` whose BTF type is a struct whose members encode the attributes in their
*types*: ``int (*type)[N]`` (pointer to an array of N ints) means ``type = N``; ``key`` and
``value`` point to the key and value types; ``values`` is an array of pointers to the inner map's
definition for map-in-map types. Older Aya releases wrap that struct in single-member structs
(``Array(UnsafeCell<ArrayDef<...>>)``), which are unwrapped here.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from pytest_ebpf.abi import MapType
from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.btf import Btf, BtfType
from pytest_ebpf.obj.elf import ElfSection, ElfSymbol
from pytest_ebpf.obj.model import Map

__all__ = [
    "MAP_TYPES",
    "map_type_name",
    "map_type_number",
    "parse_btf_maps",
    "parse_legacy_maps",
]

#: ``enum bpf_map_type`` numbers -> names without ``BPF_MAP_TYPE_``, lower case: a view of
#: :class:`pytest_ebpf.abi.MapType`.
MAP_TYPES: dict[int, str] = {int(m): m.label for m in MapType}

_LEGACY_MIN = 20  # five u32
_LEGACY_AYA = 28  # seven u32

# BTF map members whose value is encoded as ``int (*name)[value]``.
_INT_FIELDS = (
    "type",
    "max_entries",
    "map_flags",
    "key_size",
    "value_size",
    "pinning",
    "numa_node",
    "map_extra",
)
_MAX_WRAPPING = 4


def map_type_name(number: int) -> str:
    """``hash`` for 1, ``ringbuf`` for 27...; ``type#N`` for unknown numbers."""
    return MapType.label_of(number)


def map_type_number(name: str) -> int | None:
    """The number of a map type name (``hash`` -> 1), or None."""
    found = MapType.from_label(name)
    return None if found is None else int(found)


_U32_MAX = 0xFFFFFFFF


def _map_symbols(section: ElfSection, symbols: Iterable[ElfSymbol]) -> list[ElfSymbol]:
    """The named, non-section symbols defined in *section*, by offset."""
    out = [
        s
        for s in symbols
        if s.section_index == section.index and s.type not in ("section", "file") and s.name
    ]
    out.sort(key=lambda s: (s.value, s.name))
    return out


def parse_legacy_maps(
    section: ElfSection, symbols: Sequence[ElfSymbol], byteorder: str
) -> tuple[Map, ...]:
    """Maps defined in a legacy ``maps`` section."""
    syms = _map_symbols(section, symbols)
    if not syms:
        return ()
    end = "<" if byteorder == "little" else ">"
    data = section.data
    # Symbols without a size (very old compilers): split the section evenly, as loaders do.
    even = section.size // len(syms) if all(s.size == 0 for s in syms) else 0
    maps: list[Map] = []
    for sym in syms:
        size = sym.size or even
        if size < _LEGACY_MIN:
            raise ObjectError(
                f"legacy map {sym.name!r}: definition is {size} bytes, smaller than the "
                f"{_LEGACY_MIN}-byte struct bpf_map_def"
            )
        if sym.value + size > len(data):
            raise ObjectError(
                f"legacy map {sym.name!r}: definition at offset {sym.value} ({size} bytes) "
                f"extends past the end of section {section.name!r} ({len(data)} bytes)"
            )
        nfields = 7 if size >= _LEGACY_AYA else 5
        fields = struct.unpack_from(f"{end}{nfields}I", data, sym.value)
        type_id, key_size, value_size, max_entries, flags = fields[:5]
        maps.append(
            Map(
                name=sym.name,
                section=section.name,
                type=map_type_name(type_id),
                type_id=type_id,
                key_size=key_size,
                value_size=value_size,
                max_entries=max_entries,
                flags=flags,
                pinning=fields[6] if nfields == 7 else None,
                source="legacy",
                offset=sym.value,
                size=size,
                id=fields[5] if nfields == 7 else None,
            )
        )
    return tuple(maps)


def parse_btf_maps(
    section: ElfSection, symbols: Sequence[ElfSymbol], btf: Btf | None
) -> tuple[Map, ...]:
    """Maps defined in a BTF ``.maps`` section.

    Without BTF (an object built with ``-g0``) the definitions cannot be decoded: each map is
    returned with type ``unknown`` (``type_id`` 0) and zero sizes; the caller reports that.
    """
    syms = _map_symbols(section, symbols)
    if not syms:
        return ()
    if btf is None:
        return tuple(
            Map(
                name=s.name,
                section=section.name,
                type="unknown",
                type_id=0,
                key_size=0,
                value_size=0,
                max_entries=0,
                flags=0,
                pinning=None,
                source="btf",
                offset=s.value,
                size=s.size,
            )
            for s in syms
        )
    variables = _datasec_vars(btf, section.name)
    maps: list[Map] = []
    for sym in syms:
        var = variables.get(sym.name)
        if var is None:
            raise ObjectError(
                f"map {sym.name!r} in {section.name!r} has no BTF variable in the "
                f"{section.name!r} DATASEC"
            )
        if var.type is None:
            raise ObjectError(f"map {sym.name!r}: BTF variable {var.id} has no type")
        maps.append(
            _btf_map(btf, sym.name, var.type, section.name, offset=sym.value, size=sym.size)
        )
    return tuple(maps)


def _datasec_vars(btf: Btf, section_name: str) -> dict[str, BtfType]:
    out: dict[str, BtfType] = {}
    for sec in btf.datasecs():
        if sec.name != section_name:
            continue
        for info in sec.datasec_vars:
            var = btf.type(info.type)
            if var.kind == "var" and var.name:
                out.setdefault(var.name, var)
    return out


def _definition_struct(btf: Btf, type_id: int, what: str) -> BtfType:
    """The struct holding the map attributes, unwrapping single-member wrapper structs."""
    t = btf.resolve(type_id)
    for _ in range(_MAX_WRAPPING + 1):
        if t.kind not in ("struct", "union"):
            raise ObjectError(f"{what}: BTF type {t.id} is a {t.kind}, not a struct")
        names = {m.name for m in t.members}
        if "type" in names or len(t.members) != 1:
            return t
        t = btf.resolve(t.members[0].type)
    raise ObjectError(f"{what}: map definition nested too deeply in wrapper structs")


def _int_field(btf: Btf, member_type: int, what: str) -> int:
    """Decode ``int (*name)[N]`` -> N."""
    ptr = btf.resolve(member_type)
    if ptr.kind != "ptr" or ptr.type is None:
        raise ObjectError(f"{what} is a {ptr.kind}, not a pointer to an array (int (*)[N])")
    arr = btf.resolve(ptr.type)
    if arr.kind != "array" or arr.array is None:
        raise ObjectError(f"{what} points to a {arr.kind}, not to an array (int (*)[N])")
    return arr.array.nelems


def _pointee(btf: Btf, member_type: int, what: str) -> int:
    """``T *name`` -> the id of T."""
    ptr = btf.resolve(member_type)
    if ptr.kind != "ptr" or ptr.type is None:
        raise ObjectError(f"{what} is a {ptr.kind}, not a pointer to the type")
    return ptr.type


def _btf_map(
    btf: Btf,
    name: str,
    type_id: int,
    section: str,
    *,
    offset: int = 0,
    size: int = 0,
    depth: int = 0,
) -> Map:
    what = f"map {name!r}"
    struct_type = _definition_struct(btf, type_id, what)
    ints: dict[str, int] = {}
    key_type: int | None = None
    value_type: int | None = None
    inner: Map | None = None
    has_values = False
    for member in struct_type.members:
        mwhat = f"{what}: field {member.name!r}"
        if member.name in _INT_FIELDS:
            ints[member.name] = _int_field(btf, member.type, mwhat)
        elif member.name == "key":
            key_type = _pointee(btf, member.type, mwhat)
        elif member.name == "value":
            value_type = _pointee(btf, member.type, mwhat)
        elif member.name == "values":
            inner = _inner_map(btf, name, member.type, section, mwhat, depth)
            has_values = True
    if "type" not in ints:
        raise ObjectError(f"{what}: BTF definition has no 'type' field")
    key_size = ints.get("key_size", 0)
    value_size = ints.get("value_size", 0)
    # An explicit size wins over the type's (aya-ebpf's btf_maps RingBuf declares its record
    # type and value_size 0, which is what the kernel needs for a ring buffer)
    if key_type is not None and "key_size" not in ints:
        key_size = btf.size_of(key_type)
    if value_type is not None and "value_size" not in ints:
        value_size = btf.size_of(value_type)
    for field, bytes_ in (("key", key_size), ("value", value_size)):
        if bytes_ > _U32_MAX:
            raise ObjectError(
                f"{what}: the {field} type is {bytes_} bytes; a map's {field}_size is a 32-bit "
                "field of the bpf() call"
            )
    map_type = ints["type"]
    if has_values and value_size == 0:
        # ``__array(values, ...)``: the values are u32 fds, of inner maps (map-in-map) or of
        # programs (a PROG_ARRAY whose values point at functions), as libbpf sets them
        value_size = 4
    extra = tuple(
        (k, v)
        for k, v in ints.items()
        if k not in ("type", "max_entries", "map_flags", "key_size", "value_size", "pinning")
    )
    return Map(
        name=name,
        section=section,
        type=map_type_name(map_type),
        type_id=map_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=ints.get("max_entries", 0),
        flags=ints.get("map_flags", 0),
        pinning=ints.get("pinning"),
        source="btf",
        inner=inner,
        offset=offset,
        size=size,
        key_type_id=key_type,
        value_type_id=value_type,
        extra=extra,
    )


def _inner_map(
    btf: Btf, outer: str, member_type: int, section: str, what: str, depth: int
) -> Map | None:
    """Decode ``typeof(struct inner) *values[]`` into the inner map template."""
    arr = btf.resolve(member_type)
    if arr.kind != "array" or arr.array is None:
        raise ObjectError(f"{what} is a {arr.kind}, not an array of pointers to a map definition")
    ptr = btf.resolve(arr.array.type)
    if ptr.kind != "ptr" or ptr.type is None:
        raise ObjectError(f"{what}: array elements are {ptr.kind}, not pointers")
    target = btf.resolve(ptr.type)
    if target.kind not in ("struct", "union"):
        # e.g. prog_array ``values`` pointing at functions: no inner map.
        return None
    if depth >= _MAX_WRAPPING:
        raise ObjectError(f"{what}: map-in-map definitions nested too deeply")
    return _btf_map(btf, f"{outer}.inner", ptr.type, section, depth=depth + 1)
