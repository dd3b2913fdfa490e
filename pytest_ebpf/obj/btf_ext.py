"""A reader for ``.BTF.ext``: per-section function info, line info and CO-RE relocations.

Layout (integers in the object's byte order; offsets relative to the end of the header)::

    header   magic:u16=0xEB9F version:u8=1 flags:u8=0 hdr_len:u32
             func_info_off:u32 func_info_len:u32 line_info_off:u32 line_info_len:u32
             [core_relo_off:u32 core_relo_len:u32]     (present when hdr_len >= 32)

Each of the three info blocks is ``rec_size:u32`` followed by per-ELF-section groups
``sec_name_off:u32 num_info:u32`` + ``num_info`` records of ``rec_size`` bytes each (a
``rec_size`` larger than the record this reader knows is honoured by skipping the rest).
Every string offset (section names, file names, source lines, CO-RE access strings) points
into the string section of the matching ``.BTF``.

Instruction offsets (``insn_off``) are kept as stored in an object file: in **bytes** from the
start of the ELF section (libbpf divides them by 8 when it loads the program).
"""

from __future__ import annotations

import bisect
import functools
import struct
import sys
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, NamedTuple, TypeVar

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.btf import Btf, _byteorder_prefix

__all__ = [
    "CORE_RELO_KINDS",
    "BtfExt",
    "BtfExtHeader",
    "CoreRelo",
    "FuncInfo",
    "LineInfo",
    "line_for",
    "parse_btf_ext",
    "raw_line_info",
]

#: Header formats (without the byte-order prefix): the part every BTF.ext has and the
#: CO-RE extension that follows it when ``hdr_len`` is large enough.
_HEADER_FORMAT = "HBBIIIII"  # magic version flags hdr_len func_off func_len line_off line_len
_HEADER_SIZE = struct.calcsize("<" + _HEADER_FORMAT)  # 24
_CORE_HEADER_FORMAT = "II"  # core_relo_off core_relo_len
_CORE_HEADER_SIZE = _HEADER_SIZE + struct.calcsize("<" + _CORE_HEADER_FORMAT)  # 32

_SEC_HEADER_FORMAT = "II"  # sec_name_off num_info
_SEC_HEADER_SIZE = 8

#: Record formats of the three info blocks (their minimal ``rec_size``).
_FUNC_INFO_FORMAT = "II"  # insn_off type_id
_LINE_INFO_FORMAT = "IIII"  # insn_off file_name_off line_off line_col (line << 10 | col)
_CORE_RELO_FORMAT = "IIII"  # insn_off type_id access_str_off kind

#: ``enum bpf_core_relo_kind`` from the UAPI ``btf.h``/libbpf, by number.
CORE_RELO_KINDS: dict[int, str] = {
    0: "field_byte_offset",
    1: "field_byte_size",
    2: "field_exists",
    3: "field_signed",
    4: "field_lshift_u64",
    5: "field_rshift_u64",
    6: "type_id_local",
    7: "type_id_target",
    8: "type_exists",
    9: "type_size",
    10: "enumval_exists",
    11: "enumval_value",
    12: "type_matches",
}


@dataclass(frozen=True)
class BtfExtHeader:
    magic: int
    version: int
    flags: int
    hdr_len: int
    func_info_off: int
    func_info_len: int
    line_info_off: int
    line_info_len: int
    #: 0 when the header has no CO-RE part
    core_relo_off: int
    core_relo_len: int
    #: the byte order the blob was read in (the one its magic says)
    byteorder: str


@dataclass(frozen=True)
class FuncInfo:
    """A function starting at ``insn_off`` (bytes from its ELF section's start)."""

    insn_off: int
    #: id of the BTF ``func`` type
    type_id: int
    #: the BTF func's name
    name: str


@dataclass(frozen=True)
class LineInfo:
    """Source position of the instruction at ``insn_off`` (bytes) and following ones."""

    insn_off: int
    file_name: str
    #: the source line's text as the compiler recorded it
    line: str
    line_num: int
    col: int


@dataclass(frozen=True)
class CoreRelo:
    """A CO-RE relocation of the instruction at ``insn_off`` (bytes)."""

    insn_off: int
    #: the local BTF type id the access starts from
    type_id: int
    #: accessor spec such as ``"0:1:0"`` (member/array indices separated by ``:``)
    access_str: str
    #: a ``CORE_RELO_KINDS`` value, e.g. ``"field_byte_offset"``
    kind: str
    #: the raw kind number
    kind_num: int


@dataclass(frozen=True)
class BtfExt:
    """A parsed ``.BTF.ext``: read-only mappings from ELF section name to records in order."""

    header: BtfExtHeader
    func_info: Mapping[str, tuple[FuncInfo, ...]]
    line_info: Mapping[str, tuple[LineInfo, ...]]
    #: empty when the header has no CO-RE part
    core_relos: Mapping[str, tuple[CoreRelo, ...]]

    @functools.cached_property
    def _line_index(self) -> dict[str, tuple[list[int], list[LineInfo]]]:
        return {}  # section -> (sorted insn_off, records), filled per section on first use

    def line_at(self, section: str, insn_off: int) -> LineInfo | None:
        """The line_info record of *section* in force at byte offset *insn_off* (the last one
        at or before it), or None."""
        held = self._line_index.get(section)
        if held is None:
            records = sorted(self.line_info.get(section, ()), key=lambda e: e.insn_off)
            held = ([e.insn_off for e in records], records)
            self._line_index[section] = held
        offs, records = held
        i = bisect.bisect_right(offs, insn_off)
        return records[i - 1] if i else None


_R = TypeVar("_R")


class _Block(NamedTuple):
    name: str
    off: int
    length: int


def _parse_header(data: bytes, byteorder: str) -> tuple[str, BtfExtHeader]:
    prefix = _byteorder_prefix(data, byteorder)
    if len(data) < 8:
        raise ObjectError(f"BTF.ext data too short for its header ({len(data)} bytes)")
    (hdr_len,) = struct.unpack_from(prefix + "I", data, 4)
    if hdr_len < _HEADER_SIZE or hdr_len > len(data):
        raise ObjectError(f"bad BTF.ext hdr_len {hdr_len} (data is {len(data)} bytes)")
    magic, version, flags, _, f_off, f_len, l_off, l_len = struct.unpack_from(
        prefix + _HEADER_FORMAT, data, 0
    )
    if version != 1:
        raise ObjectError(f"unsupported BTF.ext version {version}")
    if flags != 0:
        raise ObjectError(f"unsupported BTF.ext flags 0x{flags:x}")
    c_off = c_len = 0
    if hdr_len >= _CORE_HEADER_SIZE:
        c_off, c_len = struct.unpack_from(prefix + _CORE_HEADER_FORMAT, data, _HEADER_SIZE)
    header = BtfExtHeader(
        magic=magic,
        version=version,
        flags=flags,
        hdr_len=hdr_len,
        func_info_off=f_off,
        func_info_len=f_len,
        line_info_off=l_off,
        line_info_len=l_len,
        core_relo_off=c_off,
        core_relo_len=c_len,
        byteorder="little" if prefix == "<" else "big",
    )
    return prefix, header


class _Span(NamedTuple):
    """``number`` records of ``rec_size`` bytes from ``pos`` in a block, for one ELF section."""

    pos: int
    number: int


def _scan_block(
    data: bytes, prefix: str, block: _Block, record_format: str, btf: Btf
) -> tuple[bytes, int, dict[str, list[_Span]]]:
    """Check one info block of ``data`` (the bytes after the header) and find its records: the
    block's bytes, its record size and the record spans of every ELF section."""
    what = f"BTF.ext {block.name}"
    if block.off % 4:
        raise ObjectError(f"{what} offset {block.off} is not 4-byte aligned")
    if block.off + block.length > len(data):
        raise ObjectError(
            f"{what} [{block.off}, {block.off + block.length}) outside the data "
            f"({len(data)} bytes after the header)"
        )
    blob = data[block.off : block.off + block.length]
    if len(blob) < 4:
        raise ObjectError(f"{what} too short for its record size")
    minimum = struct.calcsize(prefix + record_format)
    sec_header = struct.Struct(prefix + _SEC_HEADER_FORMAT)
    (rec_size,) = struct.unpack_from(prefix + "I", blob, 0)
    if rec_size < minimum or rec_size % 4:
        raise ObjectError(f"{what}: bad record size {rec_size} (minimum {minimum})")
    spans: dict[str, list[_Span]] = {}
    pos = 4
    while pos < len(blob):
        if pos + _SEC_HEADER_SIZE > len(blob):
            raise ObjectError(f"{what}: section header at offset {pos} truncated")
        name_off, count = sec_header.unpack_from(blob, pos)
        pos += _SEC_HEADER_SIZE
        section = _string(btf, name_off, f"{what} section name")
        if count * rec_size > len(blob) - pos:
            raise ObjectError(
                f"{what}: section {section!r} has {count} records of {rec_size} bytes, "
                f"past the end of the block"
            )
        spans.setdefault(section, []).append(_Span(pos, count))
        pos += count * rec_size
    return blob, rec_size, spans


def _records(
    blob: bytes, prefix: str, rec_size: int, record_format: str, spans: list[_Span]
) -> Iterator[tuple[int, ...]]:
    """The raw records of ``spans``, in order."""
    record = struct.Struct(prefix + record_format)
    for span in spans:
        if rec_size == record.size:
            yield from record.iter_unpack(blob[span.pos : span.pos + span.number * rec_size])
        else:  # longer records than this reader knows: skip their tails
            for k in range(span.number):
                yield record.unpack_from(blob, span.pos + k * rec_size)


def _parse_block(
    data: bytes,
    prefix: str,
    block: _Block,
    record_format: str,
    btf: Btf,
    make: Callable[[tuple[int, ...]], _R],
) -> Mapping[str, tuple[_R, ...]]:
    """Parse one info block of ``data`` (the bytes after the header), every record now."""
    if block.length == 0:
        return MappingProxyType({})
    blob, rec_size, spans = _scan_block(data, prefix, block, record_format, btf)
    return MappingProxyType(
        {
            name: tuple(make(r) for r in _records(blob, prefix, rec_size, record_format, sp))
            for name, sp in spans.items()
        }
    )


class _LazyLines(Mapping[str, "tuple[LineInfo, ...]"]):
    """line_info by ELF section, each section's records built on first access.

    Line info is the biggest part of an object's ``.BTF.ext`` (about one record per two
    instructions) and only failure messages read it, so :func:`parse_btf_ext` checks it
    completely (layout and every string offset) but builds the :class:`LineInfo` records of a
    section only when asked for them.
    """

    def __init__(
        self, blob: bytes, prefix: str, rec_size: int, spans: dict[str, list[_Span]], btf: Btf
    ) -> None:
        self._blob = blob
        self._prefix = prefix
        self._rec_size = rec_size
        self._spans = spans
        self._btf = btf
        self._built: dict[str, tuple[LineInfo, ...]] = {}

    def raw(self, section: str) -> Iterator[tuple[int, ...]]:
        """The undecoded records of *section*: ``(insn_off, file_name_off, line_off,
        line_col)``."""
        return _records(
            self._blob, self._prefix, self._rec_size, _LINE_INFO_FORMAT,
            self._spans.get(section, []),
        )

    def _words(self, section: str) -> array[int]:
        """The records of *section* as 32-bit words in native order (C speed: no tuples)."""
        words: array[int] = array("I")
        for span in self._spans.get(section, []):
            words.frombytes(self._blob[span.pos : span.pos + span.number * self._rec_size])
        if (self._prefix == "<") != (sys.byteorder == "little"):
            words.byteswap()
        return words

    def check(self) -> None:
        """Raise ObjectError when a record names a string the string section does not hold."""
        files: set[int] = set()
        lines: set[int] = set()
        for section in self._spans:
            words = self._words(section)
            step = self._rec_size // 4
            files.update(words[1::step])
            lines.update(words[2::step])
        for off in sorted(files):
            _string(self._btf, off, "BTF.ext line_info file name")
        for off in sorted(lines):
            _string(self._btf, off, "BTF.ext line_info line")

    def __getitem__(self, section: str) -> tuple[LineInfo, ...]:
        found = self._built.get(section)
        if found is None:
            if section not in self._spans:
                raise KeyError(section)
            strings: dict[int, str] = {}
            btf = self._btf

            def text(off: int) -> str:
                value = strings.get(off)
                if value is None:
                    value = strings[off] = btf.string(off)
                return value

            found = tuple(
                LineInfo(r[0], text(r[1]), text(r[2]), r[3] >> 10, r[3] & 0x3FF)
                for r in self.raw(section)
            )
            self._built[section] = found
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)


def _string(btf: Btf, offset: int, what: str) -> str:
    try:
        return btf.string(offset)
    except ObjectError as exc:
        raise ObjectError(f"{what}: {exc.reason}") from exc


def parse_btf_ext(data: bytes, byteorder: str, btf: Btf) -> BtfExt:
    """Parse a ``.BTF.ext`` section whose strings and type ids refer to ``btf``.

    ``byteorder`` is the ELF file's; a byte-swapped magic is detected and honoured.
    Raises ObjectError for anything malformed.
    """
    data = bytes(data)
    prefix, header = _parse_header(data, byteorder)
    body = data[header.hdr_len :]

    def func_type(type_id: int, what: str) -> str:
        if not 0 < type_id < len(btf.types):
            raise ObjectError(f"BTF.ext {what}: type id {type_id} out of range")
        t = btf.types[type_id]
        if t.kind != "func":
            raise ObjectError(f"BTF.ext {what}: type {type_id} is a {t.kind}, not a func")
        return t.name

    def make_func(r: tuple[int, ...]) -> FuncInfo:
        return FuncInfo(insn_off=r[0], type_id=r[1], name=func_type(r[1], "func_info"))

    def make_core(r: tuple[int, ...]) -> CoreRelo:
        insn_off, type_id, access_off, kind_num = r
        if not 0 <= type_id < len(btf.types):
            raise ObjectError(f"BTF.ext core_relo: type id {type_id} out of range")
        kind = CORE_RELO_KINDS.get(kind_num)
        if kind is None:
            raise ObjectError(f"BTF.ext core_relo: unknown relocation kind {kind_num}")
        access = _string(btf, access_off, "BTF.ext core_relo access string")
        return CoreRelo(insn_off, type_id, access, kind, kind_num)

    func_info = _parse_block(
        body,
        prefix,
        _Block("func_info", header.func_info_off, header.func_info_len),
        _FUNC_INFO_FORMAT,
        btf,
        make_func,
    )
    line_info: Mapping[str, tuple[LineInfo, ...]] = MappingProxyType({})
    if header.line_info_len:
        blob, rec_size, spans = _scan_block(
            body,
            prefix,
            _Block("line_info", header.line_info_off, header.line_info_len),
            _LINE_INFO_FORMAT,
            btf,
        )
        lines = _LazyLines(blob, prefix, rec_size, spans, btf)
        lines.check()
        line_info = lines
    core_relos = _parse_block(
        body,
        prefix,
        _Block("core_relo", header.core_relo_off, header.core_relo_len),
        _CORE_RELO_FORMAT,
        btf,
        make_core,
    )
    return BtfExt(header=header, func_info=func_info, line_info=line_info, core_relos=core_relos)


def raw_line_info(ext: BtfExt, section: str) -> list[tuple[int, int, int, int]]:
    """The line_info records of *section* as stored: ``(insn_off, file_name_off, line_off,
    line_col)`` (string offsets into the ``.BTF`` string section, as the kernel wants them)."""
    lines = ext.line_info
    if isinstance(lines, _LazyLines):
        return [(r[0], r[1], r[2], r[3]) for r in lines.raw(section)]
    return []  # no line_info block


def line_for(ext: BtfExt, section: str, insn_byte_off: int) -> LineInfo | None:
    """The line_info entry of ``section`` that covers the instruction at ``insn_byte_off``.

    That is the entry with the greatest ``insn_off`` at or before the offset (the last of
    those when several share it); None when the section has no such entry.
    """
    entries = ext.line_info.get(section, ())
    if not entries:
        return None
    ordered = sorted(entries, key=lambda e: e.insn_off)  # stable: ties keep file order
    i = bisect.bisect_right([e.insn_off for e in ordered], insn_byte_off)
    return ordered[i - 1] if i else None
