"""The object model: what an eBPF ELF object contains, as plain frozen data.

:func:`pytest_ebpf.obj.load.load_object` builds an :class:`EbpfObject` from a file. Everything is
immutable (frozen dataclasses holding tuples), so objects can be cached and shared between
tests. Instruction indices are *slot* indices (8-byte units) relative to the ELF section that
holds the instruction, as ``llvm-objdump -d`` prints them.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from pytest_ebpf.obj.btf import Btf
from pytest_ebpf.obj.btf_ext import BtfExt
from pytest_ebpf.obj.elf import ElfImage
from pytest_ebpf.obj.isa import Insn, decode, decode_at, second_slots
from pytest_ebpf.obj.progtypes import ProgramKind

__all__ = [
    "BUILTIN_FUNCTIONS",
    "CallKind",
    "CallSite",
    "DataSection",
    "DataSymbol",
    "EbpfObject",
    "Function",
    "Map",
    "Program",
    "ProgramKind",
    "RefKind",
    "Reference",
    "SectionInfo",
]

CallKind = Literal["bpf", "helper", "kfunc", "callx", "undefined"]
RefKind = Literal["map", "data", "func_ptr", "other"]


@dataclass(frozen=True)
class SectionInfo:
    """One ELF section (every section of the file, including debug and relocation sections)."""

    name: str
    """Section name."""
    size: int
    """Size in bytes (``sh_size``; for ``.bss`` the size it occupies at run time)."""
    type: str
    """ELF section type, lower case without ``SHT_``: ``progbits``, ``nobits``, ``rel``..."""
    flags: int
    """Raw ``sh_flags``."""
    executable: bool
    """True when the section holds instructions (``SHF_EXECINSTR``)."""
    index: int = 0
    """Index in the ELF section header table."""


@dataclass(frozen=True)
class CallSite:
    """A call instruction and what it calls."""

    insn: Insn
    """The call instruction; ``insn.index`` is its slot relative to the *section*."""
    kind: CallKind
    """``bpf`` (BPF-to-BPF call to a function of this object), ``helper`` (``call imm`` of a
    kernel helper), ``kfunc`` (call of a kernel function: an extern in ``.ksyms`` or an
    instruction with ``src == 2``), ``callx`` (indirect call through a register) or
    ``undefined`` (a call whose relocation names a symbol that no section defines, e.g. an
    unexpanded ``memcpy``, or a BPF call whose target is not a known function)."""
    target: str | None
    """The callee: function name (bpf), helper name such as ``bpf_map_lookup_elem`` (helper),
    symbol name (kfunc/undefined); None for ``callx``."""
    helper_id: int | None = None
    """The helper number for helper calls, else None."""
    target_section: str | None = None
    """For bpf calls, the section holding the callee (``.text`` for subprograms)."""
    target_offset: int | None = None
    """For bpf calls, the callee's first slot inside :attr:`target_section`."""


@dataclass(frozen=True)
class Reference:
    """An ``ld_imm64`` that a relocation (``R_BPF_64_64``) points at a map, data or code."""

    insn_index: int
    """Slot of the ``ld_imm64`` instruction relative to :attr:`section`."""
    section: str
    """The section holding the instruction."""
    kind: RefKind
    """``map`` (a symbol of ``maps``/``.maps``), ``data`` (``.data``/``.rodata``/``.bss`` and
    friends, and ``.kconfig`` externs), ``func_ptr`` (address of a function: a symbol in an
    executable section) or ``other`` (anything else, e.g. a ``.ksyms`` variable)."""
    target: str
    """Map name, data section name, function name or the symbol name."""
    addend: int
    """Byte offset into the target: for data references, the offset inside the data section
    (symbol value plus the instruction's immediate); for maps and functions, the offset from the
    symbol (normally 0)."""
    symbol: str | None = None
    """The relocation symbol's name (the variable for data references, when it has one)."""
    target_section: str | None = None
    """The section holding the target (the map section, data section or code section)."""


BUILTIN_FUNCTIONS = frozenset({"memset", "memcpy", "memmove", "memcmp"})
"""Compiler builtins Rust leaves as global functions; aya-obj makes them static in the BTF, so
the kernel verifies them in their callers' context (as a global function, ``memset`` returns a
pointer: "Global function memset() doesn't return scalar")."""


@dataclass(frozen=True)
class Function:
    """A function: a ``FUNC`` symbol's byte range ``[value, value + size)`` in its section."""

    name: str
    """Symbol name (or, for a program section without ``FUNC`` symbols, the section's first
    global symbol or the section name)."""
    section: str
    """The executable section holding the function."""
    offset: int
    """First slot of the function, relative to the section."""
    code: bytes = field(repr=False)
    """The function's instruction bytes (``size_bytes`` of them), in the object's byte order."""
    calls: tuple[CallSite, ...] = field(repr=False)
    """Every call instruction of the function, in order."""
    global_: bool
    """True for ``global`` and ``weak`` symbols; False for ``static`` (local) functions."""
    size_bytes: int
    """Size in bytes (``st_size``); the function spans ``size_bytes // 8`` slots."""
    refs: tuple[Reference, ...] = field(default=(), repr=False)
    """Map, data and function-pointer references made by the function's ``ld_imm64``s."""
    hidden: bool = False
    """True when the symbol has hidden (or internal) visibility."""
    byteorder: Literal["little", "big"] = "little"
    """The byte order of :attr:`code`."""

    @property
    def loaded_static(self) -> bool:
        """Loaders make it static in the BTF, so the kernel verifies it in its callers' context,
        not alone against its prototype: a compiler builtin (aya-obj, :data:`BUILTIN_FUNCTIONS`)
        or a global function of hidden or internal visibility (libbpf; C's ``__hidden``)."""
        return self.name in BUILTIN_FUNCTIONS or (self.global_ and self.hidden)

    @cached_property
    def insns(self) -> tuple[Insn, ...]:
        """The decoded instructions; indices are section-relative slots. Decoded on first use:
        the analyses scan :attr:`code` without building :class:`Insn` objects."""
        return decode(self.code, self.byteorder, base=self.offset)

    @cached_property
    def second_slots(self) -> frozenset[int]:
        """Section-relative slots holding the second halves of ``ld_imm64``s."""
        return frozenset(self.offset + s for s in second_slots(self.code))

    @property
    def slots(self) -> int:
        """Number of 8-byte instruction slots."""
        return self.size_bytes // 8

    @property
    def end(self) -> int:
        """First slot after the function."""
        return self.offset + self.slots

    @property
    def key(self) -> tuple[str, str]:
        """``(section, name)``: unique within an object."""
        return (self.section, self.name)

    @property
    def first_insn(self) -> Insn | None:
        """The first instruction (None for an empty function)."""
        return self.insn_at(self.offset)

    @property
    def last_insn(self) -> Insn | None:
        """The last instruction: at the last slot, or the ``ld_imm64`` whose second half fills it
        (None for an empty function)."""
        last = self.end - 1
        return self.insn_at(last - 1 if last in self.second_slots else last)

    def insn_at(self, index: int) -> Insn | None:
        """The instruction starting at section-relative slot *index*, or None (outside the
        function or the second half of an ``ld_imm64``)."""
        if not self.offset <= index < self.end or index in self.second_slots:
            return None
        return decode_at(self.code, self.byteorder, index - self.offset, base=self.offset)


class FunctionIndex:
    """Functions by the slot they contain and by name, per section: how calls and function
    pointers are resolved, once, for every analysis and loader."""

    def __init__(self, functions: Iterable[Function]) -> None:
        by_section: dict[str, list[Function]] = {}
        self.by_key: dict[tuple[str, str], Function] = {}
        for fn in functions:
            if fn.key in self.by_key:
                continue
            by_section.setdefault(fn.section, []).append(fn)
            self.by_key[fn.key] = fn
        self._sorted: dict[str, list[Function]] = {}
        self._starts: dict[str, list[int]] = {}
        for sec, fns in by_section.items():
            fns.sort(key=lambda f: f.offset)
            self._sorted[sec] = fns
            self._starts[sec] = [f.offset for f in fns]

    def at(self, section: str | None, slot: int | None) -> Function | None:
        """The function of *section* whose slots include *slot*."""
        if section is None or slot is None:
            return None
        starts = self._starts.get(section)
        if not starts:
            return None
        i = bisect.bisect_right(starts, slot) - 1
        if i < 0:
            return None
        fn = self._sorted[section][i]
        return fn if fn.offset <= slot < max(fn.end, fn.offset + 1) else None

    def callee(self, call: CallSite) -> Function | None:
        """The function a BPF-to-BPF call enters (None for other calls, or no such function)."""
        if call.kind != "bpf":
            return None
        return self.at(call.target_section, call.target_offset)

    def pointed_to(self, ref: Reference) -> Function | None:
        """The function a ``func_ptr`` reference (``ld_imm64`` of a code address) names."""
        if ref.kind != "func_ptr" or ref.target_section is None:
            return None
        return self.by_key.get((ref.target_section, ref.target))


@dataclass(frozen=True)
class Program:
    """A loadable program: a global function in a section that names a program type."""

    name: str
    """The program (entry function) name."""
    section: str
    """Its ELF section, e.g. ``xdp`` or ``tracepoint/syscalls/sys_enter_execve``."""
    kind: ProgramKind
    """What the section name says: program type, attach type, attach target..."""
    entry: Function
    """The entry function."""
    instructions: int
    """Total slots of the entry function plus every function reachable from it (see
    :attr:`functions`): what a loader would submit to the kernel."""
    functions: tuple[Function, ...] = field(default=(), repr=False)
    """The entry function followed by every function reachable from it (breadth-first) through
    BPF-to-BPF calls and function-pointer references (callbacks such as ``bpf_loop``'s)."""

    @property
    def prog_type(self) -> str:
        """Shortcut for ``kind.prog_type``."""
        return self.kind.prog_type

    @cached_property
    def index(self) -> FunctionIndex:
        """The program's functions, for resolving its calls and function pointers."""
        return FunctionIndex(self.functions)

    @cached_property
    def load_order(self) -> tuple[Function, ...]:
        """The order a loader appends the functions in, as libbpf and aya-obj do: the entry,
        then each function the first time a call or a function pointer refers to it, scanning
        the growing stream in instruction order. The kernel's instruction indices (and the
        verifier's ``stack depth`` figures) follow it."""
        order = [self.entry]
        seen = {self.entry.key}
        i = 0
        while i < len(order):
            f = order[i]
            i += 1
            targets: list[tuple[int, Function]] = []
            for call in f.calls:
                callee = self.index.callee(call)
                if callee is not None:
                    targets.append((call.insn.index, callee))
            for ref in f.refs:
                callee = self.index.pointed_to(ref)
                if callee is not None:
                    targets.append((ref.insn_index, callee))
            for _, callee in sorted(targets, key=lambda t: t[0]):
                if callee.key not in seen:
                    seen.add(callee.key)
                    order.append(callee)
        return tuple(order)

    @property
    def calls(self) -> tuple[CallSite, ...]:
        """Every call made by the program and the functions it reaches."""
        return tuple(c for f in self.functions for c in f.calls)

    @property
    def refs(self) -> tuple[Reference, ...]:
        """Every reference made by the program and the functions it reaches."""
        return tuple(r for f in self.functions for r in f.refs)


@dataclass(frozen=True)
class Map:
    """A map definition (legacy ``maps`` section or BTF ``.maps`` section)."""

    name: str
    """Symbol (map) name."""
    section: str
    """``maps`` (legacy definitions) or ``.maps`` (BTF definitions)."""
    type: str
    """Kernel map type without ``BPF_MAP_TYPE_``, lower case (``hash``, ``array``, ``ringbuf``,
    ...); ``type#N`` for a number this project does not know; ``unknown`` for a ``.maps``
    definition in an object without BTF (see :attr:`EbpfObject.problems`)."""
    type_id: int
    """The numeric map type."""
    key_size: int
    """Key size in bytes (0 when the definition does not give one)."""
    value_size: int
    """Value size in bytes (0 when the definition does not give one)."""
    max_entries: int
    """``max_entries`` (0 when absent)."""
    flags: int
    """``map_flags``."""
    pinning: int | None
    """Pinning (0 none, 1 by name), or None when the definition has no pinning field."""
    source: Literal["legacy", "btf"]
    """How it was declared: a ``bpf_map_def``-style struct in ``maps`` or a BTF ``.maps``
    variable."""
    inner: Map | None = None
    """For map-in-map types declared with BTF, the inner map template, when given."""
    offset: int = 0
    """Byte offset of the definition inside its section."""
    size: int = 0
    """Size in bytes of the definition (the symbol size)."""
    key_type_id: int | None = None
    """BTF type id of the key type (BTF maps that name a key type), else None."""
    value_type_id: int | None = None
    """BTF type id of the value type (BTF maps that name a value type), else None."""
    id: int | None = None
    """Aya's legacy ``id`` field (7-field definitions), else None."""
    extra: tuple[tuple[str, int], ...] = ()
    """Other integer fields of a BTF definition (``numa_node``, ``map_extra``...)."""


@dataclass(frozen=True)
class DataSymbol:
    """A variable inside a data section."""

    name: str
    """Symbol name."""
    offset: int
    """Byte offset inside the section."""
    size: int
    """Size in bytes."""
    global_: bool = True
    """False for static (local) variables."""


@dataclass(frozen=True)
class DataSection:
    """A global-data section (``.data``, ``.rodata``, ``.bss``, their ``.name`` suffixed variants,
    and ``.kconfig`` externs)."""

    name: str
    """Section name, e.g. ``.rodata`` or ``.rodata.str1.1``."""
    kind: str
    """``data``, ``rodata``, ``bss`` or ``kconfig``."""
    size: int
    """Size in bytes."""
    symbols: tuple[DataSymbol, ...]
    """The named variables it holds, by offset."""
    data: bytes = field(default=b"", repr=False)
    """Initial contents (``b""`` for ``.bss`` and ``.kconfig``)."""


@dataclass(frozen=True)
class EbpfObject:
    """A parsed eBPF ELF object."""

    path: str | None
    """The file it was read from (or the name given to :func:`load_object_bytes`)."""
    byteorder: Literal["little", "big"]
    """``little`` or ``big``."""
    license: str | None
    """Contents of the ``license`` section (NUL-terminated string), or None."""
    kernel_version: int | None
    """The u32 in the ``version`` section, or None."""
    programs: tuple[Program, ...]
    """Every program, in section order then offset order."""
    functions: tuple[Function, ...]
    """Every function of every executable section (programs' entries, ``.text`` subprograms and
    any other ``FUNC`` symbol), in section order then offset order."""
    maps: tuple[Map, ...]
    """Every map definition (legacy first, then BTF), by offset."""
    data_sections: tuple[DataSection, ...]
    """Global-data sections."""
    btf: Btf | None = field(repr=False)
    """Parsed ``.BTF``, or None when the object has none."""
    btf_ext: BtfExt | None = field(repr=False)
    """Parsed ``.BTF.ext``, or None when the object has none."""
    sections: tuple[SectionInfo, ...] = field(repr=False)
    """Every ELF section (index order, the null section excluded)."""
    externs: tuple[str, ...] = field(default=(), repr=False)
    """Names of the undefined (extern) symbols the object refers to."""
    image: ElfImage | None = field(default=None, repr=False, compare=False)
    """The ELF as read (sections, symbols, raw ``.BTF``): what a loader needs beyond the
    model, so that nothing reads the file twice."""
    problems: tuple[str, ...] = ()
    """Non-fatal problems found while loading, one line each (e.g. BTF-defined maps in an
    object without ``.BTF``, whose definitions could not be decoded)."""

    # -- lookups ---------------------------------------------------------------------------

    def program(self, name: str) -> Program:
        """The program called *name* (or, failing that, the only program in section *name*).

        Raises :class:`LookupError` naming the available programs when there is none.
        """
        for prog in self.programs:
            if prog.name == name:
                return prog
        in_section = [p for p in self.programs if p.section == name]
        if len(in_section) == 1:
            return in_section[0]
        available = ", ".join(p.name for p in self.programs) or "none"
        raise LookupError(f"no program named {name!r} in {self._label()}; programs: {available}")

    def function(self, name: str, section: str | None = None) -> Function:
        """The function called *name* (in *section* when given).

        Raises :class:`LookupError` when there is none, or when several sections have a
        function of that name and no section was given.
        """
        found = [
            f
            for f in self.functions
            if f.name == name and (section is None or f.section == section)
        ]
        if len(found) == 1:
            return found[0]
        if found:
            where = ", ".join(f.section for f in found)
            raise LookupError(
                f"function {name!r} is ambiguous in {self._label()}: it is defined in sections "
                f"{where}; pass section="
            )
        where_text = f" in section {section!r}" if section is not None else ""
        available = ", ".join(f"{f.section}:{f.name}" for f in self.functions) or "none"
        raise LookupError(
            f"no function named {name!r}{where_text} in {self._label()}; functions: {available}"
        )

    def map(self, name: str) -> Map:
        """The map called *name*; :class:`LookupError` naming the available maps otherwise."""
        for m in self.maps:
            if m.name == name:
                return m
        available = ", ".join(m.name for m in self.maps) or "none"
        raise LookupError(f"no map named {name!r} in {self._label()}; maps: {available}")

    def data_section(self, name: str) -> DataSection:
        """The data section called *name*; :class:`LookupError` otherwise."""
        for d in self.data_sections:
            if d.name == name:
                return d
        available = ", ".join(d.name for d in self.data_sections) or "none"
        raise LookupError(
            f"no data section named {name!r} in {self._label()}; data sections: {available}"
        )

    def section(self, name: str) -> SectionInfo:
        """The section called *name*; :class:`LookupError` otherwise."""
        for s in self.sections:
            if s.name == name:
                return s
        available = ", ".join(s.name for s in self.sections) or "none"
        raise LookupError(f"no section named {name!r} in {self._label()}; sections: {available}")

    def has_section(self, name: str) -> bool:
        """True when the object has a section called *name*."""
        return any(s.name == name for s in self.sections)

    @property
    def program_names(self) -> tuple[str, ...]:
        """Names of every program, in order."""
        return tuple(p.name for p in self.programs)

    def _label(self) -> str:
        return self.path or "the object"
