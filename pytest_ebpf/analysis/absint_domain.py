"""The abstract values of :mod:`pytest_ebpf.analysis.absint`: what a register or a stack slot
holds, modelled on the kernel verifier's ``struct bpf_reg_state``.

The invariant that makes the interpreter free of false alarms: every value is *at least as
precise* as the kernel's for the same register on the same path (a :class:`Scalar`'s interval is
a subset of every set the kernel's bounds and tnum allow; a pointer has the kernel's type, fixed
offset and packet range). Whatever cannot be kept that precise becomes :data:`OPAQUE`, and the
interpreter stops a path as soon as a decision depends on an opaque value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Union

__all__ = [
    "AT_PKT_END", "BEYOND_PKT_END", "OPAQUE", "S64_MAX", "U32_MAX", "U64", "UNINIT", "Misc",
    "Opaque", "Ptr", "PtrKind", "Scalar", "State", "Uninit", "Value", "const", "signed", "unknown",
]

U64 = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
S64_MAX = (1 << 63) - 1
AT_PKT_END = -1
"""``range`` of a packet pointer known to be ``>= pkt_end`` (the kernel's ``AT_PKT_END``)."""
BEYOND_PKT_END = -2
"""``range`` of a packet pointer known to be ``> pkt_end`` (the kernel's ``BEYOND_PKT_END``)."""


def signed(v: int) -> int:
    """The u64 *v* read as s64."""
    return v - (1 << 64) if v > S64_MAX else v


@dataclass(frozen=True)
class Scalar:
    """A number in ``[umin, umax]`` (u64). ``id``/``delta``: registers with the same non-zero id
    hold ``base + delta`` for one unknown base (the kernel's linked scalars)."""

    umin: int
    umax: int
    id: int = 0
    delta: int = 0
    holes: bool = False
    """Only ``umin`` and ``umax`` are exact (both are values it can hold), not the values
    between (``x << k``, ``x * K``): fine as an offset, but no branch is judged on it."""

    @property
    def const(self) -> int | None:
        return self.umin if self.umin == self.umax else None

    @property
    def crosses_sign(self) -> bool:
        return self.umin <= S64_MAX < self.umax

    @property
    def smin(self) -> int:
        return signed(self.umin)

    @property
    def smax(self) -> int:
        return signed(self.umax)


def const(v: int) -> Scalar:
    return Scalar(v & U64, v & U64)


def unknown(bits: int = 64) -> Scalar:
    """Any value of *bits* bits, zero-extended (what a load of that size gives)."""
    return Scalar(0, (1 << bits) - 1)


PtrKind = Literal["ctx", "pkt", "pkt_end", "map_value", "map_value_or_null", "stack", "map_ptr"]


@dataclass(frozen=True)
class Ptr:
    """A pointer the kernel tracks: its type, fixed offset ``off``, variable offset
    ``[vmin, vmax]`` (kept only for packets and map values), ``id`` (shared by pointers from
    one packet pointer with a variable offset, or by copies of one map lookup result) and, for
    packets, the verified ``range``."""

    kind: PtrKind
    off: int = 0
    id: int = 0
    range: int = 0
    vmin: int = 0
    vmax: int = 0
    value_size: int = 0
    """The map's value size (``map_value`` and ``map_value_or_null``)."""
    map_name: str = ""
    maybe_nonnull: bool = False
    """``map_value_or_null`` of an array map: the kernel may have proven it non-null (a
    constant in-range key), so an access before the null check is not judged."""
    rdonly: bool = False
    """A value of a map the program may only read (``BPF_F_RDONLY_PROG``: ``.rodata`` global
    data, maps declared with that flag): stores are refused, loads may be constants."""
    wronly: bool = False
    """A value of a map the program may only write (``BPF_F_WRONLY_PROG``): loads, and helpers
    reading it (a key or a value argument), are refused."""


@dataclass(frozen=True)
class Opaque:
    """A value whose kernel type or bounds are not modelled (helper results, unmodelled loads and
    ALU ops...): any decision that depends on it stops the path."""


@dataclass(frozen=True)
class Uninit:
    """A register the kernel considers not initialised (after a call, at entry)."""


@dataclass(frozen=True)
class Misc(Opaque):
    """A stack slot the program wrote other than with one 8-byte spill (the kernel's
    ``STACK_MISC``): its value is opaque, but the bytes in ``mask`` (bit i: byte ``slot + i``)
    are initialised, so a helper may read them."""

    mask: int = 0


OPAQUE = Opaque()
UNINIT = Uninit()
Value = Union[Scalar, Ptr, Opaque, Uninit]


@dataclass
class State:
    """One path's machine state: R0-R10 and the stack slots written (offset -> value; an
    8-byte spill at an 8-aligned offset keeps the value, other stores leave a :class:`Misc`
    saying which bytes are written, and a helper's writes leave them opaque)."""

    regs: list[Value]
    stack: dict[int, Value]

    def copy(self) -> State:
        return State(list(self.regs), dict(self.stack))

    def key(self) -> tuple[object, ...]:
        return (tuple(self.regs), tuple(sorted(self.stack.items())))

    def values(self) -> list[tuple[str, int, Value]]:
        """Every register and stack slot, as ``("reg"|"stack", index, value)``."""
        out: list[tuple[str, int, Value]] = [("reg", i, v) for i, v in enumerate(self.regs)]
        out += [("stack", off, v) for off, v in self.stack.items()]
        return out

    def put(self, where: str, index: int, value: Value) -> None:
        if where == "reg":
            self.regs[index] = value
        else:
            self.stack[index] = value

    def replace_where(self, pred: object, new: object) -> None:
        """Replace every value ``v`` with ``pred(v)`` true by ``new(v)``."""
        assert callable(pred) and callable(new)
        for where, index, v in self.values():
            if pred(v):
                self.put(where, index, new(v))


def shift_linked(s: Scalar, lo: int, hi: int, from_delta: int) -> Scalar | None:
    """The interval of *s* (same id as a register refined to ``[lo, hi]`` at *from_delta*),
    intersected with its own; None when the shift wraps (the caller gives up on it)."""
    d = s.delta - from_delta
    nlo, nhi = lo + d, hi + d
    if nlo < 0 or nhi > U64:
        return None
    if s.holes:
        return None
    return replace(s, umin=max(s.umin, nlo), umax=min(s.umax, nhi))
