"""Scalar arithmetic and comparisons for :mod:`pytest_ebpf.analysis.absint`.

Every function computes the *exact* image of its interval inputs, or returns None (the caller
makes the value opaque) when that image is not an interval: so the result is never less
precise than the kernel's, whose transfer functions over-approximate the same image.
"""

from __future__ import annotations

from pytest_ebpf.analysis.absint_domain import U32_MAX, U64, Scalar, const, signed

__all__ = ["JmpOp", "alu", "compare"]

_ADD, _SUB, _MUL, _DIV, _OR, _AND, _LSH, _RSH, _NEG, _MOD, _XOR, _ARSH = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xC0)

JmpOp = int
_JEQ, _JGT, _JGE, _JSET, _JNE, _JSGT, _JSGE, _JLT, _JLE, _JSLT, _JSLE = (
    0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0)
_SIGNED = frozenset({_JSGT, _JSGE, _JSLT, _JSLE})
_UNSIGNED_OF = {_JSGT: _JGT, _JSGE: _JGE, _JSLT: _JLT, _JSLE: _JLE}
_NEGATE = {_JEQ: _JNE, _JNE: _JEQ, _JGT: _JLE, _JLE: _JGT, _JGE: _JLT, _JLT: _JGE}
_SWAP = {_JEQ: _JEQ, _JNE: _JNE, _JGT: _JLT, _JLT: _JGT, _JGE: _JLE, _JLE: _JGE}


def _const_alu(op: int, a: int, b: int, bits: int) -> int | None:
    mask = (1 << bits) - 1
    a, b = a & mask, b & mask
    if op == _ADD:
        return (a + b) & mask
    if op == _SUB:
        return (a - b) & mask
    if op == _MUL:
        return (a * b) & mask
    if op == _DIV:
        return a // b if b else 0
    if op == _MOD:
        return a % b if b else a
    if op == _OR:
        return a | b
    if op == _AND:
        return a & b
    if op == _XOR:
        return a ^ b
    if op in (_LSH, _RSH, _ARSH):
        sh = b & (bits - 1)
        if op == _LSH:
            return (a << sh) & mask
        if op == _RSH:
            return a >> sh
        sa = a - (1 << bits) if a >> (bits - 1) else a
        return (sa >> sh) & mask
    if op == _NEG:
        return (-a) & mask
    return None


def alu(op: int, a: Scalar, b: Scalar, alu64: bool) -> Scalar | None:
    """``a op= b`` (``op``: the opcode's operation bits); None when not exactly representable.
    The result carries *a*'s id (with the constant folded into ``delta``) for ``+=``/``-=`` of
    a constant, as the kernel links ``rX += K`` to rX's copies; no id otherwise."""
    bits = 64 if alu64 else 32
    top = U64 if alu64 else U32_MAX
    ca, cb = a.const, b.const
    if ca is not None and cb is not None:
        r = _const_alu(op, ca, cb, bits)
        return None if r is None else const(r)
    if not alu64 and (a.umax > U32_MAX or b.umax > U32_MAX):
        return None
    if op in (_ADD, _SUB):
        lo, hi = ((a.umin + b.umin, a.umax + b.umax) if op == _ADD
                  else (a.umin - b.umax, a.umax - b.umin))
        if lo >= 0 and hi <= top:
            pass
        elif alu64 and lo > top:
            lo, hi = lo - (top + 1), hi - (top + 1)
        elif alu64 and hi < 0:
            lo, hi = lo + top + 1, hi + top + 1
        else:
            return None
        holes = a.holes or b.holes
        if cb is not None and a.id:
            d = cb if op == _ADD else -cb
            return Scalar(lo, hi, a.id, signed((a.delta + d) & U64), holes)
        return Scalar(lo, hi, holes=holes)
    if op == _AND and (ca is not None or cb is not None):
        m, x = (cb, a) if cb is not None else (ca, b)
        assert m is not None
        if m & (m + 1) == 0:  # m = 2^k - 1
            if x.umax <= m:
                return Scalar(x.umin, x.umax, holes=x.holes)
            if x.umax - x.umin >= m and not x.holes:
                return Scalar(0, m)
        return None
    if op == _RSH and cb is not None and cb < bits:
        return Scalar(a.umin >> cb, a.umax >> cb, holes=a.holes)
    if op == _LSH and cb is not None and cb < bits and a.umax << cb <= top:
        return Scalar(a.umin << cb, a.umax << cb, holes=True)
    if op == _MUL and cb is not None and cb > 0 and a.umax * cb <= top:
        return Scalar(a.umin * cb, a.umax * cb, holes=True)
    return None


def _as_line(s: Scalar, sign: bool, jmp32: bool) -> tuple[int, int] | None:
    """*s* as an interval of the comparison's number line; None when not one interval there."""
    if jmp32:
        lim = 0x7FFFFFFF if sign else U32_MAX
        return (s.umin, s.umax) if s.umax <= lim else None
    if sign:
        return None if s.crosses_sign else (signed(s.umin), signed(s.umax))
    return (s.umin, s.umax)


def _holds(op: int, a: tuple[int, int], b: tuple[int, int]) -> bool | None:
    (a0, a1), (b0, b1) = a, b
    if op == _JEQ:
        if a0 == a1 == b0 == b1:
            return True
        return False if a1 < b0 or b1 < a0 else None
    if op == _JNE:
        r = _holds(_JEQ, a, b)
        return None if r is None else not r
    if op == _JGT:
        return True if a0 > b1 else False if a1 <= b0 else None
    if op == _JGE:
        return True if a0 >= b1 else False if a1 < b0 else None
    return _holds(_SWAP[op], b, a)


def _refine(op: int, a: tuple[int, int], b: tuple[int, int]
            ) -> tuple[tuple[int, int], tuple[int, int]]:
    """*a* and *b* restricted to the values where ``a op b`` can hold."""
    (a0, a1), (b0, b1) = a, b
    if op == _JEQ:
        lo, hi = max(a0, b0), min(a1, b1)
        return (lo, hi), (lo, hi)
    if op == _JNE:
        if b0 == b1:
            a0, a1 = a0 + (a0 == b0), a1 - (a1 == b0)
        if a0 == a1:
            b0, b1 = b0 + (b0 == a0), b1 - (b1 == a0)
        return (a0, a1), (b0, b1)
    if op == _JGT:
        return (max(a0, b0 + 1), a1), (b0, min(b1, a1 - 1))
    if op == _JGE:
        return (max(a0, b0), a1), (b0, min(b1, a1))
    rb, ra = _refine(_SWAP[op], b, a)
    return ra, rb


def _from_line(s: Scalar, iv: tuple[int, int]) -> Scalar | None:
    lo, hi = iv
    if lo > hi:
        return None
    return Scalar(lo & U64, hi & U64, s.id, s.delta, s.holes)


Branch = tuple[Scalar, Scalar] | None
"""The operands on one side of a conditional jump; None: that side cannot happen."""


def compare(op: int, a: Scalar, b: Scalar, jmp32: bool) -> tuple[Branch, Branch] | None:
    """``(taken, fallthrough)`` of ``if a op b``, each side None when it cannot happen; None
    when the outcome cannot be judged as precisely as the kernel would (the path stops)."""
    if op == _JSET:
        ca, cb = a.const, b.const
        if ca is None or cb is None:
            return None
        mask = U32_MAX if jmp32 else U64
        return ((a, b), None) if ca & cb & mask else (None, (a, b))
    sign = op in _SIGNED
    base = _UNSIGNED_OF.get(op, op)
    if base not in _NEGATE:
        return None
    la, lb = _as_line(a, sign, jmp32), _as_line(b, sign, jmp32)
    if la is None or lb is None:
        return None
    verdict = _holds(base, la, lb)
    if verdict is None and (a.holes or b.holes):
        return None
    sides: list[Branch] = []
    for cond, want in ((base, True), (_NEGATE[base], False)):
        if verdict is not None and verdict != want:
            sides.append(None)
            continue
        ra, rb = _refine(cond, la, lb)
        na, nb = _from_line(a, ra), _from_line(b, rb)
        sides.append(None if na is None or nb is None else (na, nb))
    return sides[0], sides[1]

