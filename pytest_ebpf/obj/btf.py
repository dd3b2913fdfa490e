"""A reader for BTF, the BPF Type Format carried in an eBPF object's ``.BTF`` section.

Only what the UAPI header ``include/uapi/linux/btf.h`` and ``Documentation/bpf/btf.rst``
describe is read; this is an independent implementation.

Layout of a ``.BTF`` blob (all integers in the object's byte order)::

    header   magic:u16=0xEB9F version:u8=1 flags:u8=0 hdr_len:u32
             type_off:u32 type_len:u32 str_off:u32 str_len:u32
    types    at hdr_len + type_off, type_len bytes of type records
    strings  at hdr_len + str_off, str_len bytes of NUL-terminated strings

Every type record starts with ``name_off:u32 info:u32 size_or_type:u32``; ``info`` holds
``vlen`` (bits 0-15), ``kind`` (bits 24-28) and ``kflag`` (bit 31). Some kinds follow this
with one fixed record and/or ``vlen`` repeated records (see ``_KINDS``). Type ids count
records from 1 in order; id 0 is ``void``.

``parse_btf`` validates everything it reads and raises
:class:`~pytest_ebpf.errors.ObjectError` for any malformed input.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

from pytest_ebpf.errors import ObjectError

__all__ = [
    "BTF_MAGIC",
    "KIND_NAMES",
    "Btf",
    "BtfArray",
    "BtfEnumValue",
    "BtfHeader",
    "BtfInt",
    "BtfMember",
    "BtfParam",
    "BtfType",
    "BtfVarSecinfo",
    "parse_btf",
]

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1

#: Struct formats (without the byte-order prefix) of the fixed parts of a BTF blob.
_HEADER_FORMAT = "HBBIIIII"  # magic version flags hdr_len type_off type_len str_off str_len
_HEADER_SIZE = struct.calcsize("<" + _HEADER_FORMAT)  # 24
_TYPE_FORMAT = "III"  # name_off info size_or_type
_TYPE_SIZE = struct.calcsize("<" + _TYPE_FORMAT)  # 12
_INFO_MASK = 0x9F00FFFF  # kflag (bit 31), kind (bits 24-28), vlen (bits 0-15)

#: ``size_or_type`` meaning per kind.
_SIZE = "size"
_TYPE = "type"
_NONE = ""


class _KindLayout(NamedTuple):
    """How one BTF kind is laid out after the common 12-byte ``btf_type`` record."""

    name: str
    #: what the third u32 of ``btf_type`` means: ``"size"``, ``"type"`` or ``""`` (unused)
    size_or_type: str
    #: struct format of one fixed record following ``btf_type`` ("" = none)
    extra: str
    #: struct format of each of the ``vlen`` records that follow ("" = none)
    per_vlen: str


#: BTF kinds by number: (name, meaning of size_or_type, fixed extra record, per-vlen record).
_KINDS: dict[int, _KindLayout] = {
    1: _KindLayout("int", _SIZE, "I", ""),  # encoding<<24 | offset<<16 | bits
    2: _KindLayout("ptr", _TYPE, "", ""),
    3: _KindLayout("array", _NONE, "III", ""),  # elem type, index type, nelems
    4: _KindLayout("struct", _SIZE, "", "III"),  # name_off, type, offset
    5: _KindLayout("union", _SIZE, "", "III"),
    6: _KindLayout("enum", _SIZE, "", "II"),  # name_off, val (u32 / s32 by kflag)
    7: _KindLayout("fwd", _NONE, "", ""),
    8: _KindLayout("typedef", _TYPE, "", ""),
    9: _KindLayout("volatile", _TYPE, "", ""),
    10: _KindLayout("const", _TYPE, "", ""),
    11: _KindLayout("restrict", _TYPE, "", ""),
    12: _KindLayout("func", _TYPE, "", ""),  # vlen = linkage
    13: _KindLayout("func_proto", _TYPE, "", "II"),  # name_off, type
    14: _KindLayout("var", _TYPE, "I", ""),  # linkage
    15: _KindLayout("datasec", _SIZE, "", "III"),  # var type, offset, size
    16: _KindLayout("float", _SIZE, "", ""),
    17: _KindLayout("decl_tag", _TYPE, "i", ""),  # component_idx (-1 = the type itself)
    18: _KindLayout("type_tag", _TYPE, "", ""),
    19: _KindLayout("enum64", _SIZE, "", "III"),  # name_off, val_lo32, val_hi32
}

#: Kind names by kind number (``"void"`` for the id-0 placeholder, which has no kind number).
KIND_NAMES: dict[int, str] = {num: layout.name for num, layout in _KINDS.items()}

#: BTF_INT_* encoding bits of an ``int`` type.
INT_SIGNED = 1 << 0
INT_CHAR = 1 << 1
INT_BOOL = 1 << 2

#: ``vlen`` of a ``func`` / ``linkage`` of a ``var``.
_FUNC_LINKAGE = ("static", "global", "extern")
_VAR_LINKAGE = ("static", "global", "extern")

#: Kinds ``Btf.resolve`` looks through.
_MODIFIERS = frozenset({"typedef", "volatile", "const", "restrict", "type_tag"})

#: Longest chain of references followed by ``resolve`` / ``size_of`` before giving up.
MAX_RESOLVE_DEPTH = 64




@dataclass(frozen=True)
class BtfHeader:
    """The ``.BTF`` header; offsets are relative to the end of the header (``hdr_len``)."""

    magic: int
    version: int
    flags: int
    hdr_len: int
    type_off: int
    type_len: int
    str_off: int
    str_len: int
    #: the byte order the blob was read in: ``"little"`` or ``"big"`` (the one the magic says)
    byteorder: str


@dataclass(frozen=True)
class BtfInt:
    """The extra data of an ``int`` type."""

    #: BTF_INT_* bits: 1 signed, 2 char, 4 bool
    encoding: int
    #: bit offset of the value inside its storage (0 in anything clang emits)
    offset: int
    #: number of value bits
    bits: int

    @property
    def signed(self) -> bool:
        return bool(self.encoding & INT_SIGNED)

    @property
    def is_char(self) -> bool:
        return bool(self.encoding & INT_CHAR)

    @property
    def is_bool(self) -> bool:
        return bool(self.encoding & INT_BOOL)


@dataclass(frozen=True)
class BtfMember:
    """A member of a ``struct`` or ``union``."""

    name: str
    type: int
    #: offset of the member from the start of the aggregate, in bits
    bit_offset: int
    #: width of a bitfield in bits; 0 for a member that is not a bitfield
    bitfield_size: int


@dataclass(frozen=True)
class BtfEnumValue:
    """An enumerator of an ``enum`` or ``enum64``.

    ``value`` is signed when the type's ``kflag`` is set (``BtfType.signed``), else unsigned;
    32 bits wide for ``enum``, 64 bits wide for ``enum64``.
    """

    name: str
    value: int


@dataclass(frozen=True)
class BtfArray:
    """The extra data of an ``array`` type."""

    #: element type id
    type: int
    #: index type id
    index_type: int
    #: number of elements
    nelems: int


@dataclass(frozen=True)
class BtfParam:
    """A parameter of a ``func_proto``; a last param with ``type == 0`` and no name means
    variadic (``...``)."""

    name: str
    type: int


@dataclass(frozen=True)
class BtfVarSecinfo:
    """One variable (or extern func) of a ``datasec``."""

    #: id of the ``var`` (or ``func`` for ``.ksyms``) type
    type: int
    #: offset inside the ELF section, in bytes (often 0 for every var before libbpf fixes it)
    offset: int
    #: size in bytes
    size: int


@dataclass(frozen=True)
class BtfType:
    """One BTF type. Fields that do not apply to the kind are ``None`` or empty.

    * ``id``: type id (index into ``Btf.types``); ``kind``: one of ``KIND_NAMES`` values or
      ``"void"`` for id 0; ``kind_num``: the raw kind number (0 for void).
    * ``name``: decoded name ("" when anonymous); ``name_off``: its string-table offset.
    * ``size``: byte size for int/struct/union/enum/enum64/float/datasec.
    * ``type``: referenced type id for ptr/typedef/volatile/const/restrict/type_tag (target),
      func (its func_proto), func_proto (return type, 0 = void), var (its type) and
      decl_tag (the tagged type).
    * ``vlen``, ``kflag``: the raw ``info`` fields (for ``func``, ``vlen`` is the linkage).
    * ``int_info``: int encoding/offset/bits; ``array``: elem/index type and nelems.
    * ``members``: struct/union members; ``enum_values``: enum/enum64 enumerators;
      ``params``: func_proto parameters; ``datasec_vars``: datasec variables.
    * ``linkage``: ``"static"``, ``"global"`` or ``"extern"`` for func and var.
    * ``component_idx``: for decl_tag, -1 for the type itself or the member/param index.
    """

    id: int
    kind: str
    name: str
    kind_num: int = 0
    name_off: int = 0
    vlen: int = 0
    kflag: bool = False
    size: int | None = None
    type: int | None = None
    int_info: BtfInt | None = None
    array: BtfArray | None = None
    members: tuple[BtfMember, ...] = ()
    enum_values: tuple[BtfEnumValue, ...] = ()
    params: tuple[BtfParam, ...] = ()
    datasec_vars: tuple[BtfVarSecinfo, ...] = ()
    linkage: str | None = None
    component_idx: int | None = None

    @property
    def signed(self) -> bool:
        """For enum/enum64: whether the values are signed (``kflag``); ints: the SIGNED bit."""
        if self.int_info is not None:
            return self.int_info.signed
        return self.kflag

    @property
    def fwd_kind(self) -> str | None:
        """For fwd: ``"union"`` when ``kflag`` is set, else ``"struct"``."""
        if self.kind != "fwd":
            return None
        return "union" if self.kflag else "struct"

    def referenced_ids(self) -> tuple[int, ...]:
        """Every type id this type refers to."""
        refs: list[int] = []
        if self.type is not None:
            refs.append(self.type)
        if self.array is not None:
            refs.extend((self.array.type, self.array.index_type))
        refs.extend(m.type for m in self.members)
        refs.extend(p.type for p in self.params)
        refs.extend(v.type for v in self.datasec_vars)
        return tuple(refs)


VOID = BtfType(id=0, kind="void", name="")


@dataclass(frozen=True)
class Btf:
    """A parsed ``.BTF`` section. ``types[i]`` is the type with id ``i``; ``types[0]`` is void."""

    header: BtfHeader
    types: tuple[BtfType, ...]
    #: the raw string section
    strings: bytes
    #: the blob as read, and where each type's record starts in it (by type id; 0 for void):
    #: what a loader needs to patch the blob for the kernel (:mod:`pytest_ebpf.obj.btf_edit`)
    raw: bytes = field(default=b"", repr=False, compare=False)
    record_offsets: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _by_name: dict[str, tuple[BtfType, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        index: dict[str, list[BtfType]] = {}
        for t in self.types[1:]:
            if t.name:
                index.setdefault(t.name, []).append(t)
        object.__setattr__(self, "_by_name", {k: tuple(v) for k, v in index.items()})

    def type(self, type_id: int) -> BtfType:
        """The type with this id (0 is void); ObjectError when there is none."""
        if not isinstance(type_id, int) or not 0 <= type_id < len(self.types):
            raise ObjectError(f"BTF type id {type_id!r} out of range (have {len(self.types)})")
        return self.types[type_id]

    def name(self, type_id: int) -> str:
        """The name of a type ("" when anonymous or void)."""
        return self.type(type_id).name

    def string(self, offset: int) -> str:
        """The NUL-terminated string at ``offset`` of the string section."""
        return _read_string(self.strings, offset, "string offset")

    def resolve(self, type_id: int) -> BtfType:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type."""
        t = self.type(type_id)
        for _ in range(MAX_RESOLVE_DEPTH):
            if t.kind not in _MODIFIERS:
                return t
            assert t.type is not None
            t = self.type(t.type)
        raise ObjectError(f"BTF type {type_id}: reference chain too long or looping")

    def size_of(self, type_id: int) -> int:
        """Size in bytes of a type, following typedef/modifier/var chains; arrays multiply,
        pointers are 8. ObjectError for void, fwd, func and func_proto (no size)."""
        multiplier = 1
        t = self.type(type_id)
        for _ in range(MAX_RESOLVE_DEPTH):
            if t.kind in _MODIFIERS or t.kind == "var":
                assert t.type is not None
                t = self.type(t.type)
            elif t.kind == "array":
                assert t.array is not None
                multiplier *= t.array.nelems
                t = self.type(t.array.type)
            elif t.kind == "ptr":
                return multiplier * 8
            elif t.size is not None:
                return multiplier * t.size
            else:
                raise ObjectError(f"BTF type {type_id}: {t.kind} (id {t.id}) has no size")
        raise ObjectError(f"BTF type {type_id}: reference chain too long or looping")

    def find(self, name: str, kind: str | None = None) -> BtfType | None:
        """The first type (lowest id) named ``name``, of ``kind`` when given; else None."""
        for t in self._by_name.get(name, ()):
            if kind is None or t.kind == kind:
                return t
        return None

    def find_all(self, name: str, kind: str | None = None) -> tuple[BtfType, ...]:
        """Every type named ``name`` (of ``kind`` when given), by id."""
        return tuple(t for t in self._by_name.get(name, ()) if kind is None or t.kind == kind)

    def funcs(self) -> tuple[BtfType, ...]:
        """Every ``func`` type, by id."""
        return tuple(t for t in self.types if t.kind == "func")

    def datasecs(self) -> tuple[BtfType, ...]:
        """Every ``datasec`` type, by id."""
        return tuple(t for t in self.types if t.kind == "datasec")


def _read_string(strings: bytes, offset: int, what: str) -> str:
    if not 0 <= offset < len(strings):
        raise ObjectError(f"BTF {what} {offset} outside the string section ({len(strings)} bytes)")
    end = strings.find(b"\0", offset)
    if end < 0:
        raise ObjectError(f"BTF {what} {offset}: string not NUL-terminated")
    try:
        return strings[offset:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ObjectError(f"BTF {what} {offset}: string is not valid UTF-8") from exc


def _byteorder_prefix(data: bytes, byteorder: str) -> str:
    """The struct prefix to read ``data`` with, after checking the magic."""
    if byteorder not in ("little", "big"):
        raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
    if len(data) < 2:
        raise ObjectError(f"BTF data too short for a magic number ({len(data)} bytes)")
    native, swapped = ("<", ">") if byteorder == "little" else (">", "<")
    (magic,) = struct.unpack_from(native + "H", data, 0)
    if magic == BTF_MAGIC:
        return native
    if magic == 0x9FEB:  # written in the other byte order
        return swapped
    raise ObjectError(f"bad BTF magic 0x{magic:04x} (expected 0x{BTF_MAGIC:04x})")


def _parse_header(data: bytes, byteorder: str, what: str = "BTF") -> tuple[str, BtfHeader]:
    prefix = _byteorder_prefix(data, byteorder)
    if len(data) < _HEADER_SIZE:
        raise ObjectError(f"{what} data too short for its header ({len(data)} bytes)")
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        prefix + _HEADER_FORMAT, data, 0
    )
    if version != BTF_VERSION:
        raise ObjectError(f"unsupported {what} version {version}")
    if flags != 0:
        raise ObjectError(f"unsupported {what} flags 0x{flags:x}")
    if hdr_len < _HEADER_SIZE or hdr_len > len(data):
        raise ObjectError(f"bad {what} hdr_len {hdr_len} (data is {len(data)} bytes)")
    header = BtfHeader(
        magic=magic,
        version=version,
        flags=flags,
        hdr_len=hdr_len,
        type_off=type_off,
        type_len=type_len,
        str_off=str_off,
        str_len=str_len,
        byteorder="little" if prefix == "<" else "big",
    )
    body = len(data) - hdr_len
    if type_off % 4:
        raise ObjectError(f"BTF type section offset {type_off} is not 4-byte aligned")
    if type_off + type_len > body:
        raise ObjectError(
            f"BTF type section [{type_off}, {type_off + type_len}) outside the data "
            f"({body} bytes after the header)"
        )
    if str_off + str_len > body:
        raise ObjectError(
            f"BTF string section [{str_off}, {str_off + str_len}) outside the data "
            f"({body} bytes after the header)"
        )
    if type_len and str_len and type_off < str_off + str_len and str_off < type_off + type_len:
        raise ObjectError("BTF type and string sections overlap")
    return prefix, header


def _decode_type(
    type_id: int,
    layout: _KindLayout,
    head: tuple[int, int, int],
    extra: tuple[int, ...],
    records: list[tuple[int, ...]],
    string: Callable[[int], str],
) -> BtfType:
    """Build the BtfType of one record: ``head`` is (name_off, info, size_or_type)."""
    name_off, info, size_or_type = head
    kind = layout.name
    vlen = info & 0xFFFF
    kflag = bool(info >> 31)
    size = size_or_type if layout.size_or_type == _SIZE else None
    ref = size_or_type if layout.size_or_type == _TYPE else None
    int_info: BtfInt | None = None
    array: BtfArray | None = None
    members: tuple[BtfMember, ...] = ()
    enum_values: tuple[BtfEnumValue, ...] = ()
    params: tuple[BtfParam, ...] = ()
    datasec_vars: tuple[BtfVarSecinfo, ...] = ()
    linkage: str | None = None
    component_idx: int | None = None
    if kind == "int":
        (raw,) = extra
        if raw & 0xF000FF00:  # bits 8-15 and 28-31 are reserved
            raise ObjectError(f"BTF type {type_id} (int): reserved bits set in 0x{raw:08x}")
        int_info = BtfInt(encoding=(raw >> 24) & 0x0F, offset=(raw >> 16) & 0xFF, bits=raw & 0xFF)
    elif kind == "array":
        array = BtfArray(type=extra[0], index_type=extra[1], nelems=extra[2])
    elif kind in ("struct", "union"):
        members = tuple(
            BtfMember(
                name=string(m_name),
                type=m_type,
                bit_offset=m_off & 0xFFFFFF if kflag else m_off,
                bitfield_size=m_off >> 24 if kflag else 0,
            )
            for m_name, m_type, m_off in records
        )
    elif kind == "enum":
        enum_values = tuple(
            BtfEnumValue(string(e_name), _signed(val, 32) if kflag else val)
            for e_name, val in records
        )
    elif kind == "enum64":
        enum_values = tuple(
            BtfEnumValue(string(e_name), _signed(hi << 32 | lo, 64) if kflag else hi << 32 | lo)
            for e_name, lo, hi in records
        )
    elif kind == "func":
        if vlen >= len(_FUNC_LINKAGE):
            raise ObjectError(f"BTF type {type_id} (func): unknown linkage {vlen}")
        linkage = _FUNC_LINKAGE[vlen]
    elif kind == "func_proto":
        params = tuple(BtfParam(string(p_name), p_type) for p_name, p_type in records)
    elif kind == "var":
        if extra[0] >= len(_VAR_LINKAGE):
            raise ObjectError(f"BTF type {type_id} (var): unknown linkage {extra[0]}")
        linkage = _VAR_LINKAGE[extra[0]]
    elif kind == "datasec":
        datasec_vars = tuple(BtfVarSecinfo(type=r[0], offset=r[1], size=r[2]) for r in records)
    elif kind == "decl_tag":
        component_idx = extra[0]
        if component_idx < -1:
            raise ObjectError(f"BTF type {type_id} (decl_tag): bad component_idx {component_idx}")
    # Equivalent to BtfType(...) with every field given, at a third of the cost: a frozen
    # dataclass's __init__ sets each of its 17 fields through object.__setattr__, and a BTF
    # section holds thousands of types.
    t = _new_type(BtfType)
    t.__dict__.update(
        id=type_id,
        kind=kind,
        name=string(name_off),
        kind_num=(info >> 24) & 0x1F,
        name_off=name_off,
        vlen=vlen,
        kflag=kflag,
        size=size,
        type=ref,
        int_info=int_info,
        array=array,
        members=members,
        enum_values=enum_values,
        params=params,
        datasec_vars=datasec_vars,
        linkage=linkage,
        component_idx=component_idx,
    )
    return t


_new_type = object.__new__


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def parse_btf(data: bytes, byteorder: str) -> Btf:
    """Parse a ``.BTF`` section.

    ``byteorder`` is the ELF file's (``"little"`` or ``"big"``); a blob whose magic reads
    byte-swapped in that order is read in the other order (``Btf.header.byteorder``).
    Raises ObjectError for anything malformed.
    """
    data = bytes(data)
    prefix, header = _parse_header(data, byteorder)
    base = header.hdr_len
    strings = data[base + header.str_off : base + header.str_off + header.str_len]
    type_data = data[base + header.type_off : base + header.type_off + header.type_len]
    if strings and strings[0] != 0:
        raise ObjectError("BTF string section does not start with an empty string")

    cache: dict[int, str] = {0: ""}

    def string(offset: int) -> str:
        s = cache.get(offset)
        if s is None:
            s = cache[offset] = _read_string(strings, offset, "name offset")
        return s

    type_struct = struct.Struct(prefix + _TYPE_FORMAT)
    formats: dict[str, struct.Struct] = {}

    def fmt(code: str) -> struct.Struct:
        s = formats.get(code)
        if s is None:
            s = formats[code] = struct.Struct(prefix + code)
        return s

    types: list[BtfType] = [VOID]
    starts = [0]
    pos = 0
    end = len(type_data)
    while pos < end:
        type_id = len(types)
        starts.append(base + header.type_off + pos)
        if pos + _TYPE_SIZE > end:
            raise ObjectError(f"BTF type {type_id} at offset {pos}: record truncated")
        name_off, info, size_or_type = type_struct.unpack_from(type_data, pos)
        pos += _TYPE_SIZE
        kind_num = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        layout = _KINDS.get(kind_num)
        if layout is None:
            raise ObjectError(f"BTF type {type_id}: unknown kind {kind_num}")
        if info & ~_INFO_MASK:
            raise ObjectError(f"BTF type {type_id}: reserved bits set in info 0x{info:08x}")
        extra: tuple[int, ...] = ()
        records: list[tuple[int, ...]] = []
        if layout.extra:
            st = fmt(layout.extra)
            if pos + st.size > end:
                raise ObjectError(
                    f"BTF type {type_id} ({layout.name}): record truncated at offset {pos}"
                )
            extra = st.unpack_from(type_data, pos)
            pos += st.size
        if layout.per_vlen and vlen:
            st = fmt(layout.per_vlen)
            if pos + st.size * vlen > end:
                raise ObjectError(
                    f"BTF type {type_id} ({layout.name}): {vlen} records run past the "
                    "end of the type section"
                )
            records = list(st.iter_unpack(type_data[pos : pos + st.size * vlen]))
            pos += st.size * vlen
        types.append(
            _decode_type(type_id, layout, (name_off, info, size_or_type), extra, records, string)
        )

    count = len(types)
    for t in types:
        simple = not (t.members or t.params or t.datasec_vars or t.array)
        if simple and (t.type is None or t.type < count):  # the common, quick case
            continue
        for ref in t.referenced_ids():
            if ref >= count:
                raise ObjectError(
                    f"BTF type {t.id} ({t.kind}) refers to type id {ref}, but there are "
                    f"only {count} types"
                )
    return Btf(header=header, types=tuple(types), strings=strings, raw=bytes(data),
               record_offsets=tuple(starts))
