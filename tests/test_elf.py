"""The ELF reader (``pytest_ebpf.obj.elf``) against pyelftools, the reference parser.

pytest-ebpf reads ELF with its own struct tables (pyelftools' import alone would cost half of
llvm-objdump's time in ``inspect``); here every section header, symbol and relocation it reads
from real objects (C objects of both byte orders, with and without BTF, and the example
crate's Rust object) is compared with what pyelftools reads from the same file. The extended
section numbering (``e_shnum == 0``, ``e_shstrndx == SHN_XINDEX``) and header corruption are
checked on patched copies.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Callable

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.elf import ElfImage, read_elf

C_DIR = Path(__file__).parent / "c"

# (source, flags): legacy and BTF maps, globals, externs, kfuncs, both byte orders, no BTF
C_OBJECTS = [
    ("obj_multi.c", ()),
    ("obj_multi.c", ("-target", "bpfeb")),
    ("obj_extern.c", ()),
    ("ld_globals.c", ()),
    ("ld_legacy.c", ("-target", "bpfeb")),
    ("an_stack.c", ("-g0",)),
]


def _elftools_view(path: Path) -> dict[str, object]:
    """What pyelftools reads: section headers, symbols and relocations, as plain tuples."""
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        sections = []
        relocations: dict[int, list[tuple[int, int, int, int | None]]] = {}
        for index, sec in enumerate(elf.iter_sections()):
            h = sec.header
            kind = h["sh_type"]
            name = kind.lower().removeprefix("sht_") if isinstance(kind, str) else f"type#{kind}"
            sections.append(
                (index, sec.name, name, h["sh_flags"], h["sh_size"], h["sh_link"], h["sh_info"],
                 h["sh_addralign"], h["sh_entsize"],
                 b"" if kind in ("SHT_NOBITS", "SHT_NULL") else sec.data())
            )  # fmt: skip
            if isinstance(sec, RelocationSection):
                relocations.setdefault(h["sh_info"], []).extend(
                    (r["r_offset"], r["r_info_type"], r["r_info_sym"],
                     r["r_addend"] if sec.is_RELA() else None)
                    for r in sec.iter_relocations()
                )  # fmt: skip
        symtab = elf.get_section_by_name(".symtab")
        symbols = []
        if isinstance(symtab, SymbolTableSection):
            for index, sym in enumerate(symtab.iter_symbols()):
                shndx = sym["st_shndx"]
                symbols.append(
                    (index, sym.name, sym["st_value"], sym["st_size"],
                     sym["st_info"]["type"].removeprefix("STT_").lower(),
                     sym["st_info"]["bind"].removeprefix("STB_").lower(),
                     sym["st_other"]["visibility"].removeprefix("STV_").lower(),
                     0 if shndx == "SHN_UNDEF" else shndx)
                )  # fmt: skip
        return {
            "byteorder": "little" if elf.little_endian else "big",
            "type": elf["e_type"].removeprefix("ET_").lower(),
            "machine": elf["e_machine"],
            "sections": sections,
            "symbols": symbols,
            "relocations": relocations,
        }


def _our_view(image: ElfImage) -> dict[str, object]:
    section_names = {s.index: s.name for s in image.sections}
    symbols = []
    for s in image.symbols:
        # pyelftools names section symbols "" (the name is the section's) and keeps reserved
        # indices as names (SHN_ABS...).
        own = (s.type == "section" and s.section_index is not None
               and s.name == section_names.get(s.section_index))
        name = "" if own else s.name
        shndx: int | str = s.shndx
        if s.shndx == 0xFFF1:
            shndx = "SHN_ABS"
        elif s.shndx == 0xFFF2:
            shndx = "SHN_COMMON"
        symbols.append((s.index, name, s.value, s.size, s.type, s.bind, s.visibility, shndx))
    return {
        "byteorder": image.byteorder,
        "type": image.elf_type,
        "machine": "EM_BPF" if image.machine == 247 else image.machine,
        "sections": [
            (s.index, s.name, s.type, s.flags, s.size, s.link, s.info, s.alignment, s.entsize,
             s.data)
            for s in image.sections
        ],
        "symbols": symbols,
        "relocations": {
            target: [(r.offset, r.type, r.symbol, r.addend) for r in rels]
            for target, rels in image.relocations.items()
        },
    }


@pytest.mark.parametrize(("source", "flags"), C_OBJECTS, ids=lambda v: "-".join(v) or "default")
def test_c_objects_match_pyelftools(compile_c: Callable[..., Path], source: str,
                                    flags: tuple[str, ...]) -> None:
    path = compile_c((C_DIR / source).read_text(), source.removesuffix(".c"), *flags)
    ours = _our_view(read_elf(path))
    theirs = _elftools_view(path)
    for key in theirs:
        assert ours[key] == theirs[key], key
    assert ours["byteorder"] == ("big" if "bpfeb" in flags else "little")
    assert any(rels for rels in ours["relocations"].values())  # type: ignore[attr-defined]


def test_rust_object_matches_pyelftools(example_object: Callable[[str], Path]) -> None:
    path = example_object("bpfel-unknown-none")
    ours = _our_view(read_elf(path))
    theirs = _elftools_view(path)
    for key in theirs:
        assert ours[key] == theirs[key], key
    names = [s[1] for s in ours["sections"]]  # type: ignore[attr-defined]
    assert "maps" in names and "xdp" in names


def _patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def _header(data: bytes) -> tuple[int, int, int]:
    """e_shoff, e_shnum and e_shstrndx of a little-endian ELF64 file."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    return shoff, shnum, shstrndx


def test_extended_section_numbering(compile_c: Callable[..., Path]) -> None:
    """More than 0xff00 sections: e_shnum is 0 and e_shstrndx SHN_XINDEX, with the real values
    in section 0's sh_size and sh_link (gABI); the reader must follow them."""
    path = compile_c((C_DIR / "obj_multi.c").read_text(), "obj_multi")
    data = path.read_bytes()
    shoff, shnum, shstrndx = _header(data)
    patched = _patched(data, 0x3C, "<H", 0)  # e_shnum
    patched = _patched(patched, 0x3E, "<H", 0xFFFF)  # e_shstrndx
    patched = _patched(patched, shoff + 32, "<Q", shnum)  # section 0 sh_size
    patched = _patched(patched, shoff + 40, "<I", shstrndx)  # section 0 sh_link
    plain, extended = read_elf(data), read_elf(patched)
    assert [s.name for s in extended.sections] == [s.name for s in plain.sections]
    assert extended.symbols == plain.symbols
    assert dict(extended.relocations) == dict(plain.relocations)


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (0x3A, "<H", 40, "bad section header entry size 40"),  # e_shentsize
        (0x28, "<Q", 0, "no section header table"),  # e_shoff
        (0x28, "<Q", 10**9, "lies outside the file"),  # e_shoff
        (0x3C, "<H", 0xFF00, "lies outside the file"),  # e_shnum
        (0x3E, "<H", 0xFFF0, "bad section name string table index"),  # e_shstrndx
    ],
)
def test_corrupt_headers(compile_c: Callable[..., Path], offset: int, fmt: str, value: int,
                         message: str) -> None:
    path = compile_c((C_DIR / "obj_multi.c").read_text(), "obj_multi")
    data = _patched(path.read_bytes(), offset, fmt, value)
    with pytest.raises(ObjectError, match=message) as info:
        read_elf(data, name="patched.o")
    assert info.value.path == "patched.o"
    assert "\n" not in str(info.value)


def test_bad_relocation_entry_raises_on_access(compile_c: Callable[..., Path]) -> None:
    """Relocations are decoded on first access to their target section; a corrupt entry is still
    one ObjectError naming the entry, when it is read."""
    path = compile_c((C_DIR / "obj_multi.c").read_text(), "obj_multi")
    image = read_elf(path)
    rel = next(s for s in image.sections if s.type == "rel" and s.data)
    shoff = _header(path.read_bytes())[0]
    data = path.read_bytes()
    sh_offset = struct.unpack_from("<Q", data, shoff + rel.index * 64 + 24)[0]
    # r_info of the first entry: symbol 0xffff, type 1
    data = _patched(data, sh_offset + 8, "<Q", (0xFFFF << 32) | 1)
    patched = read_elf(data, name="patched.o")
    with pytest.raises(ObjectError, match=r"relocation 0 in .* refers to symbol 65535"):
        patched.relocations[rel.info]
