"""A raw, validated view of an eBPF ELF relocatable object.

The file is read with :mod:`struct` and the byte-layout tables below (ELF64, either byte
order), the way ``packaging``'s ``_elffile`` reads ELF headers: no third-party parser. This keeps
``pytest-ebpf inspect`` fast (importing pyelftools alone costs about half of llvm-objdump's time
on a 60,000-instruction object); the test suite cross-checks this reader against pyelftools.
Relocation sections are decoded on first access to their target section. Everything that can go
wrong while reading a file is reported as one :class:`~pytest_ebpf.errors.ObjectError`: every
offset, size, count and index is checked before it is used (there is no blanket ``except``, so
any other exception is a bug of this module).

The result, :class:`ElfImage`, is plain data (frozen dataclasses, bytes and tuples).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.file import read_object_file

__all__ = [
    "EM_BPF",
    "R_BPF_64_32",
    "R_BPF_64_64",
    "R_BPF_64_ABS32",
    "R_BPF_64_ABS64",
    "R_BPF_64_NODYLD32",
    "R_BPF_NONE",
    "SHF_ALLOC",
    "SHF_EXECINSTR",
    "SHF_WRITE",
    "ElfImage",
    "ElfReloc",
    "ElfSection",
    "ElfSymbol",
    "read_elf",
]

Byteorder = Literal["little", "big"]

EM_BPF = 247

# Relocation types of the BPF backend (see llvm/BinaryFormat/ELFRelocs/BPF.def).
R_BPF_NONE = 0
R_BPF_64_64 = 1  # ld_imm64 (map, global data or function address)
R_BPF_64_ABS64 = 2  # 64-bit absolute (data, .BTF/.BTF.ext, DWARF)
R_BPF_64_ABS32 = 3  # 32-bit absolute (data, DWARF)
R_BPF_64_NODYLD32 = 4  # 32-bit, only for .BTF/.BTF.ext line and func info
R_BPF_64_32 = 10  # call imm (BPF-to-BPF call or call to an extern function)

SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4

# --- byte layout (ELF64; the byte order comes from e_ident[EI_DATA]) --------------------------

_EI_NIDENT = 16
#: the ELF header after e_ident: e_type e_machine e_version e_entry e_phoff e_shoff e_flags
#: e_ehsize e_phentsize e_phnum e_shentsize e_shnum e_shstrndx
_EHDR_FORMAT = "HHIQQQIHHHHHH"
#: a section header: sh_name sh_type sh_flags sh_addr sh_offset sh_size sh_link sh_info
#: sh_addralign sh_entsize
_SHDR_FORMAT = "IIQQQQIIQQ"
_SHDR_SIZE = 64
_SH_OFFSET, _SH_SIZE, _SH_LINK = 4, 5, 6  # positions in a section header tuple
_SHN_XINDEX = 0xFFFF

#: sh_type -> name (the gABI's and GNU's, lower case without ``SHT_``)
_SECTION_TYPES: dict[int, str] = {
    0: "null", 1: "progbits", 2: "symtab", 3: "strtab", 4: "rela", 5: "hash", 6: "dynamic",
    7: "note", 8: "nobits", 9: "rel", 10: "shlib", 11: "dynsym", 14: "init_array",
    15: "fini_array", 16: "preinit_array", 17: "group", 18: "symtab_shndx", 19: "relr",
    0x6FFFFFF5: "gnu_attributes", 0x6FFFFFF6: "gnu_hash", 0x6FFFFFF7: "gnu_liblist",
    0x6FFFFFFD: "gnu_verdef", 0x6FFFFFFE: "gnu_verneed", 0x6FFFFFFF: "gnu_versym",
}
#: e_type -> name (lower case without ``ET_``)
_ELF_TYPES: dict[int, str] = {0: "none", 1: "rel", 2: "exec", 3: "dyn", 4: "core"}

_SHT_NOBITS = 8
_SHT_SYMTAB = 2
_SHT_RELA = 4
_SHT_REL = 9

_SHN_UNDEF = 0
_SHN_LORESERVE = 0xFF00

_SYMBOL_TYPES = {
    0: "notype", 1: "object", 2: "func", 3: "section", 4: "file", 5: "common", 6: "tls"
}
_SYMBOL_BINDS = {0: "local", 1: "global", 2: "weak"}
_VISIBILITIES = {0: "default", 1: "internal", 2: "hidden", 3: "protected"}


@dataclass(frozen=True)
class ElfSection:
    """One entry of the section header table."""

    index: int
    """Position in the section header table (0 is the null section)."""
    name: str
    """Section name from the section header string table."""
    type: str
    """Section type without the ``SHT_`` prefix, lower case: ``progbits``, ``nobits``, ``rel``,
    ``rela``, ``symtab``, ``strtab``... (``type#N`` for a number without a standard name)."""
    flags: int
    """``sh_flags`` (see :data:`SHF_ALLOC`, :data:`SHF_EXECINSTR`, :data:`SHF_WRITE`)."""
    size: int
    """``sh_size`` in bytes (also for ``nobits`` sections, whose :attr:`data` is empty)."""
    data: bytes = field(repr=False)
    """The section contents; ``b""`` for ``nobits`` sections."""
    alignment: int
    """``sh_addralign``."""
    link: int = 0
    """``sh_link``."""
    info: int = 0
    """``sh_info`` (for relocation sections: the index of the section they apply to)."""
    entsize: int = 0
    """``sh_entsize``."""

    @property
    def executable(self) -> bool:
        """True for sections holding instructions (``SHF_EXECINSTR``)."""
        return bool(self.flags & SHF_EXECINSTR)

    @property
    def alloc(self) -> bool:
        """True for sections that occupy memory at run time (``SHF_ALLOC``)."""
        return bool(self.flags & SHF_ALLOC)


@dataclass(frozen=True)
class ElfSymbol:
    """One entry of the symbol table."""

    index: int
    """Position in the symbol table (relocations refer to symbols by this index)."""
    name: str
    """Symbol name (``""`` for unnamed symbols; section symbols are given their section name)."""
    value: int
    """``st_value``: the offset in bytes inside its section for a relocatable object."""
    size: int
    """``st_size`` in bytes."""
    type: str
    """``func``, ``object``, ``section``, ``notype``, ``file``, ``common``, ``tls`` or
    ``type#N``."""
    bind: str
    """``local``, ``global``, ``weak`` or ``bind#N``."""
    section_index: int | None
    """Index of the section the symbol is defined in; None for undefined (UND), absolute (ABS),
    common and other reserved section indices."""
    visibility: str = "default"
    """``default``, ``internal``, ``hidden`` or ``protected``."""
    shndx: int = 0
    """The raw ``st_shndx`` (0 for UND, 0xfff1 for ABS...)."""

    @property
    def defined(self) -> bool:
        """True when the symbol is defined in a section of this object."""
        return self.section_index is not None

    @property
    def undefined(self) -> bool:
        """True for an undefined (extern) symbol: ``st_shndx == SHN_UNDEF``."""
        return self.shndx == _SHN_UNDEF


@dataclass(frozen=True)
class ElfReloc:
    """One relocation entry (from a ``REL`` or a ``RELA`` section)."""

    offset: int
    """``r_offset``: the byte offset inside the target section."""
    type: int
    """The relocation type, e.g. :data:`R_BPF_64_64` or :data:`R_BPF_64_32`."""
    symbol: int
    """Index into :attr:`ElfImage.symbols`."""
    addend: int | None = None
    """``r_addend`` for ``RELA`` entries; None for ``REL`` entries (BPF uses ``REL``: the addend
    is in the instruction's immediate)."""


@dataclass(frozen=True)
class ElfImage:
    """The raw contents of an ELF file that matter for eBPF objects."""

    path: str | None
    """The file that was read (None when read from bytes without a name)."""
    byteorder: Byteorder
    """``little`` or ``big``."""
    machine: int
    """``e_machine`` (always :data:`EM_BPF`, 247, once :func:`read_elf` accepted the file)."""
    elf_type: str
    """``e_type`` without ``ET_``, lower case: ``rel`` for relocatable objects."""
    sections: tuple[ElfSection, ...]
    """Every section, indexed by section index (``sections[0]`` is the null section)."""
    symbols: tuple[ElfSymbol, ...]
    """The symbol table, indexed by symbol index (``symbols[0]`` is the null symbol); empty when
    the object has no ``.symtab``."""
    relocations: Mapping[int, tuple[ElfReloc, ...]] = field(repr=False, compare=False)
    """Relocations by the index of the section they apply to, in file order (decoded on first
    access to a section's entries; a corrupt entry raises :class:`ObjectError` then)."""

    def section(self, name: str) -> ElfSection | None:
        """The first section called *name*, or None."""
        for sec in self.sections:
            if sec.name == name:
                return sec
        return None

    def section_by_index(self, index: int) -> ElfSection | None:
        """The section at *index*, or None when out of range."""
        if 0 <= index < len(self.sections):
            return self.sections[index]
        return None


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_elf(
    source: str | os.PathLike[str] | bytes,
    name: str | None = None,
    max_size: int | str | None = None,
) -> ElfImage:
    """Read and validate an eBPF ELF object from a path or from bytes.

    *name* labels the object in error messages when *source* is bytes. A path is read with
    :func:`~pytest_ebpf.obj.file.read_object_file`: regular files only, at most *max_size*
    bytes. Raises :class:`ObjectError` for anything that is not a readable 64-bit ``EM_BPF``
    ELF file.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name
    else:
        label = name if name is not None else os.fspath(source)
        try:
            data = read_object_file(source, max_size)
        except ObjectError as exc:
            raise ObjectError(exc.reason, label) from exc
    return _parse(data, label)


def _parse(data: bytes, label: str | None) -> ElfImage:
    if not data:
        raise ObjectError("empty file (0 bytes), not an ELF object", label)
    if len(data) < 4 and b"\x7fELF".startswith(data):
        raise ObjectError(f"truncated ELF file ({len(data)} bytes)", label)
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise ObjectError(f"not an ELF file (bad magic {data[:4]!r})", label)
    if len(data) < 64:
        raise ObjectError(f"truncated ELF header ({len(data)} bytes)", label)
    ei_class, ei_data = data[4], data[5]
    if ei_class == 1:
        raise ObjectError("32-bit ELF file; eBPF objects are ELF64", label)
    if ei_class != 2:
        raise ObjectError(f"invalid ELF class {ei_class}", label)
    if ei_data not in (1, 2):
        raise ObjectError(f"invalid ELF data encoding {ei_data}", label)
    byteorder: Byteorder = "little" if ei_data == 1 else "big"
    end = "<" if byteorder == "little" else ">"
    (machine,) = struct.unpack_from(end + "H", data, 18)
    if machine != EM_BPF:
        raise ObjectError(
            f"not an eBPF object: e_machine is {machine} ({_machine_name(machine)}), "
            f"expected {EM_BPF} (EM_BPF)",
            label,
        )

    (elf_type, _, _, _, _, shoff, _, _, _, _, shentsize, shnum, shstrndx) = struct.unpack_from(
        end + _EHDR_FORMAT, data, _EI_NIDENT
    )
    if shoff and shentsize != _SHDR_SIZE:
        raise ObjectError(
            f"bad section header entry size {shentsize} (expected {_SHDR_SIZE})", label
        )
    if shoff <= 0 or shoff + _SHDR_SIZE > len(data):
        if shoff == 0:
            raise ObjectError("the ELF file has no section header table", label)
        raise ObjectError(
            f"section header table (offset {shoff}) lies outside the file ({len(data)} bytes); "
            "the file is truncated or corrupt",
            label,
        )
    shdr = struct.Struct(end + _SHDR_FORMAT)
    first = shdr.unpack_from(data, shoff)
    if shnum == 0:  # more than 0xff00 sections: the count is section 0's sh_size
        shnum = first[_SH_SIZE]
    if shstrndx == _SHN_XINDEX:  # the index is section 0's sh_link
        shstrndx = first[_SH_LINK]
    if shnum == 0:
        raise ObjectError("the ELF file has no section header table", label)
    if shoff + shnum * _SHDR_SIZE > len(data):
        raise ObjectError(
            f"section header table (offset {shoff}, {shnum} entries) lies outside the file "
            f"({len(data)} bytes); the file is truncated or corrupt",
            label,
        )
    if not 0 < shstrndx < shnum:
        raise ObjectError(f"bad section name string table index {shstrndx}", label)

    raw_headers = [shdr.unpack_from(data, shoff + i * _SHDR_SIZE) for i in range(shnum)]
    shstr = _section_bytes(data, raw_headers[shstrndx], shstrndx, label)

    sections: list[ElfSection] = []
    for index, hdr in enumerate(raw_headers):
        name_off, sh_type, flags, _, _, size, link, info, align, entsize = hdr
        sec_name = _cstring(shstr, name_off, "section name", label)
        if index == 0 or sh_type == _SHT_NOBITS:
            sec_data = b""
        else:
            sec_data = _section_bytes(data, hdr, index, label, sec_name)
        sections.append(
            ElfSection(
                index=index,
                name=sec_name,
                type=_SECTION_TYPES.get(sh_type) or f"type#{sh_type}",
                flags=flags,
                size=size,
                data=sec_data,
                alignment=align,
                link=link,
                info=info,
                entsize=entsize,
            )
        )

    symtabs = [s for s in sections if _type_number_from_name(s.type) == _SHT_SYMTAB]
    if len(symtabs) > 1:
        raise ObjectError(f"{len(symtabs)} symbol tables (expected at most one)", label)
    symbols: tuple[ElfSymbol, ...] = ()
    if symtabs:
        symbols = _read_symbols(symtabs[0], sections, end, label)

    sources: dict[int, list[ElfSection]] = {}
    for sec in sections:
        kind = _type_number_from_name(sec.type)
        if kind not in (_SHT_REL, _SHT_RELA):
            continue
        target = sec.info
        if not 0 < target < len(sections):
            raise ObjectError(
                f"relocation section {sec.name!r} applies to section {target}, which does not "
                f"exist ({len(sections)} sections)",
                label,
            )
        if symtabs and sec.link != symtabs[0].index:
            raise ObjectError(
                f"relocation section {sec.name!r} links to section {sec.link}, not to the "
                "symbol table",
                label,
            )
        entsize = 24 if kind == _SHT_RELA else 16
        if len(sec.data) % entsize:
            raise ObjectError(
                f"relocation section {sec.name!r} size {len(sec.data)} is not a multiple of "
                f"{entsize} bytes",
                label,
            )
        sources.setdefault(target, []).append(sec)

    return ElfImage(
        path=label,
        byteorder=byteorder,
        machine=machine,
        elf_type=_ELF_TYPES.get(elf_type) or f"type#{elf_type}",
        sections=tuple(sections),
        symbols=symbols,
        relocations=_Relocations(sources, end, len(symbols), label),
    )


_MACHINES = {0: "none", 3: "x86", 40: "ARM", 62: "x86-64", 183: "AArch64", 243: "RISC-V"}


def _machine_name(machine: int) -> str:
    return _MACHINES.get(machine, "unknown machine")


_TYPE_NUMBERS = {"symtab": _SHT_SYMTAB, "rel": _SHT_REL, "rela": _SHT_RELA, "nobits": _SHT_NOBITS}


def _type_number_from_name(name: str) -> int:
    return _TYPE_NUMBERS.get(name, -1)


def _section_bytes(
    data: bytes, hdr: tuple[int, ...], index: int, label: str | None, name: str | None = None
) -> bytes:
    offset, size = hdr[_SH_OFFSET], hdr[_SH_SIZE]
    if offset < 0 or size < 0 or offset + size > len(data):
        what = f"section {index} ({name!r})" if name is not None else f"section {index}"
        raise ObjectError(
            f"{what} (offset {offset}, size {size}) extends past the end of the file "
            f"({len(data)} bytes); the file is truncated or corrupt",
            label,
        )
    return data[offset : offset + size]


def _cstring(table: bytes, offset: int, what: str, label: str | None) -> str:
    if offset >= len(table) and not (offset == 0 and not table):
        raise ObjectError(
            f"{what} offset {offset} is outside its string table ({len(table)} bytes)", label
        )
    end = table.find(b"\0", offset)
    if end < 0:
        raise ObjectError(f"{what} at offset {offset} is not NUL-terminated", label)
    return table[offset:end].decode("utf-8", errors="replace")


def _read_symbols(
    symtab: ElfSection, sections: list[ElfSection], end: str, label: str | None
) -> tuple[ElfSymbol, ...]:
    if symtab.entsize not in (0, 24):
        raise ObjectError(f"bad symbol table entry size {symtab.entsize} (expected 24)", label)
    if len(symtab.data) % 24:
        raise ObjectError(
            f"symbol table size {len(symtab.data)} is not a multiple of 24 bytes", label
        )
    if not 0 < symtab.link < len(sections):
        raise ObjectError(f"symbol table links to missing string table {symtab.link}", label)
    strtab = sections[symtab.link].data
    nsections = len(sections)
    out: list[ElfSymbol] = []
    fmt = end + "IBBHQQ"
    for index, (st_name, st_info, st_other, st_shndx, st_value, st_size) in enumerate(
        struct.iter_unpack(fmt, symtab.data)
    ):
        sym_type = _SYMBOL_TYPES.get(st_info & 0xF, f"type#{st_info & 0xF}")
        section_index: int | None = None
        if st_shndx != _SHN_UNDEF and st_shndx < _SHN_LORESERVE:
            if st_shndx >= nsections:
                raise ObjectError(
                    f"symbol {index} refers to section {st_shndx}, which does not exist "
                    f"({nsections} sections)",
                    label,
                )
            section_index = st_shndx
            _check_symbol_extent(sections[st_shndx], index, st_value, st_size, label)
        name = _cstring(strtab, st_name, f"name of symbol {index}", label) if st_name else ""
        if not name and sym_type == "section" and section_index is not None:
            name = sections[section_index].name
        out.append(
            ElfSymbol(
                index=index,
                name=name,
                value=st_value,
                size=st_size,
                type=sym_type,
                bind=_SYMBOL_BINDS.get(st_info >> 4, f"bind#{st_info >> 4}"),
                section_index=section_index,
                visibility=_VISIBILITIES[st_other & 3],
                shndx=st_shndx,
            )
        )
    return tuple(out)


def _check_symbol_extent(
    sec: ElfSection, index: int, value: int, size: int, label: str | None
) -> None:
    """A symbol of a data section (allocated, not executable) must lie inside the section:
    loaders turn its value into a u32 offset of the section's map."""
    if not sec.alloc or sec.executable:
        return
    if value > sec.size or size > sec.size - value:
        raise ObjectError(
            f"symbol {index} ({size} bytes at offset {value}) lies outside its section "
            f"{sec.name!r} ({sec.size} bytes)",
            label,
        )


class _Relocations(Mapping[int, "tuple[ElfReloc, ...]"]):
    """Relocations by target section index, decoded on first access to a target.

    The section layout was checked by :func:`read_elf`; the entries (their symbol indices) are
    checked when decoded, so a corrupt entry raises :class:`ObjectError` on access. DWARF
    relocations, most of an object's entries, are never decoded unless asked for.
    """

    def __init__(
        self, sources: dict[int, list[ElfSection]], end: str, nsymbols: int, label: str | None
    ) -> None:
        self._sources = sources
        self._end = end
        self._nsymbols = nsymbols
        self._label = label
        self._decoded: dict[int, tuple[ElfReloc, ...]] = {}

    def __getitem__(self, target: int) -> tuple[ElfReloc, ...]:
        found = self._decoded.get(target)
        if found is None:
            secs = self._sources[target]  # KeyError for a section without relocations
            found = tuple(
                rel
                for sec in secs
                for rel in _read_relocs(
                    sec, _type_number_from_name(sec.type) == _SHT_RELA, self._end,
                    self._nsymbols, self._label,
                )
            )
            self._decoded[target] = found
        return found

    def __iter__(self) -> Iterator[int]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


def _read_relocs(
    sec: ElfSection, rela: bool, end: str, nsymbols: int, label: str | None
) -> list[ElfReloc]:
    out: list[ElfReloc] = []
    number = 0
    if rela:
        for r_offset, r_info, r_addend in struct.iter_unpack(end + "QQq", sec.data):
            out.append(_reloc(sec, number, r_offset, r_info, r_addend, nsymbols, label))
            number += 1
    else:
        for r_offset, r_info in struct.iter_unpack(end + "QQ", sec.data):
            out.append(_reloc(sec, number, r_offset, r_info, None, nsymbols, label))
            number += 1
    return out


def _reloc(
    sec: ElfSection,
    number: int,
    r_offset: int,
    r_info: int,
    addend: int | None,
    nsymbols: int,
    label: str | None,
) -> ElfReloc:
    sym = r_info >> 32
    if sym >= nsymbols:
        raise ObjectError(
            f"relocation {number} in {sec.name!r} refers to symbol {sym}, but the symbol table "
            f"has {nsymbols} entries",
            label,
        )
    return ElfReloc(offset=r_offset, type=r_info & 0xFFFFFFFF, symbol=sym, addend=addend)

