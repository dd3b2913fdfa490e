"""eBPF instruction decoder and disassembler.

The encoding follows the kernel's ``Documentation/bpf/standardization/instruction-set.rst``
and ``include/uapi/linux/bpf.h``/``bpf_common.h``.  Every instruction is one 8-byte *slot*::

    opcode:8  regs:8  off:16 (signed)  imm:32 (signed)

in the byte order of the object.  On little-endian objects the low nibble of ``regs`` is the
destination register and the high nibble the source register; big-endian objects store them the
other way round.  ``ld_imm64`` (opcode ``0x18``) spans two slots: the second slot's ``imm`` holds
the upper 32 bits of the constant.

Instruction indices are *slot* indices, as the kernel and ``llvm-objdump`` count them, so the
instruction after an ``ld_imm64`` at slot 5 is at slot 7.

:meth:`Insn.text` prints the instruction in the syntax of ``llvm-objdump -d`` (LLVM 22) without
its trailing ``<label>`` annotations; loads, stores and atomics of fewer than 8 bytes use the
32-bit ``wN`` register names, as ``llvm-objdump`` does by default.

Unknown encodings never raise: they decode to an :class:`Insn` whose ``known`` is ``False`` and
whose text is ``<unknown opcode 0xNN>``.  The only errors are an input length that is not a
multiple of 8 and an ``ld_imm64`` whose second slot is missing (:class:`ObjectError`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable, Optional

from pytest_ebpf.abi import PseudoCall
from pytest_ebpf.errors import ObjectError

__all__ = [
    "CLASS_NAMES",
    "INSN_SIZE",
    "Insn",
    "decode",
    "decode_at",
    "jump_target_of",
    "opcode_slots",
    "raw_slots",
    "register_tables",
    "second_slots",
]

INSN_SIZE = 8

# ld_imm64 and call ``src`` values: pytest_ebpf.abi.PseudoSrc and PseudoCall.

# --- encoding tables (bpf_common.h / bpf.h) --------------------------------------------------

_LD, _LDX, _ST, _STX, _ALU, _JMP, _JMP32, _ALU64 = range(8)

CLASS_NAMES: dict[int, str] = {
    _LD: "ld",
    _LDX: "ldx",
    _ST: "st",
    _STX: "stx",
    _ALU: "alu",
    _JMP: "jmp",
    _JMP32: "jmp32",
    _ALU64: "alu64",
}

_SRC_X = 0x08  # BPF_X: the source operand is the ``src`` register (BPF_K: ``imm``)

# size field (bits 3-4) of load/store opcodes -> bytes
_SIZE_BYTES: dict[int, int] = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
# mode field (bits 5-7) of load/store opcodes
_IMM, _ABS, _IND, _MEM, _MEMSX, _ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

# ALU operation (bits 4-7) -> compound assignment operator; neg/mov/end are handled apart.
_ALU_ASSIGN: dict[int, str] = {
    0x00: "+=",  # add
    0x10: "-=",  # sub
    0x20: "*=",  # mul
    0x30: "/=",  # div (off 0) / sdiv (off 1)
    0x40: "|=",  # or
    0x50: "&=",  # and
    0x60: "<<=",  # lsh
    0x70: ">>=",  # rsh
    0x90: "%=",  # mod (off 0) / smod (off 1)
    0xA0: "^=",  # xor
    0xC0: "s>>=",  # arsh
}
_ALU_SIGNED_ASSIGN: dict[int, str] = {0x30: "s/=", 0x90: "s%="}
_ALU_NEG, _ALU_MOV, _ALU_END = 0x80, 0xB0, 0xD0
# movsx ``off`` values accepted per class
_MOVSX_WIDTHS: dict[int, frozenset[int]] = {
    _ALU: frozenset({8, 16}),
    _ALU64: frozenset({8, 16, 32}),
}
_ADDR_SPACE_CAST_OFF = 1  # ALU64 MOV X with off 1 (arena address space cast)
_END_WIDTHS = frozenset({16, 32, 64})

# jump operation (bits 4-7) of a conditional jump -> comparison operator
_JMP_COND: dict[int, str] = {
    0x10: "==",  # jeq
    0x20: ">",  # jgt
    0x30: ">=",  # jge
    0x40: "&",  # jset
    0x50: "!=",  # jne
    0x60: "s>",  # jsgt
    0x70: "s>=",  # jsge
    0xA0: "<",  # jlt
    0xB0: "<=",  # jle
    0xC0: "s<",  # jslt
    0xD0: "s<=",  # jsle
}
_JMP_JA, _JMP_CALL, _JMP_EXIT, _JMP_JCOND = 0x00, 0x80, 0x90, 0xE0
_JCOND_MAY_GOTO = 0  # ``src`` of a JCOND instruction

# atomic operations (imm of STX|ATOMIC)
_FETCH = 0x01
_ATOMIC_RMW: dict[int, str] = {0x00: "add", 0x40: "or", 0x50: "and", 0xA0: "xor"}
_ATOMIC_RMW_OP: dict[int, str] = {0x00: "+=", 0x40: "|=", 0x50: "&=", 0xA0: "^="}
_ATOMIC_XCHG = 0xE0 | _FETCH
_ATOMIC_CMPXCHG = 0xF0 | _FETCH
_ATOMIC_LOAD_ACQ = 0x100
_ATOMIC_STORE_REL = 0x110

_TYPE_U: dict[int, str] = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}
_TYPE_S: dict[int, str] = {1: "s8", 2: "s16", 4: "s32"}

# Instruction kinds (internal classification, computed once per Insn).
_K_UNKNOWN = ""
_K_ALU = "alu"
_K_NEG = "neg"
_K_MOV = "mov"
_K_MOVSX = "movsx"
_K_ASCAST = "addr_space_cast"
_K_END = "end"
_K_BSWAP = "bswap"
_K_LD_IMM64 = "ld_imm64"
_K_LD_ABS = "ld_abs"
_K_LD_IND = "ld_ind"
_K_LDX = "ldx"
_K_LDXSX = "ldxsx"
_K_ST = "st"
_K_STX = "stx"
_K_ATOMIC_RMW = "atomic_rmw"
_K_ATOMIC_FETCH = "atomic_fetch"
_K_XCHG = "xchg"
_K_CMPXCHG = "cmpxchg"
_K_LOAD_ACQ = "load_acquire"
_K_STORE_REL = "store_release"
_K_JA = "ja"
_K_GOTOL = "gotol"
_K_GOTOX = "gotox"
_K_JCOND = "jcond"
_K_MAY_GOTO = "may_goto"
_K_CALL = "call"
_K_CALLX = "callx"
_K_EXIT = "exit"

_MEMORY_KINDS = frozenset(
    {
        _K_LD_ABS,
        _K_LD_IND,
        _K_LDX,
        _K_LDXSX,
        _K_ST,
        _K_STX,
        _K_ATOMIC_RMW,
        _K_ATOMIC_FETCH,
        _K_XCHG,
        _K_CMPXCHG,
        _K_LOAD_ACQ,
        _K_STORE_REL,
    }
)
_LOAD_KINDS = frozenset(
    {
        _K_LD_ABS,
        _K_LD_IND,
        _K_LDX,
        _K_LDXSX,
        _K_ATOMIC_RMW,
        _K_ATOMIC_FETCH,
        _K_XCHG,
        _K_CMPXCHG,
        _K_LOAD_ACQ,
    }
)
_STORE_KINDS = frozenset(
    {_K_ST, _K_STX, _K_ATOMIC_RMW, _K_ATOMIC_FETCH, _K_XCHG, _K_CMPXCHG, _K_STORE_REL}
)
_ATOMIC_KINDS = frozenset(
    {_K_ATOMIC_RMW, _K_ATOMIC_FETCH, _K_XCHG, _K_CMPXCHG, _K_LOAD_ACQ, _K_STORE_REL}
)
_JUMP_KINDS = frozenset({_K_JCOND, _K_JA, _K_GOTOL, _K_GOTOX, _K_MAY_GOTO})
_UNCOND_KINDS = frozenset({_K_JA, _K_GOTOL, _K_GOTOX})

# Opcodes whose meaning does not depend on other fields, for each class; the rest is resolved by
# the per-class functions below.
_LD_KINDS: dict[int, str] = {
    _IMM | 0x18: _K_LD_IMM64,
    _ABS | 0x00: _K_LD_ABS,
    _ABS | 0x08: _K_LD_ABS,
    _ABS | 0x10: _K_LD_ABS,
    _IND | 0x00: _K_LD_IND,
    _IND | 0x08: _K_LD_IND,
    _IND | 0x10: _K_LD_IND,
}
_LDX_KINDS: dict[int, str] = {
    _MEM | 0x00: _K_LDX,
    _MEM | 0x08: _K_LDX,
    _MEM | 0x10: _K_LDX,
    _MEM | 0x18: _K_LDX,
    _MEMSX | 0x00: _K_LDXSX,
    _MEMSX | 0x08: _K_LDXSX,
    _MEMSX | 0x10: _K_LDXSX,
}
_ST_KINDS: dict[int, str] = {_MEM | s: _K_ST for s in _SIZE_BYTES}
_STX_KINDS: dict[int, str] = {_MEM | s: _K_STX for s in _SIZE_BYTES}

# atomic imm -> kind, per access size (8/16-bit atomics only exist as acquire/release)
_ATOMIC_KIND_WIDE: dict[int, str] = {
    **{op: _K_ATOMIC_RMW for op in _ATOMIC_RMW},
    **{op | _FETCH: _K_ATOMIC_FETCH for op in _ATOMIC_RMW},
    _ATOMIC_XCHG: _K_XCHG,
    _ATOMIC_CMPXCHG: _K_CMPXCHG,
    _ATOMIC_LOAD_ACQ: _K_LOAD_ACQ,
    _ATOMIC_STORE_REL: _K_STORE_REL,
}
_ATOMIC_KIND_NARROW: dict[int, str] = {
    _ATOMIC_LOAD_ACQ: _K_LOAD_ACQ,
    _ATOMIC_STORE_REL: _K_STORE_REL,
}


def _classify_alu(cls: int, opcode: int, src: int, off: int, imm: int) -> str:
    op = opcode & 0xF0
    x = opcode & _SRC_X
    if op == _ALU_NEG:
        return _K_UNKNOWN if x else _K_NEG
    if op == _ALU_END:
        if imm not in _END_WIDTHS:
            return _K_UNKNOWN
        if cls == _ALU:
            return _K_END
        return _K_UNKNOWN if x else _K_BSWAP
    if op == _ALU_MOV:
        if off == 0:
            return _K_MOV
        if not x:
            return _K_UNKNOWN
        if off in _MOVSX_WIDTHS[cls]:
            return _K_MOVSX
        if cls == _ALU64 and off == _ADDR_SPACE_CAST_OFF:
            return _K_ASCAST
        return _K_UNKNOWN
    if op in _ALU_SIGNED_ASSIGN:
        return _K_ALU if off in (0, 1) else _K_UNKNOWN
    # ``off`` is reserved (zero) for the other operations.
    return _K_ALU if op in _ALU_ASSIGN and off == 0 else _K_UNKNOWN


_JMP_KINDS: dict[int, str] = {
    _JMP | _JMP_JA: _K_JA,
    _JMP | _JMP_JA | _SRC_X: _K_GOTOX,
    _JMP | _JMP_CALL: _K_CALL,
    _JMP | _JMP_CALL | _SRC_X: _K_CALLX,
    _JMP | _JMP_EXIT: _K_EXIT,
}


def _classify_jmp(cls: int, opcode: int, src: int, off: int, imm: int) -> str:
    op = opcode & 0xF0
    x = opcode & _SRC_X
    if op in _JMP_COND:
        return _K_JCOND
    if cls == _JMP32:
        return _K_GOTOL if opcode == (_JMP32 | _JMP_JA) else _K_UNKNOWN
    if op == _JMP_JCOND and not x:
        return _K_MAY_GOTO if src == _JCOND_MAY_GOTO else _K_UNKNOWN
    if opcode == _JMP | _JMP_EXIT and imm != 0:
        return _K_UNKNOWN
    return _JMP_KINDS.get(opcode, _K_UNKNOWN)


def _classify(opcode: int, src: int, off: int, imm: int) -> str:
    cls = opcode & 0x07
    if cls in (_ALU, _ALU64):
        return _classify_alu(cls, opcode, src, off, imm)
    if cls in (_JMP, _JMP32):
        return _classify_jmp(cls, opcode, src, off, imm)
    mode_size = opcode & 0xF8
    if cls == _LD:
        return _LD_KINDS.get(mode_size, _K_UNKNOWN)
    if cls == _LDX:
        return _LDX_KINDS.get(mode_size, _K_UNKNOWN)
    if cls == _ST:
        return _ST_KINDS.get(mode_size, _K_UNKNOWN)
    # STX
    if (mode_size & 0xE0) == _ATOMIC:
        table = _ATOMIC_KIND_WIDE if _SIZE_BYTES[opcode & 0x18] >= 4 else _ATOMIC_KIND_NARROW
        return table.get(imm, _K_UNKNOWN)
    return _STX_KINDS.get(mode_size, _K_UNKNOWN)


# --- text helpers ----------------------------------------------------------------------------


def _hex(value: int) -> str:
    """Signed hexadecimal, as llvm-objdump prints immediates: ``0x4``, ``-0x8``."""
    return hex(value)


def _rel(value: int) -> str:
    """A branch displacement: ``+0x3``, ``-0x5``, ``+0x0``."""
    return f"+{value:#x}" if value >= 0 else f"-{-value:#x}"


def _addr(reg: int, off: int) -> str:
    return f"r{reg} + {off:#x}" if off >= 0 else f"r{reg} - {-off:#x}"


# --- the instruction -------------------------------------------------------------------------

Symbolizer = Callable[["Insn"], Optional[str]]


@dataclass(frozen=True)
class Insn:
    """One decoded instruction (``size`` slots long, starting at slot ``index``).

    ``imm`` is the signed 32-bit immediate of the first slot.  For ``ld_imm64`` ``imm64`` is the
    full 64-bit constant as an unsigned integer (low 32 bits from the first slot, high 32 bits
    from the second) and ``size`` is 2; for every other instruction ``imm64`` is ``None``.
    """

    index: int
    opcode: int
    dst: int
    src: int
    off: int
    imm: int
    imm64: int | None = None
    size: int = 1
    _kind: str = field(init=False, repr=False, compare=False, default=_K_UNKNOWN)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_kind", _classify(self.opcode, self.src, self.off, self.imm))

    # -- classification ------------------------------------------------------------------------

    @property
    def known(self) -> bool:
        """False when the encoding is not a defined eBPF instruction."""
        return self._kind != _K_UNKNOWN

    @property
    def cls(self) -> str:
        """Instruction class: ld, ldx, st, stx, alu, jmp, jmp32 or alu64."""
        return CLASS_NAMES[self.opcode & 0x07]

    @property
    def is_alu(self) -> bool:
        """Any defined ALU or ALU64 instruction."""
        return self.opcode & 0x07 in (_ALU, _ALU64) and self.known

    @property
    def is_exit(self) -> bool:
        return self._kind == _K_EXIT

    @property
    def is_call(self) -> bool:
        """Any call: helper, BPF-to-BPF, kfunc (``call imm``) or indirect (``callx``)."""
        return self._kind in (_K_CALL, _K_CALLX)

    @property
    def is_helper_call(self) -> bool:
        return self._kind == _K_CALL and self.src == 0

    @property
    def is_pseudo_call(self) -> bool:
        """A BPF-to-BPF call; its target slot is :attr:`call_target`."""
        return self._kind == _K_CALL and self.src == PseudoCall.CALL

    @property
    def is_kfunc_call(self) -> bool:
        return self._kind == _K_CALL and self.src == PseudoCall.KFUNC_CALL

    @property
    def is_callx(self) -> bool:
        """An indirect call through a register (opcode 0x8d); see :attr:`callx_reg`."""
        return self._kind == _K_CALLX

    @property
    def callx_reg(self) -> int | None:
        """Register holding a ``callx`` target.

        The kernel and current LLVM put it in ``dst``; older LLVM releases put it in ``imm``
        and left ``dst`` zero.
        """
        if self._kind != _K_CALLX:
            return None
        if self.dst == 0 and 0 < self.imm <= 10:
            return self.imm
        return self.dst

    @property
    def call_target(self) -> int | None:
        """Target slot of a BPF-to-BPF call (``index + 1 + imm``), else None."""
        return self.index + 1 + self.imm if self.is_pseudo_call else None

    @property
    def is_jump(self) -> bool:
        """Any jump of class jmp/jmp32 other than call and exit (incl. may_goto and gotox)."""
        return self._kind in _JUMP_KINDS

    @property
    def is_conditional_jump(self) -> bool:
        """A jump that may fall through: the comparisons and ``may_goto``."""
        return self._kind in (_K_JCOND, _K_MAY_GOTO)

    @property
    def is_unconditional_jump(self) -> bool:
        """``goto`` (ja), ``gotol`` (jmp32 ja, target in imm) and the indirect ``gotox``."""
        return self._kind in _UNCOND_KINDS

    @property
    def is_indirect_jump(self) -> bool:
        """``gotox rN``: a jump through a register, whose target is not static."""
        return self._kind == _K_GOTOX

    @property
    def is_may_goto(self) -> bool:
        return self._kind == _K_MAY_GOTO

    @property
    def jump_target(self) -> int | None:
        """Target slot of a jump (``index + 1 + off``; ``+ imm`` for gotol), else None.

        None for calls (see :attr:`call_target`), exit, ``gotox`` and non-jumps.
        """
        return _target(self._kind, self.index, self.off, self.imm)

    @property
    def is_wide(self) -> bool:
        """``ld_imm64``, the only two-slot instruction."""
        return self._kind == _K_LD_IMM64

    @property
    def pseudo(self) -> int | None:
        """``src`` of an ld_imm64 (0 plain constant, ``PseudoSrc.MAP_FD``, ...), else None."""
        return self.src if self._kind == _K_LD_IMM64 else None

    @property
    def mem_size(self) -> int:
        """Bytes read or written by a memory instruction; 0 for anything else (incl. ld_imm64)."""
        if self._kind not in _MEMORY_KINDS:
            return 0
        return _SIZE_BYTES[self.opcode & 0x18]

    @property
    def is_load(self) -> bool:
        """Reads memory: ldx (incl. sign-extending), legacy packet loads, atomics but store_release.

        ``ld_imm64`` is not a load (it reads no memory): see :attr:`is_wide`.
        """
        return self._kind in _LOAD_KINDS

    @property
    def is_store(self) -> bool:
        """Writes memory: st, stx, atomics but load_acquire."""
        return self._kind in _STORE_KINDS

    @property
    def is_atomic(self) -> bool:
        """Any STX|ATOMIC instruction (read-modify-write, xchg, cmpxchg, acquire/release)."""
        return self._kind in _ATOMIC_KINDS

    @property
    def is_sign_extending(self) -> bool:
        """Sign-extending loads (``*(s8 *)`` ...) and moves (``(s8)rN`` ...)."""
        return self._kind in (_K_LDXSX, _K_MOVSX)

    @property
    def is_cpu_v4(self) -> bool:
        """An instruction of cpu v4 (kernel 6.6): sign-extending loads and moves, bswap,
        sdiv/smod, gotol."""
        if self._kind in (_K_LDXSX, _K_MOVSX, _K_BSWAP, _K_GOTOL):
            return True
        return self._kind == _K_ALU and self.off == 1 and self.opcode & 0xF0 in (0x30, 0x90)

    @property
    def is_packet_load(self) -> bool:
        """Legacy LD_ABS / LD_IND packet access."""
        return self._kind in (_K_LD_ABS, _K_LD_IND)

    @property
    def is_64bit(self) -> bool:
        """Operates on whole 64-bit registers (alu64, jmp, dw memory ops, ld_imm64)."""
        cls = self.opcode & 0x07
        if cls in (_ALU64, _JMP):
            return True
        if cls in (_ALU, _JMP32):
            return False
        return _SIZE_BYTES[self.opcode & 0x18] == 8

    # -- disassembly -----------------------------------------------------------------------------

    def text(self, symbolize: Symbolizer | None = None) -> str:
        """The instruction in llvm-objdump syntax.

        ``symbolize``, when given, is called with the instruction; a non-empty string it returns
        is appended as `` <string>`` (like llvm-objdump's jump labels).
        """
        printer = _PRINTERS.get(self._kind)
        body = printer(self) if printer is not None else f"<unknown opcode {self.opcode:#04x}>"
        if symbolize is not None:
            label = symbolize(self)
            if label:
                body = f"{body} <{label}>"
        return body

    def __str__(self) -> str:
        return self.text()


# --- printers --------------------------------------------------------------------------------


def _reg(insn: Insn, n: int) -> str:
    """``rN`` or ``wN`` depending on the operation width."""
    return f"r{n}" if insn.is_64bit else f"w{n}"


def _alu_source(insn: Insn) -> str:
    return _reg(insn, insn.src) if insn.opcode & _SRC_X else _hex(insn.imm)


def _p_alu(insn: Insn) -> str:
    op = insn.opcode & 0xF0
    sym = _ALU_SIGNED_ASSIGN[op] if insn.off == 1 and op in _ALU_SIGNED_ASSIGN else _ALU_ASSIGN[op]
    return f"{_reg(insn, insn.dst)} {sym} {_alu_source(insn)}"


def _p_neg(insn: Insn) -> str:
    d = _reg(insn, insn.dst)
    return f"{d} = -{d}"


def _p_mov(insn: Insn) -> str:
    return f"{_reg(insn, insn.dst)} = {_alu_source(insn)}"


def _p_movsx(insn: Insn) -> str:
    return f"{_reg(insn, insn.dst)} = (s{insn.off}){_reg(insn, insn.src)}"


def _p_ascast(insn: Insn) -> str:
    imm = insn.imm & 0xFFFFFFFF
    return f"r{insn.dst} = addr_space_cast(r{insn.src}, {imm >> 16:#x}, {imm & 0xFFFF:#x})"


def _p_end(insn: Insn) -> str:
    order = "be" if insn.opcode & _SRC_X else "le"
    return f"r{insn.dst} = {order}{insn.imm} r{insn.dst}"


def _p_bswap(insn: Insn) -> str:
    return f"r{insn.dst} = bswap{insn.imm} r{insn.dst}"


def _p_ld_imm64(insn: Insn) -> str:
    if insn.src:
        return f"ld_pseudo r{insn.dst}, {insn.src:#x}, {insn.imm & 0xFFFFFFFF:#x}"
    value = insn.imm64 if insn.imm64 is not None else insn.imm & 0xFFFFFFFF
    if value >= 1 << 63:
        value -= 1 << 64
    return f"r{insn.dst} = {_hex(value)} ll"


def _p_ld_abs(insn: Insn) -> str:
    return f"r0 = *({_TYPE_U[insn.mem_size]} *)skb[{_hex(insn.imm)}]"


def _p_ld_ind(insn: Insn) -> str:
    return f"r0 = *({_TYPE_U[insn.mem_size]} *)skb[r{insn.src}]"


def _p_ldx(insn: Insn) -> str:
    size = insn.mem_size
    return f"{_reg(insn, insn.dst)} = *({_TYPE_U[size]} *)({_addr(insn.src, insn.off)})"


def _p_ldxsx(insn: Insn) -> str:
    return f"r{insn.dst} = *({_TYPE_S[insn.mem_size]} *)({_addr(insn.src, insn.off)})"


def _p_st(insn: Insn) -> str:
    return f"*({_TYPE_U[insn.mem_size]} *)({_addr(insn.dst, insn.off)}) = {_hex(insn.imm)}"


def _p_stx(insn: Insn) -> str:
    target = f"*({_TYPE_U[insn.mem_size]} *)({_addr(insn.dst, insn.off)})"
    return f"{target} = {_reg(insn, insn.src)}"


def _p_atomic_rmw(insn: Insn) -> str:
    target = f"*({_TYPE_U[insn.mem_size]} *)({_addr(insn.dst, insn.off)})"
    return f"lock {target} {_ATOMIC_RMW_OP[insn.imm]} {_reg(insn, insn.src)}"


def _p_atomic_fetch(insn: Insn) -> str:
    s = _reg(insn, insn.src)
    name = _ATOMIC_RMW[insn.imm & ~_FETCH]
    ptr = f"({_TYPE_U[insn.mem_size]} *)({_addr(insn.dst, insn.off)})"
    return f"{s} = atomic_fetch_{name}({ptr}, {s})"


def _p_xchg(insn: Insn) -> str:
    s = _reg(insn, insn.src)
    name = "xchg_64" if insn.mem_size == 8 else "xchg32_32"
    return f"{s} = {name}({_addr(insn.dst, insn.off)}, {s})"


def _p_cmpxchg(insn: Insn) -> str:
    r0 = _reg(insn, 0)
    name = "cmpxchg_64" if insn.mem_size == 8 else "cmpxchg32_32"
    return f"{r0} = {name}({_addr(insn.dst, insn.off)}, {r0}, {_reg(insn, insn.src)})"


def _p_load_acquire(insn: Insn) -> str:
    ptr = f"({_TYPE_U[insn.mem_size]} *)({_addr(insn.src, insn.off)})"
    return f"{_reg(insn, insn.dst)} = load_acquire({ptr})"


def _p_store_release(insn: Insn) -> str:
    ptr = f"({_TYPE_U[insn.mem_size]} *)({_addr(insn.dst, insn.off)})"
    return f"store_release({ptr}, {_reg(insn, insn.src)})"


def _p_jcond(insn: Insn) -> str:
    rhs = _reg(insn, insn.src) if insn.opcode & _SRC_X else _hex(insn.imm)
    op = _JMP_COND[insn.opcode & 0xF0]
    return f"if {_reg(insn, insn.dst)} {op} {rhs} goto {_rel(insn.off)}"


_PRINTERS: dict[str, Callable[[Insn], str]] = {
    _K_ALU: _p_alu,
    _K_NEG: _p_neg,
    _K_MOV: _p_mov,
    _K_MOVSX: _p_movsx,
    _K_ASCAST: _p_ascast,
    _K_END: _p_end,
    _K_BSWAP: _p_bswap,
    _K_LD_IMM64: _p_ld_imm64,
    _K_LD_ABS: _p_ld_abs,
    _K_LD_IND: _p_ld_ind,
    _K_LDX: _p_ldx,
    _K_LDXSX: _p_ldxsx,
    _K_ST: _p_st,
    _K_STX: _p_stx,
    _K_ATOMIC_RMW: _p_atomic_rmw,
    _K_ATOMIC_FETCH: _p_atomic_fetch,
    _K_XCHG: _p_xchg,
    _K_CMPXCHG: _p_cmpxchg,
    _K_LOAD_ACQ: _p_load_acquire,
    _K_STORE_REL: _p_store_release,
    _K_JCOND: _p_jcond,
    _K_JA: lambda insn: f"goto {_rel(insn.off)}",
    _K_GOTOL: lambda insn: f"gotol {_rel(insn.imm)}",
    _K_GOTOX: lambda insn: f"gotox r{insn.dst}",
    _K_MAY_GOTO: lambda insn: f"may_goto {_rel(insn.off)}",
    _K_CALL: lambda insn: f"call {_hex(insn.imm)}",
    _K_CALLX: lambda insn: f"callx r{insn.callx_reg}",
    _K_EXIT: lambda insn: "exit",
}

def _target(kind: str, index: int, off: int, imm: int) -> int | None:
    if kind == _K_GOTOL:
        return index + 1 + imm
    if kind in (_K_JCOND, _K_JA, _K_MAY_GOTO):
        return index + 1 + off
    return None


def jump_target_of(index: int, opcode: int, src: int, off: int, imm: int) -> int | None:
    """:attr:`Insn.jump_target` of the undecoded instruction at slot *index* (for scans that do
    not build :class:`Insn` objects)."""
    return _target(_classify(opcode, src, off, imm), index, off, imm)


# --- decoding --------------------------------------------------------------------------------

_SLOT = {"little": struct.Struct("<BBhi"), "big": struct.Struct(">BBhi")}
_LD_IMM64_OPCODE = _LD | _IMM | 0x18


def _insn(
    index: int, opcode: int, dst: int, src: int, off: int, imm: int,
    imm64: int | None = None, size: int = 1,
) -> Insn:
    """``Insn(index, opcode, dst, src, off, imm, imm64, size)`` at a third of the cost: a frozen
    dataclass's __init__ sets every field through object.__setattr__, and objects hold tens of
    thousands of instructions."""
    insn = _new_insn(Insn)
    insn.__dict__.update(
        index=index, opcode=opcode, dst=dst, src=src, off=off, imm=imm, imm64=imm64, size=size,
        _kind=_classify(opcode, src, off, imm),
    )
    return insn


_new_insn = object.__new__


def decode(data: bytes, byteorder: str, base: int = 0) -> tuple[Insn, ...]:
    """Decode a section's instructions; ``byteorder`` is ``"little"`` or ``"big"``; the first
    slot of *data* gets index *base*.

    Raises :class:`ObjectError` when the length is not a multiple of 8 or an ``ld_imm64`` lacks
    its second slot.
    """
    slot = _slot_struct(byteorder)
    if len(data) % INSN_SIZE:
        raise ObjectError(f"instruction bytes length {len(data)} is not a multiple of {INSN_SIZE}")
    dst_of, src_of = register_tables(byteorder)
    slots = list(slot.iter_unpack(data))
    out: list[Insn] = []
    i = 0
    count = len(slots)
    while i < count:
        opcode, regs, off, imm = slots[i]
        dst, src = dst_of[regs], src_of[regs]
        if opcode == _LD_IMM64_OPCODE:
            if i + 1 >= count:
                raise ObjectError(f"truncated ld_imm64 at insn {base + i}")
            high = slots[i + 1][3] & 0xFFFFFFFF
            value = (high << 32) | (imm & 0xFFFFFFFF)
            out.append(_insn(base + i, opcode, dst, src, off, imm, value, 2))
            i += 2
        else:
            out.append(_insn(base + i, opcode, dst, src, off, imm))
            i += 1
    return tuple(out)


def _slot_struct(byteorder: str) -> struct.Struct:
    slot = _SLOT.get(byteorder)
    if slot is None:
        raise ObjectError(f"unsupported byte order {byteorder!r} (expected 'little' or 'big')")
    return slot


def decode_at(data: bytes, byteorder: str, slot: int, base: int = 0) -> Insn:
    """The one instruction starting at *slot* of *data* (index ``base + slot``), without decoding
    the others. The caller knows *slot* starts an instruction (see :func:`second_slots`)."""
    layout = _slot_struct(byteorder)
    opcode, regs, off, imm = layout.unpack_from(data, slot * INSN_SIZE)
    dst_of, src_of = register_tables(byteorder)
    dst, src = dst_of[regs], src_of[regs]
    if opcode != _LD_IMM64_OPCODE:
        return _insn(base + slot, opcode, dst, src, off, imm)
    if (slot + 2) * INSN_SIZE > len(data):
        raise ObjectError(f"truncated ld_imm64 at insn {base + slot}")
    high = layout.unpack_from(data, (slot + 1) * INSN_SIZE)[3] & 0xFFFFFFFF
    return _insn(base + slot, opcode, dst, src, off, imm, (high << 32) | (imm & 0xFFFFFFFF), 2)


def raw_slots(data: bytes, byteorder: str) -> Iterator[tuple[int, int, int, int]]:
    """The undecoded slots of *data*: ``(opcode, regs, off, imm)`` per 8 bytes (see
    :func:`register_tables` for the registers), for scans over many instructions."""
    return _slot_struct(byteorder).iter_unpack(data)


def register_tables(byteorder: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(dst_of, src_of)``: the destination and source register of each ``regs`` byte value."""
    if byteorder == "big":
        return _HIGH_NIBBLE, _LOW_NIBBLE
    return _LOW_NIBBLE, _HIGH_NIBBLE


_LOW_NIBBLE = tuple(b & 0x0F for b in range(256))
_HIGH_NIBBLE = tuple(b >> 4 for b in range(256))


def second_slots(data: bytes) -> frozenset[int]:
    """Slots of *data* (instruction bytes) that are the second halves of ``ld_imm64``s, found
    from the opcode bytes alone. ObjectError when the last ``ld_imm64`` has no second slot."""
    ops = data[::INSN_SIZE]
    wide = b"\x18"
    pos = ops.find(wide)
    if pos < 0:
        return frozenset()
    seconds: set[int] = set()
    while pos >= 0:
        if pos not in seconds:
            if pos + 1 >= len(ops):
                raise ObjectError(f"truncated ld_imm64 at insn {pos}")
            seconds.add(pos + 1)
        pos = ops.find(wide, pos + 1)
    return frozenset(seconds)


def opcode_slots(data: bytes, opcodes: bytes) -> list[int]:
    """Slots of *data* whose opcode byte is one of *opcodes* (second halves of ``ld_imm64``
    included: filter them with :func:`second_slots`)."""
    ops = data[::INSN_SIZE]
    out: list[int] = []
    for op in opcodes:
        needle = bytes((op,))
        pos = ops.find(needle)
        while pos >= 0:
            out.append(pos)
            pos = ops.find(needle, pos + 1)
    out.sort()
    return out
