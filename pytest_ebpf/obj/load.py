"""Load an eBPF ELF object into the :mod:`pytest_ebpf.obj.model`.

:func:`load_object` wires the pieces together: :mod:`pytest_ebpf.obj.elf` (sections, symbols,
relocations) -> :mod:`pytest_ebpf.obj.isa` (instructions of every executable section) ->
:mod:`pytest_ebpf.obj.btf` / :mod:`pytest_ebpf.obj.btf_ext` -> functions, call sites, references,
programs (:mod:`pytest_ebpf.obj.progtypes`) and maps (:mod:`pytest_ebpf.obj.maps`).

How calls are resolved in a relocatable object:

* ``call imm`` with ``src == 0`` is a helper call (``imm`` is the helper number);
* a call with a relocation (``R_BPF_64_32``) calls the relocation's symbol: a defined symbol in
  an executable section is a BPF-to-BPF call whose target slot is
  ``symbol.value / 8 + imm + 1`` in the symbol's section (clang emits both a ``FUNC`` symbol
  with ``imm == -1`` and a section symbol with the callee's slot offset in ``imm``); an
  undefined symbol is a kfunc when it is declared in the BTF ``.ksyms`` DATASEC (or the
  instruction has ``src == 2``), otherwise an undefined call (e.g. ``memcpy``);
* a ``src == 1`` call without a relocation targets ``index + 1 + imm`` in the same section.

Loading is linear in the size of the object (relocations are indexed by offset, function
starts by slot).
"""

from __future__ import annotations

import bisect
import gc
import os
import struct
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.btf import Btf, parse_btf
from pytest_ebpf.obj.btf_ext import BtfExt, parse_btf_ext
from pytest_ebpf.obj.elf import (
    R_BPF_64_64,
    ElfImage,
    ElfReloc,
    ElfSection,
    ElfSymbol,
    read_elf,
)
from pytest_ebpf.obj.helpers import helper_name
from pytest_ebpf.obj.isa import Insn, decode_at, opcode_slots, second_slots
from pytest_ebpf.obj.maps import parse_btf_maps, parse_legacy_maps
from pytest_ebpf.obj.model import (
    CallKind,
    CallSite,
    DataSection,
    DataSymbol,
    EbpfObject,
    Function,
    Map,
    Program,
    Reference,
    RefKind,
    SectionInfo,
)
from pytest_ebpf.obj.progtypes import program_type

__all__ = ["gc_paused", "load_object", "load_object_bytes", "object_from_image"]

_INSN = 8
# call (0x85), callx (0x8d) and ld_imm64 (0x18): the instructions loading resolves
_CALL_AND_WIDE_OPCODES = bytes((0x85, 0x8D, 0x18))


def load_object(
    path: str | os.PathLike[str], max_size: int | str | None = None
) -> EbpfObject:
    """Read and analyse the eBPF object at *path*.

    Only a regular file of at most *max_size* bytes is read (default:
    :func:`~pytest_ebpf.obj.file.max_object_size`, 256 MiB unless
    ``PYTEST_EBPF_MAX_OBJECT_SIZE`` says otherwise); FIFOs, devices and directories are refused
    without blocking. Raises :class:`~pytest_ebpf.errors.ObjectError` (one line, ``from`` the
    cause) for a file that cannot be read or is not a well-formed eBPF object; any other
    exception is a bug of pytest-ebpf.
    """
    with gc_paused():
        return object_from_image(read_elf(path, max_size=max_size))


def load_object_bytes(data: bytes, name: str = "<bytes>") -> EbpfObject:
    """Like :func:`load_object`, for an object held in memory; *name* labels errors."""
    with gc_paused():
        return object_from_image(read_elf(bytes(data), name=name))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a large model.

    A load creates tens of thousands of small objects and no reference cycles; with the collector
    running, every full collection walks all of them again, so loading time would grow faster
    than the object. Reference counting still frees everything as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def object_from_image(image: ElfImage) -> EbpfObject:
    """Build the object model from an already-read :class:`~pytest_ebpf.obj.elf.ElfImage`.

    The parsers check what they read (bounds, counts, offsets, byte order) and raise
    :class:`ObjectError`; nothing else is caught here, so a bug stays a traceback."""
    try:
        with gc_paused():
            return _Loader(image).load()
    except ObjectError as exc:
        if exc.path is None and image.path is not None:
            raise ObjectError(exc.reason, image.path) from exc
        raise


# ---------------------------------------------------------------------------------------------
# Internals
# ---------------------------------------------------------------------------------------------


@dataclass
class _Range:
    """A function's extent before its instructions are analysed."""

    name: str
    section: ElfSection
    start: int  # first slot
    end: int  # first slot after
    global_: bool
    hidden: bool


@dataclass
class _CodeSection:
    section: ElfSection
    ranges: list[_Range]  # by start
    starts: list[int]  # ranges[i].start, for bisect
    relocs: dict[int, ElfReloc]  # byte offset -> relocation


def _is_legacy_maps(name: str) -> bool:
    return name == "maps" or name.startswith("maps/")


def _is_btf_maps(name: str) -> bool:
    return name == ".maps" or name.startswith(".maps.")


_MAX_DATA_SECTION = 0xFFFFFFFF

#: sections read by name even when they are not allocated
_NAMED_SECTIONS = frozenset({".BTF", ".BTF.ext", "license", "version", "maps", ".maps"})

_DATA_PREFIXES = ((".rodata", "rodata"), (".data", "data"), (".bss", "bss"))


def _data_kind(section: ElfSection) -> str | None:
    if not section.alloc or section.executable:
        return None
    for prefix, kind in _DATA_PREFIXES:
        if section.name == prefix or section.name.startswith(prefix + "."):
            return kind
    return None


class _Loader:
    def __init__(self, image: ElfImage) -> None:
        self.image = image
        self.sections = image.sections
        self.symbols = image.symbols
        self.byteorder = image.byteorder
        self.section_index = {s.name: s.index for s in reversed(self.sections)}
        self.by_section: dict[int, list[ElfSymbol]] = {}
        for sym in self.symbols:
            if sym.section_index is not None:
                self.by_section.setdefault(sym.section_index, []).append(sym)
        self._named_cache: dict[int, list[ElfSymbol]] = {}
        self.problems: list[str] = []

    # -- top level ------------------------------------------------------------------------

    def load(self) -> EbpfObject:
        image = self.image
        self._check_unique_names()
        self.btf = self._btf()
        self.btf_ext = self._btf_ext(self.btf)
        self.ksyms = self._datasec_names(".ksyms")
        self.kconfig = self._datasec_names(".kconfig")

        self.code: dict[int, _CodeSection] = {}
        for sec in self.sections:
            if sec.executable and sec.type == "progbits" and sec.size > 0:
                self.code[sec.index] = self._code_section(sec)

        functions: list[Function] = []
        self.by_key: dict[tuple[int, int], Function] = {}
        self.by_name: dict[tuple[str, str], Function] = {}
        for code in self.code.values():
            for rng in code.ranges:
                func = self._function(code, rng)
                functions.append(func)
                self.by_key[(code.section.index, rng.start)] = func
                self.by_name.setdefault((func.section, func.name), func)

        programs = self._programs()
        maps = self._maps()
        data_sections = self._data_sections()
        externs = tuple(
            sorted({s.name for s in self.symbols if s.undefined and s.name and s.index > 0})
        )
        sections = tuple(
            SectionInfo(
                name=s.name,
                size=s.size,
                type=s.type,
                flags=s.flags,
                executable=s.executable,
                index=s.index,
            )
            for s in self.sections[1:]
        )
        return EbpfObject(
            path=image.path,
            byteorder=image.byteorder,
            license=self._license(),
            kernel_version=self._kernel_version(),
            programs=programs,
            functions=tuple(functions),
            maps=maps,
            data_sections=data_sections,
            btf=self.btf,
            btf_ext=self.btf_ext,
            sections=sections,
            externs=externs,
            image=image,
            problems=tuple(self.problems),
        )

    def _check_unique_names(self) -> None:
        """Programs, functions, maps and data are found by section name: two such sections
        with one name would make every lookup ambiguous."""
        counts: dict[str, int] = {}
        for sec in self.sections:
            counts[sec.name] = counts.get(sec.name, 0) + 1
        for sec in self.sections[1:]:
            if counts[sec.name] > 1 and (
                sec.alloc or sec.executable or sec.name in _NAMED_SECTIONS
            ):
                same = [s.index for s in self.sections if s.name == sec.name]
                raise ObjectError(
                    f"sections {same[0]} and {same[1]} are both named {sec.name!r}; programs, "
                    "maps and data are found by section name, so it must name one section"
                )

    # -- simple sections --------------------------------------------------------------------

    def _section(self, name: str) -> ElfSection | None:
        return self.image.section(name)

    def _btf(self) -> Btf | None:
        sec = self._section(".BTF")
        if sec is None or not sec.data:
            return None
        try:
            return parse_btf(sec.data, self.byteorder)
        except ObjectError as exc:
            raise ObjectError(f"bad .BTF section: {exc.reason}") from exc

    def _btf_ext(self, btf: Btf | None) -> BtfExt | None:
        sec = self._section(".BTF.ext")
        if sec is None or not sec.data or btf is None:
            return None
        try:
            return parse_btf_ext(sec.data, self.byteorder, btf)
        except ObjectError as exc:
            raise ObjectError(f"bad .BTF.ext section: {exc.reason}") from exc

    def _datasec_names(self, name: str) -> frozenset[str]:
        if self.btf is None:
            return frozenset()
        out: set[str] = set()
        for sec in self.btf.datasecs():
            if sec.name == name:
                for info in sec.datasec_vars:
                    out.add(self.btf.type(info.type).name)
        return frozenset(out)

    def _license(self) -> str | None:
        sec = self._section("license")
        if sec is None:
            return None
        return sec.data.split(b"\0", 1)[0].decode("utf-8", errors="replace")

    def _kernel_version(self) -> int | None:
        sec = self._section("version")
        if sec is None or len(sec.data) < 4:
            return None
        end = "<" if self.byteorder == "little" else ">"
        value: int = struct.unpack_from(end + "I", sec.data)[0]
        return value

    # -- code -------------------------------------------------------------------------------

    def _code_section(self, sec: ElfSection) -> _CodeSection:
        if len(sec.data) % _INSN:
            raise ObjectError(
                f"section {sec.name!r}: instruction bytes length {len(sec.data)} is not a "
                f"multiple of {_INSN}"
            )
        ranges = self._ranges(sec)
        relocs: dict[int, ElfReloc] = {}
        for rel in self.image.relocations.get(sec.index, ()):
            relocs.setdefault(rel.offset, rel)
        return _CodeSection(
            section=sec,
            ranges=ranges,
            starts=[r.start for r in ranges],
            relocs=relocs,
        )

    def _ranges(self, sec: ElfSection) -> list[_Range]:
        nslots = sec.size // _INSN
        own = self.by_section.get(sec.index, [])
        funcs = [s for s in own if s.type == "func"]
        if not funcs:
            named = sorted(
                (
                    s
                    for s in own
                    if s.name
                    and s.type not in ("section", "file")
                    and s.bind != "local"
                ),
                key=lambda s: s.value,
            )
            name = named[0].name if named else sec.name
            return [_Range(name, sec, 0, nslots, bool(named), False)]
        funcs.sort(key=lambda s: (s.value, s.bind == "local", s.name))
        values = [f.value for f in funcs]
        ranges: list[_Range] = []
        seen: set[int] = set()
        for sym in funcs:
            if sym.value % _INSN:
                raise ObjectError(
                    f"function {sym.name!r} starts at byte {sym.value} of section {sec.name!r}, "
                    "which is not a multiple of 8"
                )
            if sym.value in seen:  # an alias of a function already listed
                continue
            seen.add(sym.value)
            size = sym.size
            if size == 0:  # no size: up to the next function or the section end
                nxt = bisect.bisect_right(values, sym.value)
                size = (values[nxt] if nxt < len(values) else sec.size) - sym.value
            if size % _INSN or sym.value + size > sec.size:
                raise ObjectError(
                    f"function {sym.name!r} ({size} bytes at byte {sym.value}) does not fit "
                    f"section {sec.name!r} ({sec.size} bytes)"
                )
            start = sym.value // _INSN
            ranges.append(
                _Range(
                    name=sym.name or f"{sec.name}+{start}",
                    section=sec,
                    start=start,
                    end=start + size // _INSN,
                    global_=sym.bind in ("global", "weak"),
                    hidden=sym.visibility in ("hidden", "internal"),
                )
            )
        return ranges

    def _range_at(self, section_index: int, slot: int) -> _Range | None:
        """The function of section *section_index* that contains *slot*."""
        code = self.code.get(section_index)
        if code is None:
            return None
        pos = bisect.bisect_right(code.starts, slot) - 1
        if pos < 0:
            return None
        rng = code.ranges[pos]
        return rng if rng.start <= slot < rng.end else None

    def _function(self, code: _CodeSection, rng: _Range) -> Function:
        """The function of *rng*. Only its calls and ``ld_imm64``s are decoded here, found from
        the opcode bytes; :attr:`Function.insns` decodes the rest on first use."""
        data = code.section.data[rng.start * _INSN : rng.end * _INSN]
        try:
            seconds = second_slots(data)
        except ObjectError as exc:
            raise ObjectError(
                f"section {code.section.name!r}: function {rng.name!r}: {exc.reason} of the "
                "function (its second slot is missing)"
            ) from exc
        calls: list[CallSite] = []
        refs: list[Reference] = []
        relocs = code.relocs
        order = self.byteorder
        for slot in opcode_slots(data, _CALL_AND_WIDE_OPCODES):
            if slot in seconds:
                continue
            insn = decode_at(data, order, slot, base=rng.start)
            if insn.is_call:
                calls.append(self._call(code, insn, relocs.get(insn.index * _INSN)))
            elif insn.is_wide:
                rel = relocs.get(insn.index * _INSN)
                if rel is not None and rel.type == R_BPF_64_64:
                    refs.append(self._reference(code.section, insn, rel))
        return Function(
            name=rng.name,
            section=code.section.name,
            offset=rng.start,
            code=data,
            calls=tuple(calls),
            global_=rng.global_,
            size_bytes=(rng.end - rng.start) * _INSN,
            refs=tuple(refs),
            hidden=rng.hidden,
            byteorder=order,
        )

    def _symbol(self, rel: ElfReloc) -> ElfSymbol:
        return self.symbols[rel.symbol]

    def _call(self, code: _CodeSection, insn: Insn, rel: ElfReloc | None) -> CallSite:
        if insn.is_callx:
            return CallSite(insn=insn, kind="callx", target=None)
        if rel is not None:
            sym = self._symbol(rel)
            if sym.section_index is None:
                kind: CallKind = (
                    "kfunc" if insn.is_kfunc_call or sym.name in self.ksyms else "undefined"
                )
                return CallSite(insn=insn, kind=kind, target=sym.name or None)
            target_slot = sym.value // _INSN + insn.imm + 1
            return self._bpf_call(insn, sym.section_index, target_slot, sym.name)
        if insn.is_helper_call:
            return CallSite(
                insn=insn, kind="helper", target=helper_name(insn.imm), helper_id=insn.imm
            )
        if insn.is_pseudo_call:
            return self._bpf_call(insn, code.section.index, insn.index + 1 + insn.imm, None)
        if insn.is_kfunc_call:
            return CallSite(insn=insn, kind="kfunc", target=self._btf_func_name(insn.imm))
        return CallSite(insn=insn, kind="undefined", target=None)

    def _bpf_call(
        self, insn: Insn, section_index: int, slot: int, symbol: str | None
    ) -> CallSite:
        rng = self._range_at(section_index, slot)
        sec = self.sections[section_index]
        if rng is None:
            return CallSite(
                insn=insn,
                kind="undefined",
                target=symbol if symbol and symbol != sec.name else f"{sec.name}+{slot}",
                target_section=sec.name,
                target_offset=slot,
            )
        return CallSite(
            insn=insn,
            kind="bpf",
            target=rng.name,
            target_section=sec.name,
            target_offset=slot,
        )

    def _btf_func_name(self, type_id: int) -> str | None:
        btf = self.btf
        if btf is None or not 0 < type_id < len(btf.types):
            return None
        t = btf.types[type_id]
        return t.name if t.kind == "func" and t.name else None

    def _reference(self, section: ElfSection, insn: Insn, rel: ElfReloc) -> Reference:
        sym = self._symbol(rel)
        addend = insn.imm if rel.addend is None else rel.addend
        kind: RefKind
        symbol_name = sym.name if sym.type != "section" else None
        if sym.section_index is None:
            if sym.name in self.kconfig:
                kind, target = "data", ".kconfig"
            else:
                kind, target = "other", sym.name
            return Reference(insn.index, section.name, kind, target, addend, sym.name or None,
                             ".kconfig" if kind == "data" else None)
        target_sec = self.sections[sym.section_index]
        offset = sym.value + addend
        if _is_legacy_maps(target_sec.name) or _is_btf_maps(target_sec.name):
            kind = "map"
            if sym.type == "section":
                found = self._symbol_at(target_sec.index, offset, exact=True)
                target = found.name if found is not None else f"{target_sec.name}+{offset}"
                return Reference(
                    insn.index, section.name, kind, target, 0, symbol_name, target_sec.name
                )
            return Reference(
                insn.index, section.name, kind, sym.name, addend, sym.name, target_sec.name
            )
        if target_sec.executable:
            rng = self._range_at(target_sec.index, offset // _INSN)
            target = rng.name if rng is not None else f"{target_sec.name}+{offset}"
            return Reference(
                insn.index,
                section.name,
                "func_ptr",
                target,
                offset - (rng.start * _INSN if rng else 0),
                symbol_name,
                target_sec.name,
            )
        if _data_kind(target_sec) is not None:
            if symbol_name is None:
                found = self._symbol_at(target_sec.index, offset, exact=False)
                symbol_name = found.name if found is not None else None
            return Reference(
                insn.index,
                section.name,
                "data",
                target_sec.name,
                offset,
                symbol_name,
                target_sec.name,
            )
        return Reference(
            insn.index,
            section.name,
            "other",
            sym.name or target_sec.name,
            addend,
            symbol_name,
            target_sec.name,
        )

    def _symbol_at(self, section_index: int, offset: int, *, exact: bool) -> ElfSymbol | None:
        best: ElfSymbol | None = None
        for s in self._named_symbols(section_index):
            hit = s.value == offset or (
                not exact and s.value <= offset < s.value + max(s.size, 1)
            )
            if hit and (best is None or (best.bind == "local" and s.bind != "local")):
                best = s
        return best

    def _named_symbols(self, section_index: int) -> list[ElfSymbol]:
        cache = self._named_cache
        found = cache.get(section_index)
        if found is None:
            found = [
                s
                for s in self.by_section.get(section_index, ())
                if s.name
                and s.type not in ("section", "file", "func")
            ]
            found.sort(key=lambda s: s.value)
            cache[section_index] = found
        return found

    # -- programs ---------------------------------------------------------------------------

    def _programs(self) -> tuple[Program, ...]:
        programs: list[Program] = []
        for code in self.code.values():
            sec = code.section
            kind = program_type(sec.name)
            if kind is None:
                continue
            has_func_symbols = any(
                s.type == "func" for s in self.by_section.get(sec.index, ())
            )
            for rng in code.ranges:
                if has_func_symbols and not rng.global_:
                    continue
                entry = self.by_key[(sec.index, rng.start)]
                reached = self._reachable(entry)
                programs.append(
                    Program(
                        name=entry.name,
                        section=sec.name,
                        kind=kind,
                        entry=entry,
                        instructions=sum(f.slots for f in reached),
                        functions=reached,
                    )
                )
        return tuple(programs)

    def _reachable(self, entry: Function) -> tuple[Function, ...]:
        order: list[Function] = [entry]
        seen = {entry.key}
        queue = deque([entry])
        while queue:
            func = queue.popleft()
            callees: list[Function] = []
            for call in func.calls:
                if call.kind == "bpf" and call.target_section is not None:
                    callee = self._function_at(call.target_section, call.target_offset)
                    if callee is not None:
                        callees.append(callee)
            for ref in func.refs:
                if ref.kind == "func_ptr" and ref.target_section is not None:
                    callee = self.by_name.get((ref.target_section, ref.target))
                    if callee is not None:
                        callees.append(callee)
            for callee in callees:
                if callee.key not in seen:
                    seen.add(callee.key)
                    order.append(callee)
                    queue.append(callee)
        return tuple(order)

    def _function_at(self, section: str, slot: int | None) -> Function | None:
        idx = self.section_index.get(section)
        if idx is None or slot is None:
            return None
        rng = self._range_at(idx, slot)
        return None if rng is None else self.by_key.get((idx, rng.start))

    # -- maps and data ----------------------------------------------------------------------

    def _maps(self) -> tuple[Map, ...]:
        legacy: list[Map] = []
        btf_maps: list[Map] = []
        for sec in self.sections:
            if _is_legacy_maps(sec.name):
                try:
                    legacy.extend(parse_legacy_maps(sec, self.symbols, self.byteorder))
                except ObjectError as exc:
                    raise ObjectError(f"section {sec.name!r}: {exc.reason}") from exc
            elif _is_btf_maps(sec.name):
                try:
                    found = parse_btf_maps(sec, self.symbols, self.btf)
                except ObjectError as exc:
                    raise ObjectError(f"section {sec.name!r}: {exc.reason}") from exc
                if found and self.btf is None:
                    self.problems.append(
                        f"section {sec.name!r} defines maps ({', '.join(m.name for m in found)}) "
                        "but the object has no .BTF section: their definitions cannot be read"
                    )
                btf_maps.extend(found)
        return tuple(legacy + btf_maps)

    def _data_sections(self) -> tuple[DataSection, ...]:
        out: list[DataSection] = []
        for sec in self.sections:
            kind = _data_kind(sec)
            if kind is None:
                continue
            if sec.size > _MAX_DATA_SECTION:
                raise ObjectError(
                    f"data section {sec.name!r} is {sec.size} bytes; global data lives in an "
                    "array map whose value size is 32-bit, so it can be at most 4 GiB"
                )
            symbols = tuple(
                DataSymbol(name=s.name, offset=s.value, size=s.size, global_=s.bind != "local")
                for s in self._named_symbols(sec.index)
            )
            out.append(
                DataSection(name=sec.name, kind=kind, size=sec.size, symbols=symbols, data=sec.data)
            )
        kconfig = self._kconfig_section()
        if kconfig is not None:
            out.append(kconfig)
        return tuple(out)

    def _kconfig_section(self) -> DataSection | None:
        btf = self.btf
        if btf is None:
            return None
        for sec in btf.datasecs():
            if sec.name != ".kconfig":
                continue
            symbols = tuple(
                DataSymbol(name=btf.type(v.type).name, offset=v.offset, size=v.size)
                for v in sec.datasec_vars
            )
            return DataSection(name=".kconfig", kind="kconfig", size=sec.size or 0, symbols=symbols)
        return None

