"""Callbacks the stack analysis treats apart: asynchronous ones and inlined ``bpf_loop``.

* ``check_max_stack_depth`` (``kernel/bpf/verifier.c``) walks the call graph from the entry
  *and* from every asynchronous callback (``is_async_cb``: the callback of
  ``bpf_timer_set_callback``, of the ``bpf_wq_set_callback`` kfunc): such a callback runs later
  on a stack of its own, so it is a root of its own chains, not a frame of the function that
  loads its address (synchronous callbacks, ``bpf_loop`` and friends, are);
* since 5.19 (1ade23711971, "bpf: Inline calls to bpf_loop when callback is known") a
  ``bpf_loop`` call whose callback is a constant and whose flags are 0 is inlined after the
  verification (``optimize_bpf_loop``): the caller's frame grows by 3 slots (r6-r8 are kept
  there, 24 bytes, plus the rounding of its depth to 8). That happens after the check of the
  combined stack, which never sees it; the verifier's "stack depth" line does.

Both are read from straight-line code around the call: the function address loaded with
``ld_imm64`` and the flags set by ``mov`` in the same block. A callback found no other way is
treated as synchronous (a frame of its loader: the combined depth can only be over-counted).
"""

from __future__ import annotations

from pytest_ebpf.abi import Helper
from pytest_ebpf.obj.isa import Insn
from pytest_ebpf.obj.model import Function, Program

__all__ = ["ASYNC_KFUNCS", "LOOP_INLINE_BYTES", "async_callbacks", "loop_inline_bytes"]

LOOP_INLINE_BYTES = 24
"""``BPF_REG_SIZE * 3``: what an inlined ``bpf_loop`` adds below its caller's frame."""
ASYNC_KFUNCS = frozenset({"bpf_wq_set_callback_impl", "bpf_wq_set_callback"})
"""Kfuncs whose second argument is an asynchronous callback."""


def _writes(insn: Insn) -> int | None:
    """The register *insn* writes (None for stores, jumps and calls)."""
    cls = insn.opcode & 0x07
    if cls in (0, 1, 4, 7):
        return insn.dst
    return None


def _block_before(fn: Function, index: int) -> list[Insn]:
    """The instructions of *fn* before slot *index*, back to the previous jump, call or exit,
    latest first."""
    out = []
    for insn in reversed(fn.insns):
        if insn.index >= index:
            continue
        if insn.is_jump or insn.is_call or insn.is_exit:
            break
        out.append(insn)
    return out


def _inlined_loop(prog: Program, fn: Function, call: Insn) -> bool:
    r2 = r4 = None
    for insn in _block_before(fn, call.index):
        reg = _writes(insn)
        if reg == 2 and r2 is None:
            r2 = insn
        elif reg == 4 and r4 is None:
            r4 = insn
    if r2 is None or r2.opcode != 0x18 or r4 is None or r4.opcode not in (0xB7, 0xB4) or r4.imm:
        return False
    return any(ref.insn_index == r2.index and prog.index.pointed_to(ref) is not None
               for ref in fn.refs)


def loop_inline_bytes(prog: Program, fn: Function) -> int:
    """What the inlining of *fn*'s ``bpf_loop`` calls adds to its frame (5.19+; once per
    function whatever the number of calls)."""
    for call in fn.calls:
        if (call.kind == "helper" and call.helper_id == Helper.loop
                and _inlined_loop(prog, fn, call.insn)):
            return LOOP_INLINE_BYTES
    return 0


def _async_call(fn: Function, load: Insn) -> bool:
    """Does the function address *load* puts in a register reach r2 of an asynchronous
    callback's setter in the same block?"""
    held = {load.dst}
    calls = {c.insn.index: c for c in fn.calls}
    for insn in fn.insns:
        if insn.index <= load.index:
            continue
        call = calls.get(insn.index)
        if call is not None:
            return 2 in held and (
                (call.kind == "helper" and call.helper_id == Helper.timer_set_callback)
                or (call.kind == "kfunc" and call.target in ASYNC_KFUNCS))
        if insn.is_jump or insn.is_exit:
            return False
        reg = _writes(insn)
        if reg is None:
            continue
        if insn.opcode == 0xBF and insn.src in held:  # r = r (copy)
            held.add(reg)
        else:
            held.discard(reg)
    return False


def async_callbacks(prog: Program) -> frozenset[tuple[str, str]]:
    """Keys of the functions of *prog* that are asynchronous callbacks (roots of their own)."""
    index = prog.index
    out = set()
    for fn in prog.functions:
        for ref in fn.refs:
            callee = index.pointed_to(ref)
            load = fn.insn_at(ref.insn_index)
            if callee is not None and load is not None and _async_call(fn, load):
                out.add(callee.key)
    return frozenset(out)
