"""Linking one program for the kernel (the native loader's offline half: no ``bpf()`` call).

* the instruction stream is the entry function followed by every function it reaches
  (:attr:`Program.functions`); BPF-to-BPF calls get ``src = BPF_PSEUDO_CALL`` and
  ``imm = callee start - (call + 1)`` in that stream, function pointers (``ld_imm64`` of a code
  address, e.g. a ``bpf_loop`` callback) ``src = BPF_PSEUDO_FUNC`` and the same relative offset;
  kfunc calls ``src = BPF_PSEUDO_KFUNC_CALL`` and the kernel's BTF id of the function;
* map and global-data references are listed for the loader, which patches in map fds;
* the object's ``.BTF`` is fixed up as libbpf and Aya fix it (:func:`fix_btf`), and every
  program gets ``func_info`` and ``line_info`` re-based to instruction indices of its own
  stream, so verifier logs show source lines.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_ebpf.abi import PseudoCall, PseudoSrc
from pytest_ebpf.errors import EbpfError
from pytest_ebpf.kernel.kconfig import SECTION as KCONFIG
from pytest_ebpf.kernel.kconfig import KconfigVar
from pytest_ebpf.kernel.targets import TargetError, kernel_btf, kernel_type_id
from pytest_ebpf.obj.btf import Btf, parse_btf
from pytest_ebpf.obj.btf_edit import (
    datasec_layout,
    extern_vars_allocated,
    ksyms_as_vars,
    static_functions,
)
from pytest_ebpf.obj.btf_ext import CoreRelo, raw_line_info
from pytest_ebpf.obj.core import (
    POISON_HELPER,
    CoreError,
    CoreValue,
    describe,
    resolve_relo,
)
from pytest_ebpf.obj.elf import ElfImage
from pytest_ebpf.obj.model import BUILTIN_FUNCTIONS, EbpfObject, Function, Program

__all__ = ["CoreInputs", "Extras", "LinkError", "LinkedProgram",
           "extras_from_image", "fix_btf", "link_program", "read_extras"]

_INSN = 8


class LinkError(EbpfError):
    """A program cannot be linked (undefined call, unsupported reference...)."""


# --- raw ELF extras: BTF bytes, symbols ---------------------------------------------------------


@dataclass
class Extras:
    image: ElfImage | None
    btf_raw: bytes | None = None
    btf_ext_raw: bytes | None = None
    func_info: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    line_info: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)


def read_extras(obj: EbpfObject) -> tuple[Extras, list[str]]:
    """From the model only: the object is never read again."""
    if obj.image is None:
        return Extras(None), ["the object model holds no ELF image: loaded without BTF"]
    return extras_from_image(obj, obj.image), []


def extras_from_image(obj: EbpfObject, image: ElfImage) -> Extras:
    """The raw ``.BTF`` of *image* and the func_info/line_info records of *obj*'s ``.BTF.ext``
    (checked when the object was loaded; string offsets are kept: the kernel wants them).
    Offline: no ``bpf()`` call."""
    extras = Extras(image)
    btf = image.section(".BTF")
    if btf is not None and btf.data:
        extras.btf_raw = btf.data
    ext = obj.btf_ext
    if ext is not None and extras.btf_raw is not None:
        extras.func_info = {
            sec: [(f.insn_off, f.type_id) for f in recs] for sec, recs in ext.func_info.items()
        }
        extras.line_info = {sec: raw_line_info(ext, sec) for sec in ext.line_info}
    return extras


# --- BTF fix-ups --------------------------------------------------------------------------------

def fix_btf(btf_raw: bytes, image: ElfImage,
            kconfig: tuple[Mapping[str, KconfigVar], int] | None = None
            ) -> tuple[bytes, list[str]]:
    """The ``.BTF`` blob as the kernel needs it, as Aya loads it: DATASEC sizes from the ELF
    sections and variable offsets from their symbols
    (:func:`~pytest_ebpf.obj.btf_edit.datasec_layout`; the ``.kconfig`` DATASEC from
    *kconfig*, the layout of :func:`~pytest_ebpf.kernel.kconfig.kconfig_layout`, its VARs made
    global allocated), the compiler builtins of
    :data:`~pytest_ebpf.obj.model.BUILTIN_FUNCTIONS`, hidden global functions and the kfunc
    declarations made static, the ``.ksyms`` members made ``int`` VAR slots. Returns the new
    blob and remarks (one per builtin made static); :class:`ObjectError` when it is malformed
    or a size or offset does not fit a DATASEC's u32."""
    btf = parse_btf(btf_raw, image.byteorder)
    sizes = {sec.name: sec.size for sec in image.sections[1:] if sec.name}
    by_index = {sec.index: sec.name for sec in image.sections[1:]}
    offsets: dict[tuple[str, str], int] = {}
    for sym in image.symbols:
        if sym.section_index is not None and sym.name and sym.type not in ("section", "file"):
            section = by_index.get(sym.section_index)
            if section is not None:
                offsets.setdefault((section, sym.name), sym.value)
    if kconfig is not None and kconfig[0]:
        sizes[KCONFIG] = kconfig[1]
        offsets.update({(KCONFIG, v.name): v.offset for v in kconfig[0].values()})
    blob = datasec_layout(btf, sizes, offsets)
    blob, made_static = static_functions(btf, BUILTIN_FUNCTIONS, blob)
    notes = [f"{name}() made static in the BTF, as aya-obj does (the kernel verifies a "
             "global function alone; compiler builtins break that)" for name in made_static]
    # global functions of hidden (or internal) visibility, as libbpf does (C's __hidden)
    hidden = {s.name for s in image.symbols if s.type == "func" and s.defined
              and s.bind in ("global", "weak") and s.visibility in ("hidden", "internal")}
    blob, made_static = static_functions(btf, hidden - BUILTIN_FUNCTIONS, blob)
    notes += [f"{name}() made static in the BTF, as libbpf does for a hidden global function"
              for name in made_static]
    # kfunc declarations: the kernel's BTF_LOAD knows no "extern" linkage (libbpf rewrites
    # them too); the calls name the kernel's own BTF ids
    externs = {t.name for t in btf.types if t.kind == "func" and t.linkage == "extern"}
    blob, _ = static_functions(btf, externs, blob)
    if kconfig is not None and kconfig[0]:
        blob = extern_vars_allocated(btf, KCONFIG, blob)
    blob, _ = ksyms_as_vars(btf, blob)  # changes the layout: last
    return blob, notes


# --- linking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkedProgram:
    """A program's final instruction stream (before map fds are patched in)."""

    insns: bytes
    starts: dict[tuple[str, str], int]
    """Start slot of each linked function, by :attr:`Function.key`."""
    map_slots: tuple[tuple[int, str], ...]
    """``(slot, map name)`` of every map ``ld_imm64``."""
    data_slots: tuple[tuple[int, str, int], ...]
    """``(slot, data section, byte offset)`` of every global-data ``ld_imm64``."""
    func_info: bytes
    line_info: bytes
    notes: tuple[str, ...]
    poisoned: tuple[str, ...] = ()
    """The CO-RE relocations this program's code was poisoned for, in words."""


def _encode(func: Function) -> list[list[int]]:
    """Slots of *func* as ``[opcode, dst, src, off, imm]`` lists (mutable, for patching)."""
    slots: list[list[int]] = [[0, 0, 0, 0, 0] for _ in range(func.slots)]
    for insn in func.insns:
        at = insn.index - func.offset
        slots[at] = [insn.opcode, insn.dst, insn.src, insn.off, insn.imm]
        if insn.size == 2 and insn.imm64 is not None:
            hi = (insn.imm64 >> 32) & 0xFFFFFFFF
            slots[at + 1] = [0, 0, 0, 0, hi - (1 << 32) if hi & 0x80000000 else hi]
    return slots


def link_program(prog: Program, extras: Extras | None = None,
                 kconfig: Mapping[str, KconfigVar] | None = None,
                 core: CoreInputs | None = None) -> LinkedProgram:
    """Lay out *prog*'s functions (:attr:`Program.load_order`) and resolve calls and function
    pointers; raises :class:`LinkError` for what cannot be loaded (undefined calls, kfuncs the
    kernel lacks, ksym variables...). *kconfig*: where each ``.kconfig`` extern sits in its map
    (:func:`~pytest_ebpf.kernel.kconfig.kconfig_layout`). *core*: the object's BTF and CO-RE
    relocations, applied against the kernel's BTF (:mod:`pytest_ebpf.obj.core`)."""
    starts: dict[tuple[str, str], int] = {}
    slots: list[list[int]] = []
    functions = list(prog.load_order)
    for f in functions:
        starts[f.key] = len(slots)
        slots.extend(_encode(f))
    map_slots: list[tuple[int, str]] = []
    data_slots: list[tuple[int, str, int]] = []
    for f in functions:
        base = starts[f.key] - f.offset
        for call in f.calls:
            where = f"insn {call.insn.index} of {f.name}"
            if call.kind == "undefined":
                raise LinkError(
                    f"undefined call to {call.target or '?'} ({where}): no section of the object "
                    "defines it (e.g. a memcpy the compiler did not inline)"
                )
            if call.kind == "kfunc":
                # The kernel's own BTF id of the function, as libbpf and Aya resolve it
                # (vmlinux only: a module's kfunc would also need its BTF fd in fd_array).
                name = call.target or "?"
                try:
                    found = kernel_type_id(name, "func")
                except TargetError as exc:
                    raise LinkError(f"kfunc call to {name} ({where}): {exc}") from exc
                if found is None:
                    raise LinkError(
                        f"kfunc call to {name} ({where}): this kernel has no kernel function "
                        f"{name} in its BTF (a newer kernel's kfunc, or one in a module)")
                pos = base + call.insn.index
                slots[pos][2] = PseudoCall.KFUNC_CALL
                slots[pos][3] = 0
                slots[pos][4] = found
                continue
            if call.kind != "bpf":
                continue
            callee = prog.index.callee(call)
            if callee is None or call.target_offset is None:
                raise LinkError(f"call to {call.target} ({where}) is outside the program")
            pos = base + call.insn.index
            target = starts[callee.key] + call.target_offset - callee.offset
            slots[pos][2] = PseudoCall.CALL
            slots[pos][4] = target - pos - 1
        for ref in f.refs:
            pos = base + ref.insn_index
            where = f"insn {ref.insn_index} of {f.name}"
            if ref.kind == "map":
                map_slots.append((pos, ref.target))
            elif ref.kind == "data":
                if ref.target == KCONFIG:
                    var = (kconfig or {}).get(ref.symbol or "")
                    if var is None:
                        raise LinkError(f"reference to .kconfig extern {ref.symbol} ({where}) "
                                        "that the object's BTF does not declare")
                    data_slots.append((pos, ref.target, var.offset + ref.addend))
                    continue
                data_slots.append((pos, ref.target, ref.addend))
            elif ref.kind == "func_ptr":
                callee = prog.index.pointed_to(ref)
                if callee is None:
                    raise LinkError(f"pointer to unknown function {ref.target} ({where})")
                target = starts[callee.key] + ref.addend // _INSN
                slots[pos][2] = PseudoSrc.FUNC
                slots[pos][4] = target - pos - 1
                slots[pos + 1][4] = 0
            elif ref.target_section is None:  # an extern: a typed .ksyms variable
                _link_ksym(slots, pos, ref.target, where)
            else:
                raise LinkError(f"unsupported reference to {ref.target} ({where})")
    poisoned: list[str] = []
    core_notes = _apply_core(functions, starts, slots, core, poisoned) if core else []
    func_info, line_info, notes = _btf_infos(functions, starts, extras)
    notes = core_notes + notes
    insns = b"".join(
        struct.pack("<BBhi", s[0], (s[2] << 4) | (s[1] & 0xF), s[3], s[4]) for s in slots
    )
    return LinkedProgram(
        insns, starts, tuple(map_slots), tuple(data_slots), func_info, line_info, tuple(notes),
        tuple(poisoned),
    )


def _link_ksym(slots: list[list[int]], pos: int, name: str, where: str) -> None:
    """A typed ksym (``extern const T name __ksym;``): the kernel's BTF id of the variable, in
    an ``ld_imm64`` with ``src = BPF_PSEUDO_BTF_ID``, as libbpf links it."""
    try:
        var = kernel_type_id(name, "var")
    except TargetError as exc:
        raise LinkError(f"ksym {name} ({where}): {exc}") from exc
    if var is None:
        raise LinkError(f"ksym {name} ({where}): this kernel's BTF has no variable {name} "
                        "(vmlinux BTF describes per-CPU variables; untyped ksyms, read from "
                        "kallsyms, are not linked by this loader)")
    if slots[pos][0] != _LD_IMM64:
        raise LinkError(f"ksym {name} ({where}): the instruction is not an ld_imm64")
    slots[pos][2] = PseudoSrc.BTF_ID
    slots[pos][4] = var
    slots[pos + 1][4] = 0  # the BTF object: vmlinux


@dataclass(frozen=True)
class CoreInputs:
    """What CO-RE needs from the object: its BTF and its relocations by section."""

    local: Btf
    relos: Mapping[str, tuple[CoreRelo, ...]]


_MEM_SIZE_BITS = {1: 0x10, 2: 0x08, 4: 0x00, 8: 0x18}
_LD_IMM64 = 0x18


def _apply_core(functions: list[Function], starts: dict[tuple[str, str], int],
                slots: list[list[int]], core: CoreInputs, poisoned_out: list[str]) -> list[str]:
    """Patch every CO-RE relocated instruction of the program's functions, as libbpf does."""
    target: Btf | None = None
    poisoned = 0
    count = 0
    for f in functions:
        lo, hi = f.offset * _INSN, f.end * _INSN
        for relo in core.relos.get(f.section, ()):
            if not lo <= relo.insn_off < hi:
                continue
            if target is None:
                try:
                    target = kernel_btf()
                except TargetError as exc:
                    raise LinkError(f"CO-RE relocations in {f.name}: {exc}") from exc
            pos = starts[f.key] + (relo.insn_off - lo) // _INSN
            where = f"insn {(relo.insn_off - lo) // _INSN} of {f.name}"
            try:
                value = resolve_relo(core.local, target, relo)
            except CoreError as exc:
                raise LinkError(f"{exc} ({where})") from exc
            count += 1
            if value.target is None:
                poisoned += 1
                poisoned_out.append(f"{describe(core.local, relo)} at {where}")
                was_wide = slots[pos][0] == _LD_IMM64
                slots[pos][:] = [0x85, 0, 0, 0, _s32(POISON_HELPER)]
                if was_wide:
                    slots[pos + 1][:] = [0x05, 0, 0, 0, 0]  # ja +0: the other half
                continue
            _patch(slots, pos, relo, value, where)
    notes = []
    if count:
        notes.append(f"{count} CO-RE relocation(s) applied against the kernel's BTF"
                     + (f", {poisoned} poisoned (no matching kernel type: reachable code is "
                        "refused as with libbpf)" if poisoned else ""))
    return notes


def _patch(slots: list[list[int]], pos: int, relo: CoreRelo, value: CoreValue,
           where: str) -> None:
    insn = slots[pos]
    op = insn[0]
    cls = op & 0x07
    new = value.target
    assert new is not None
    if op == _LD_IMM64:
        insn[4] = _s32(new & 0xFFFFFFFF)
        slots[pos + 1][4] = _s32((new >> 32) & 0xFFFFFFFF)
    elif cls in (4, 7) and not op & 0x08:  # alu/alu64 with an immediate
        if insn[4] != value.local:
            raise LinkError(f"CO-RE {relo.kind} ({where}): the instruction holds {insn[4]}, "
                            f"not the local value {value.local}")
        insn[4] = _s32(new)
    elif cls in (1, 2, 3) and relo.kind == "field_byte_offset":  # ldx, st, stx
        if insn[3] != value.local:
            raise LinkError(f"CO-RE field offset ({where}): the instruction's offset is "
                            f"{insn[3]}, not the local {value.local}")
        if not -(1 << 15) <= new < 1 << 15:
            raise LinkError(f"CO-RE field offset {new} ({where}) does not fit an instruction")
        insn[3] = new
        size_bits = _MEM_SIZE_BITS.get(value.target_size or 0)
        if (value.target_size != value.local_size and size_bits is not None
                and _MEM_SIZE_BITS.get(value.local_size or 0) == op & 0x18):
            insn[0] = (op & ~0x18) | size_bits  # the kernel's field is wider or narrower
    else:
        raise LinkError(f"CO-RE {relo.kind} on an instruction (opcode {op:#04x}) it cannot "
                        f"patch ({where})")


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _btf_infos(
    functions: list[Function], starts: dict[tuple[str, str], int], extras: Extras | None
) -> tuple[bytes, bytes, list[str]]:
    if extras is None or not extras.func_info:
        return b"", b"", []
    funcs: list[tuple[int, int]] = []
    lines: list[tuple[int, int, int, int]] = []
    for f in functions:
        base = starts[f.key]
        lo, hi = f.offset * _INSN, f.end * _INSN
        rec = next((r for r in extras.func_info.get(f.section, ()) if r[0] == lo), None)
        if rec is None:
            return b"", b"", [f"no BTF func_info for {f.name}: loaded without func/line info"]
        funcs.append((base, rec[1]))
        for off, file_off, line_off, col in extras.line_info.get(f.section, ()):
            if lo <= off < hi:
                lines.append((base + (off - lo) // _INSN, file_off, line_off, col))
    notes: list[str] = []
    lines.sort(key=lambda r: r[0])
    covered = {r[0] for r in lines}
    if any(start not in covered for start, _ in funcs) or any(
        a[0] == b[0] for a, b in zip(lines, lines[1:])
    ):
        notes.append("BTF line_info does not cover every function start: no line info")
        lines = []
    fi = b"".join(struct.pack("<II", *r) for r in funcs)
    li = b"".join(struct.pack("<IIII", *r) for r in lines)
    return fi, li, notes
