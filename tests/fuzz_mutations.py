"""Structure-aware mutations of eBPF objects, for ``test_fuzz.py`` and its replayed corpus.

A mutation is a list of JSON-ready operations. Offsets are found with pyelftools (not with the
plugin's own ELF reader), so a mutation names sections and symbols and stays meaningful when the
compiler's output shifts a little:

* ``{"op": "byte", "at": N, "value": V}``: byte N of the file (modulo the file size) becomes V;
* ``{"op": "word", "at": N, "size": 2|4|8, "value": V}``: an integer in the object's byte order;
* ``{"op": "sbytes", "section": S, "offset": N, "size": 1|2|4|8, "value": V}``: an integer
  inside section S's bytes (N modulo the section size);
* ``{"op": "shdr", "section": S, "field": F, "value": V}``: field F of S's section header
  (``name type flags addr offset size link info addralign entsize``);
* ``{"op": "shname", "section": S, "as": T}``: S gets T's name (same ``sh_name``);
* ``{"op": "sym", "symbol": NAME, "field": F, "value": V}``: field F (``name info other shndx
  value size``) of the first symbol called NAME;
* ``{"op": "symname", "symbol": NAME, "as": OTHER}``: the symbol NAME gets OTHER's name;
* ``{"op": "graft", "section": S, "from": BASE}``: S's bytes are replaced by the same section
  of another base object (cut or zero-padded to S's size), e.g. BTF in the other byte order;
* ``{"op": "truncate", "at": N}``: the file ends after N bytes.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

Op = dict[str, Any]

_SHDR_FIELDS = {  # field -> (offset in a 64-byte section header, size)
    "name": (0, 4), "type": (4, 4), "flags": (8, 8), "addr": (16, 8), "offset": (24, 8),
    "size": (32, 8), "link": (40, 4), "info": (44, 4), "addralign": (48, 8), "entsize": (56, 8),
}  # fmt: skip
_SYM_FIELDS = {  # field -> (offset in a 24-byte ELF64 symbol, size)
    "name": (0, 4), "info": (4, 1), "other": (5, 1), "shndx": (6, 2), "value": (8, 8),
    "size": (16, 8),
}  # fmt: skip

#: sizes, counts and offsets that parsers get wrong
INTERESTING = (
    0, 1, 2, 3, 4, 7, 8, 12, 16, 24, 63, 64, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF,
    0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, (1 << 32) + 8, 1 << 40, (1 << 63) - 1,
    1 << 63, (1 << 64) - 1, (1 << 64) - 8,
)


@dataclass(frozen=True)
class Layout:
    """Where things are in one object, according to pyelftools."""

    size: int
    little: bool
    shoff: int
    sections: dict[str, tuple[int, int, int, int]]  # name -> (index, header at, data at, size)
    symbols: dict[str, int]  # name -> file offset of its entry
    symbol_names: tuple[str, ...]
    code: tuple[str, ...]  # executable sections


def layout(data: bytes) -> Layout:
    elf = ELFFile(io.BytesIO(data))
    shoff = elf.header["e_shoff"]
    sections: dict[str, tuple[int, int, int, int]] = {}
    symbols: dict[str, int] = {}
    code: list[str] = []
    for i, sec in enumerate(elf.iter_sections()):
        nobits = sec["sh_type"] == "SHT_NOBITS"
        if sec["sh_flags"] & 0x4 and sec["sh_size"] >= 8 and not nobits:  # SHF_EXECINSTR
            code.append(sec.name)
        sections.setdefault(
            sec.name, (i, shoff + 64 * i, sec["sh_offset"], 0 if nobits else sec["sh_size"])
        )
        if isinstance(sec, SymbolTableSection) and sec["sh_type"] == "SHT_SYMTAB":
            for j, sym in enumerate(sec.iter_symbols()):
                if sym.name:
                    symbols.setdefault(sym.name, sec["sh_offset"] + 24 * j)
    return Layout(len(data), elf.little_endian, shoff, sections, symbols, tuple(symbols),
                  tuple(code))


def _put(data: bytearray, at: int, size: int, value: int, little: bool) -> None:
    if not 0 <= at <= len(data) - size:
        return  # the target moved out of the file (an earlier op cut it): nothing to change
    data[at : at + size] = (value % (1 << (8 * size))).to_bytes(size, "little" if little else "big")


def apply(
    base: bytes,
    ops: Sequence[Op],
    bases: Mapping[str, Callable[[], bytes]] | None = None,
    lay: Layout | None = None,
) -> bytes:
    """*base* with *ops* applied in order (see the module docstring); *lay* is
    ``layout(base)`` when the caller has it already."""
    lay = layout(base) if lay is None else lay
    data = bytearray(base)
    for op in ops:
        kind = op["op"]
        if kind == "byte":
            if data:
                data[op["at"] % len(data)] = op["value"] & 0xFF
        elif kind == "word":
            _put(data, op["at"], op["size"], op["value"], lay.little)
        elif kind == "sbytes":
            _i, _h, at, size = lay.sections[op["section"]]
            if size:
                _put(data, at + op["offset"] % size, op["size"], op["value"], lay.little)
        elif kind == "shdr":
            off, size = _SHDR_FIELDS[op["field"]]
            _put(data, lay.sections[op["section"]][1] + off, size, op["value"], lay.little)
        elif kind == "shname":
            src = lay.sections[op["as"]][1]
            data[lay.sections[op["section"]][1] : lay.sections[op["section"]][1] + 4] = base[
                src : src + 4
            ]
        elif kind == "sym":
            off, size = _SYM_FIELDS[op["field"]]
            _put(data, lay.symbols[op["symbol"]] + off, size, op["value"], lay.little)
        elif kind == "symname":
            src = lay.symbols[op["as"]]
            _put(data, lay.symbols[op["symbol"]], 4, int.from_bytes(
                base[src : src + 4], "little" if lay.little else "big"), lay.little)
        elif kind == "graft":
            assert bases is not None, "graft needs the other base objects"
            other = bases[op["from"]]()
            _i, _h, src, src_size = layout(other).sections[op["section"]]
            _i, _h, at, size = lay.sections[op["section"]]
            data[at : at + size] = other[src : src + src_size][:size].ljust(size, b"\0")
        elif kind == "truncate":
            del data[op["at"] :]
        else:
            raise ValueError(f"unknown mutation {kind!r}")
    return bytes(data)


# --- random mutations ---------------------------------------------------------------------------

#: sections worth aiming at, most interesting first (each is tried when the base has it)
_FAVOURITES = (".BTF", ".BTF.ext", ".symtab", "maps", ".maps", ".data", ".bss", ".rodata",
               "license", "version", ".strtab", ".text", "xdp", "socket", ".relxdp", ".rel.text")


def _value(rng: random.Random, near: int = 0) -> int:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(INTERESTING)
    if roll < 0.8 and near:
        return max(near + rng.randint(-16, 16), 0)
    return rng.getrandbits(rng.choice((8, 16, 32, 64)))


#: opcodes the loader and the analyses treat specially: call, callx, ld_imm64, exit, ja, jeq,
#: jeq32, stores and loads through r10, mov, add, gotol, the atomic add, and an unknown one
_OPCODES = (0x85, 0x8D, 0x18, 0x95, 0x05, 0x15, 0x16, 0x7B, 0x72, 0x79, 0xBF, 0x07, 0x06, 0xDB,
            0x00, 0xFF)


def _insn_ops(rng: random.Random, lay: Layout) -> list[Op]:
    """Change one instruction of a code section: its opcode, registers, offset or immediate."""
    section = rng.choice(lay.code)
    slot = rng.randrange(lay.sections[section][3] // 8) * 8
    field = rng.choice(("opcode", "regs", "off", "imm"))
    if field == "opcode":
        return [{"op": "sbytes", "section": section, "offset": slot, "size": 1,
                 "value": rng.choice(_OPCODES)}]
    if field == "regs":
        return [{"op": "sbytes", "section": section, "offset": slot + 1, "size": 1,
                 "value": rng.randrange(256) if rng.random() < 0.5 else rng.choice((0xA0, 0x1A,
                                                                                  0x0A, 0x20))}]
    width, at = (2, slot + 2) if field == "off" else (4, slot + 4)
    return [{"op": "sbytes", "section": section, "offset": at, "size": width,
             "value": _value(rng) if rng.random() < 0.5 else -rng.randrange(1, 600) % 2**32}]


def random_ops(rng: random.Random, lay: Layout) -> list[Op]:
    """One to four random operations aimed at the headers, tables and sections of *lay*."""
    names = [n for n in lay.sections if n]
    favourites = [n for n in _FAVOURITES if n in lay.sections]
    ops: list[Op] = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        roll = rng.random()
        section = rng.choice(favourites if favourites and rng.random() < 0.7 else names)
        index, _hdr, _at, size = lay.sections[section]
        if roll < 0.15 and lay.code:
            ops.extend(_insn_ops(rng, lay))
        elif roll < 0.35 and size:
            width = rng.choice((1, 2, 4, 4, 4, 8))
            offset = rng.randrange(size) & ~(width - 1 if rng.random() < 0.8 else 0)
            ops.append({"op": "sbytes", "section": section, "offset": offset, "size": width,
                        "value": _value(rng, size)})
        elif roll < 0.55:
            field = rng.choice(tuple(_SHDR_FIELDS))
            ops.append({"op": "shdr", "section": section, "field": field,
                        "value": _value(rng, size if field != "name" else 0)})
        elif roll < 0.65:
            ops.append({"op": "shname", "section": section, "as": rng.choice(names)})
        elif roll < 0.75 and lay.symbol_names:
            ops.append({"op": "sym", "symbol": rng.choice(lay.symbol_names),
                        "field": rng.choice(tuple(_SYM_FIELDS)), "value": _value(rng, index)})
        elif roll < 0.85 and lay.symbol_names:  # one symbol takes another's name
            ops.append({"op": "symname", "symbol": rng.choice(lay.symbol_names),
                        "as": rng.choice(lay.symbol_names)})
        elif roll < 0.95:
            at = rng.randrange(64) if rng.random() < 0.3 else rng.randrange(lay.size)
            ops.append({"op": "byte", "at": at, "value": rng.randrange(256)})
        else:
            ops.append({"op": "truncate", "at": rng.randrange(lay.size)})
    return ops

