"""Static stack analysis: per-function stack use and the combined depth of call chains.

What the kernel verifier does (``kernel/bpf/verifier.c``), and what this module reproduces
without loading anything:

* every stack access ``[r10 + off, r10 + off + size)`` (directly through ``r10``, through a
  register holding ``r10 + const``, or as a helper/kfunc/BPF-call argument pointing into the
  stack) grows the function's ``stack_depth`` to ``-off`` rounded up to 8 bytes; the verifier
  prints one figure per function in its ``stack depth A+B+...`` statistics line;
* a single access below ``r10 - 512`` (``MAX_BPF_STACK``) is refused ("invalid write to stack");
* ``check_max_stack_depth`` walks the BPF-to-BPF call graph from the entry; each frame counts
  ``round_up(max(depth, 1), 32)`` bytes (the interpreter's granularity) or
  ``round_up(depth, 16)`` when the program is JIT-compiled, and a chain whose sum exceeds 512 is
  refused ("combined stack size of N calls is M. Too large");
* a chain may be at most 8 frames deep (``MAX_CALL_FRAMES``; "the call stack of 8 frames is too
  deep !");
* since 6.13 the x86-64 JIT gives the frames of kprobe, tracepoint, perf_event, raw_tracepoint
  and (but iterators) tracing programs a private stack when the frame, rounded, is at least 64
  bytes: such a frame is held to 512 bytes alone and adds nothing to the combined depth
  (``private_min``; :mod:`pytest_ebpf.analysis.profiles` says which kernel does what);
* a subprogram (not the entry) that calls ``bpf_tail_call`` must be reached with less than 256
  bytes of combined stack in the frames above it ("tail_calls are not allowed when call stack of
  previous frames is N bytes. Too large");
* recursion is refused (the call graph must be acyclic).

Callbacks (a function whose address is loaded with ``ld_imm64``, e.g. for ``bpf_loop``) count as
frames called from the function that loads their address, as the verifier counts synchronous
callbacks; asynchronous ones (``bpf_timer_set_callback``, ``bpf_wq_set_callback``) are roots of
their own chains, as ``check_max_stack_depth`` walks them. An inlined ``bpf_loop`` (5.19+) adds
24 bytes to its caller's "stack depth" figure after the checks (:attr:`FrameUse.loop_inline`;
:mod:`pytest_ebpf.analysis.callbacks`).

Stack pointers with a variable offset: a scalar with known bounds (constants, ``&`` with a
non-negative mask, u8/u16 loads, ``+``/``-``/``>>`` of those, two constants met at a join)
added to a stack pointer counts its lowest bound, the deepest byte the verifier allows it to
reach (``r2 = (x & 8) - 16; r2 += r10`` reaches r10 - 16). An index of unknown bounds counts the
buffer's base (the index taken as >= 0): the kernel refuses unbounded stack offsets, so such a
program loads only when its bounds come from branches this pass does not follow; a negative
lower bound reached that way is under-counted (the one unsafe case left).

Register tracking is a single forward pass per function: registers holding ``r10 + const``
(copies, ``+=``/``-=`` of constants or of registers holding known constants, 8-byte spills and
fills of such pointers) are followed through straight-line code; at a forward jump the state is
handed to the target and merged there ("may" semantics: a register that is a stack pointer on any
incoming path keeps its deepest offset); calls clobber ``r0``-``r5``; state after ``exit`` or an
unconditional jump starts empty. Backward edges (loops) are not iterated: stack pointers are
virtually always re-derived inside loop bodies.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pytest_ebpf.abi import Helper
from pytest_ebpf.analysis.callbacks import async_callbacks, loop_inline_bytes
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.analysis.profiles import PRIV_STACK_MIN_SIZE, KernelProfile
from pytest_ebpf.obj.isa import Insn, jump_target_of, raw_slots, register_tables
from pytest_ebpf.obj.model import EbpfObject, Function, Program

__all__ = [
    "MAX_BPF_STACK",
    "MAX_CALL_FRAMES",
    "TAIL_CALL_STACK_LIMIT",
    "FrameUse",
    "ProgramStack",
    "StackLimits",
        "call_graph",
    "function_stack",
    "has_private_stacks",
    "profile_stack",
    "program_stack",
    "round_frame",
    "stack_problems",
]

MAX_BPF_STACK = 512
"""Bytes of stack a program may use, all frames of a call chain together."""
MAX_CALL_FRAMES = 8
"""Frames a BPF-to-BPF call chain may have (the entry included)."""
TAIL_CALL_STACK_LIMIT = 256
"""Combined bytes of the frames above a subprogram that calls ``bpf_tail_call`` must stay below
this."""
TAIL_CALL_HELPER = Helper.tail_call
"""``bpf_tail_call``'s helper id (:class:`pytest_ebpf.abi.Helper`)."""


@dataclass(frozen=True)
class StackLimits:
    """The verifier's stack limits."""

    total: int = MAX_BPF_STACK
    frames: int = MAX_CALL_FRAMES
    tail_call: int = TAIL_CALL_STACK_LIMIT


LIMITS = StackLimits()


@dataclass(frozen=True)
class FrameUse:
    """The stack one function uses."""

    function: Function
    depth: int
    """Bytes, rounded up to 8: what the verifier prints for the function in "stack depth"."""
    deepest_at: int | None = None
    """Slot of the (first) instruction touching the deepest byte; None when the function uses
    none."""
    loop_inline: int = 0
    """Bytes an inlined ``bpf_loop`` adds after the stack checks (5.19+; 24 or 0)."""

    @property
    def verifier_depth(self) -> int:
        """The figure of the verifier's "stack depth" line on 5.19+: :attr:`depth` plus
        :attr:`loop_inline` (which the combined-stack check does not see)."""
        return self.depth + self.loop_inline

    @property
    def deepest_insn(self) -> Insn | None:
        """The instruction at :attr:`deepest_at` (decoded when asked for)."""
        return None if self.deepest_at is None else self.function.insn_at(self.deepest_at)


@dataclass(frozen=True)
class ProgramStack:
    """The stack use of a program and the functions it reaches."""

    program: str
    frames: dict[str, int]
    """Function name -> bytes (as :attr:`FrameUse.depth`) for the entry and every function
    reachable from it, in :attr:`Program.functions` order."""
    chain: tuple[str, ...]
    """The call chain with the largest combined (rounded) depth, entry first."""
    chain_frames: tuple[int, ...]
    """Bytes per frame on :attr:`chain`, unrounded (the verifier's "stack depth" figures)."""
    total: int
    """Combined depth of :attr:`chain`: the frames rounded as the verifier rounds them."""
    max_frames: int
    """Number of frames of the longest call chain."""
    tail_call_depth: int | None
    """Largest combined depth of the frames *above* a function calling ``bpf_tail_call``; None
    when no reachable function makes a tail call."""
    recursion: tuple[str, ...]
    """A call cycle, closed (``("a", "b", "a")``; ``("f", "f")`` for self-recursion); empty when
    the call graph is acyclic."""
    deepest: FrameUse
    """The frame of :attr:`chain` using the most bytes (the first of equals)."""
    frame_round: int = 32
    """The rounding :attr:`total` used."""
    tail_call_chain: tuple[str, ...] = ()
    """The chain leading to the tail-calling function of :attr:`tail_call_depth` (that function
    last)."""
    longest_chain: tuple[str, ...] = ()
    """The call chain with the most frames (entry first)."""
    uses: dict[str, FrameUse] = field(default_factory=dict, repr=False, compare=False)
    """Function name -> :class:`FrameUse`, for every reachable function."""
    private: frozenset[str] = frozenset()
    """Functions whose frame gets a private stack (and so adds nothing to :attr:`total`)."""

    def contribution(self, name: str) -> int:
        """What the frame of *name* adds to the combined depth: rounded, or 0 when private."""
        return 0 if name in self.private else round_frame(self.frames[name], self.frame_round)


# ---------------------------------------------------------------------------------------------
# One function
# ---------------------------------------------------------------------------------------------

_SIZE = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_CALLER_SAVED = (0, 1, 2, 3, 4, 5)
_LD_IMM64 = 0x18
_NOT_WIDE, _WIDE_CONST, _WIDE_OTHER = 0, 1, 2


_State = tuple[dict[int, int], dict[int, int], dict[int, int], dict[int, tuple[int, int]]]


def _merge_into(
    target: _State,
    regs: dict[int, int],
    spills: dict[int, int],
    consts: dict[int, int],
    ranges: dict[int, tuple[int, int]],
) -> None:
    """Merge a state into a pending one: stack pointers and spills keep the deepest offset seen
    on any path (may); a scalar known on both paths keeps its constant when they agree, else
    the range covering both (must)."""
    t_regs, t_spills, t_consts, t_ranges = target
    for r, v in regs.items():
        old = t_regs.get(r)
        if old is None or v < old:
            t_regs[r] = v
    for s, v in spills.items():
        old = t_spills.get(s)
        if old is None or v < old:
            t_spills[s] = v
    for r in set(t_consts) | set(t_ranges):
        mine = (t_consts[r], t_consts[r]) if r in t_consts else t_ranges[r]
        theirs = (consts[r], consts[r]) if r in consts else ranges.get(r)
        if r in t_consts and consts.get(r) == t_consts[r]:
            continue
        t_consts.pop(r, None)
        t_ranges.pop(r, None)
        if theirs is not None:
            t_ranges[r] = (min(mine[0], theirs[0]), max(mine[1], theirs[1]))


def _bounds(consts: dict[int, int], ranges: dict[int, tuple[int, int]],
            r: int) -> tuple[int, int] | None:
    if r in consts:
        return consts[r], consts[r]
    return ranges.get(r)


def _and(consts: dict[int, int], ranges: dict[int, tuple[int, int]], dst: int,
         mask: int) -> None:
    """``dst &= mask`` (mask >= 0): a constant stays one, anything else is within [0, mask]."""
    if dst in consts:
        consts[dst] &= mask
        return
    lo, hi = ranges.get(dst, (-1, 0))
    ranges[dst] = (0, min(hi, mask) if lo >= 0 else mask)


def function_stack(fn: Function) -> FrameUse:
    """The stack bytes *fn* uses (see the module docstring for how pointers are followed)."""
    end = fn.end
    dst_of, src_of = register_tables(fn.byteorder)
    regs: dict[int, int] = {10: 0}  # register -> offset from r10 (a stack pointer)
    spills: dict[int, int] = {}  # stack offset -> stack pointer offset spilled there
    consts: dict[int, int] = {}  # register -> known 64-bit constant (scalar)
    ranges: dict[int, tuple[int, int]] = {}  # register -> bounds of a non-constant scalar
    pending: dict[int, _State] = {}
    deepest = 0  # most negative offset touched
    deepest_at = -1  # slot of the (first) instruction touching it
    live = True  # False after exit / unconditional jump until a jump target
    wide = _NOT_WIDE  # what the slot after an ld_imm64 completes
    wide_dst = wide_low = 0

    # One pass over the raw slots (no Insn objects: this runs over every instruction).
    for idx, (op, rb, off, imm) in enumerate(raw_slots(fn.code, fn.byteorder), fn.offset):
        if wide != _NOT_WIDE:  # the second slot of an ld_imm64
            if wide == _WIDE_CONST:  # a plain 64-bit constant: now complete
                value = ((imm & 0xFFFFFFFF) << 32) | (wide_low & 0xFFFFFFFF)
                consts[wide_dst] = value - (1 << 64) if value >= 1 << 63 else value
            wide = _NOT_WIDE
            continue
        if pending:
            incoming = pending.pop(idx, None)
            if incoming is not None:
                if live:
                    _merge_into(incoming, regs, spills, consts, ranges)
                regs, spills, consts, ranges = incoming
                regs[10] = 0
                live = True
        if not live:
            regs, spills, consts, ranges = {10: 0}, {}, {}, {}
            live = True
        cls = op & 0x07
        if cls == 7:  # alu64
            dst = dst_of[rb]
            code = op & 0xF0
            if op & 0x08:  # register source
                src = src_of[rb]
                if code == 0xB0 and off == 0:  # mov
                    ranges.pop(dst, None)
                    if src in regs:
                        regs[dst] = regs[src]
                        consts.pop(dst, None)
                    else:
                        regs.pop(dst, None)
                        if src in consts:
                            consts[dst] = consts[src]
                        else:
                            consts.pop(dst, None)
                            if src in ranges:
                                ranges[dst] = ranges[src]
                    continue
                if code == 0x00:  # add
                    if dst in regs and src in consts:
                        regs[dst] += consts[src]
                        continue
                    if src in regs and dst in consts:
                        regs[dst] = regs[src] + consts.pop(dst)
                        continue
                    if dst in consts and src in consts:
                        consts[dst] = consts[dst] + consts[src]
                        regs.pop(dst, None)
                        continue
                    # a bounded variable offset: the deepest byte it may reach
                    if dst in regs and src in ranges:
                        regs[dst] += ranges[src][0]
                        continue
                    if src in regs and dst in ranges:
                        regs[dst] = regs[src] + ranges.pop(dst)[0]
                        continue
                    a, b = _bounds(consts, ranges, dst), _bounds(consts, ranges, src)
                    if a is not None and b is not None:
                        consts.pop(dst, None)
                        ranges[dst] = (a[0] + b[0], a[1] + b[1])
                        continue
                elif code == 0x10 and dst in regs and src in consts:  # sub
                    regs[dst] -= consts[src]
                    continue
                elif code == 0x10 and dst in regs and src in ranges:
                    regs[dst] -= ranges[src][1]
                    continue
                elif code == 0x50 and consts.get(src, -1) >= 0 and dst not in regs:  # and
                    _and(consts, ranges, dst, consts[src])
                    continue
                if code in (0x00, 0x10) and dst in regs:
                    # A variable offset (an index into a stack buffer): count the buffer's base,
                    # the lowest byte an index >= 0 reaches.
                    buffer = regs[dst]
                    if buffer < deepest:
                        deepest, deepest_at = buffer, idx
            else:
                if code == 0x00:
                    if dst in regs:
                        regs[dst] += imm
                        continue
                    if dst in consts:
                        consts[dst] += imm
                        continue
                    if dst in ranges:
                        lo, hi = ranges[dst]
                        ranges[dst] = (lo + imm, hi + imm)
                        continue
                elif code == 0x10:
                    if dst in regs:
                        regs[dst] -= imm
                        continue
                    if dst in consts:
                        consts[dst] -= imm
                        continue
                    if dst in ranges:
                        lo, hi = ranges[dst]
                        ranges[dst] = (lo - imm, hi - imm)
                        continue
                elif code == 0xB0 and off == 0:
                    regs.pop(dst, None)
                    ranges.pop(dst, None)
                    consts[dst] = imm
                    continue
                elif code == 0x50 and imm >= 0 and dst not in regs:  # and: [0, imm]
                    _and(consts, ranges, dst, imm)
                    continue
                elif code == 0x70 and dst in ranges and ranges[dst][0] >= 0:  # rsh
                    lo, hi = ranges[dst]
                    ranges[dst] = (lo >> (imm & 63), hi >> (imm & 63))
                    continue
            if dst != 10:
                regs.pop(dst, None)
            consts.pop(dst, None)
            ranges.pop(dst, None)
            continue
        if cls == 3:  # stx (memory and atomics)
            base = dst_of[rb]
            if base in regs:
                addr = regs[base] + off
                if addr < deepest:
                    deepest, deepest_at = addr, idx
                if (op & 0xE0) == 0x60:  # plain store: track spilled stack pointers
                    src = src_of[rb]
                    if (op & 0x18) == 0x18 and src in regs:
                        spills[addr] = regs[src]
                    elif spills:
                        spills.pop(addr, None)
            if (op & 0xE0) == 0xC0:  # atomics may write src (fetch) and r0 (cmpxchg)
                for r in (src_of[rb], 0):
                    regs.pop(r, None)
                    consts.pop(r, None)
                    ranges.pop(r, None)
            continue
        if cls == 1:  # ldx
            base = src_of[rb]
            dst = dst_of[rb]
            loaded: int | None = None
            if base in regs:
                addr = regs[base] + off
                if addr < deepest:
                    deepest, deepest_at = addr, idx
                if (op & 0xF8) == 0x78:  # 8-byte load: a spilled stack pointer comes back
                    loaded = spills.get(addr)
            if dst != 10:
                if loaded is None:
                    regs.pop(dst, None)
                else:
                    regs[dst] = loaded
            consts.pop(dst, None)
            ranges.pop(dst, None)
            if loaded is None and (op & 0xE0) == 0x60 and (op & 0x18) in (0x08, 0x10):
                ranges[dst] = (0, 0xFF if (op & 0x18) == 0x10 else 0xFFFF)  # u8 / u16 loads
            continue
        if cls == 2:  # st (immediate store)
            base = dst_of[rb]
            if base in regs:
                addr = regs[base] + off
                if addr < deepest:
                    deepest, deepest_at = addr, idx
                if spills:
                    spills.pop(addr, None)
            continue
        if cls == 5 or cls == 6:  # jmp / jmp32
            code = op & 0xF0
            if cls == 5 and code == 0x80:  # call / callx: stack pointers passed as arguments
                for r in (1, 2, 3, 4, 5):
                    arg = regs.get(r)
                    if arg is not None and arg < deepest:
                        deepest, deepest_at = arg, idx
                for r in _CALLER_SAVED:
                    regs.pop(r, None)
                    consts.pop(r, None)
                    ranges.pop(r, None)
                continue
            if cls == 5 and code == 0x90:  # exit
                live = False
                continue
            target = jump_target_of(idx, op, src_of[rb], off, imm)
            if target is not None and idx < target < end:
                slot = pending.get(target)
                if slot is None:
                    pending[target] = (dict(regs), dict(spills), dict(consts), dict(ranges))
                else:
                    _merge_into(slot, regs, spills, consts, ranges)
            if (code == 0x00 and (cls == 6 or not op & 0x08)) or (cls == 5 and op == 0x0D):
                live = False  # ja / gotol / gotox: nothing falls through
            continue
        if cls == 4:  # alu (32-bit): the result is a scalar
            dst = dst_of[rb]
            if dst != 10:
                regs.pop(dst, None)
            consts.pop(dst, None)
            ranges.pop(dst, None)
            if op == 0x54 and imm >= 0:  # w &= imm: [0, imm]
                ranges[dst] = (0, imm)
            elif op == 0xB4:  # w = imm (zero-extended)
                consts[dst] = imm & 0xFFFFFFFF
            continue
        # cls 0: ld_imm64 / legacy packet loads
        if (op & 0xE0) in (0x20, 0x40):  # ld_abs / ld_ind clobber r0-r5
            for r in _CALLER_SAVED:
                regs.pop(r, None)
                consts.pop(r, None)
                ranges.pop(r, None)
        else:
            dst = dst_of[rb]
            regs.pop(dst, None)
            consts.pop(dst, None)
            ranges.pop(dst, None)
            if op == _LD_IMM64:
                wide = _WIDE_CONST if src_of[rb] == 0 else _WIDE_OTHER
                wide_dst, wide_low = dst, imm
    depth = (-deepest + 7) // 8 * 8 if deepest < 0 else 0
    return FrameUse(function=fn, depth=depth, deepest_at=deepest_at if deepest_at >= 0 else None)


# ---------------------------------------------------------------------------------------------
# Call graph
# ---------------------------------------------------------------------------------------------


def call_graph(obj: EbpfObject, prog: Program, roots: frozenset[tuple[str, str]] = frozenset()
               ) -> dict[tuple[str, str], list[Function]]:
    """Function key -> the functions it calls (BPF-to-BPF calls and callbacks whose address it
    loads), in instruction order without duplicates, for every function *prog* reaches.
    Callbacks in *roots* (asynchronous ones) count only where they are called directly."""
    index = prog.index
    graph: dict[tuple[str, str], list[Function]] = {}
    for fn in prog.functions:
        events: list[tuple[int, Function]] = []
        for call in fn.calls:
            callee = index.callee(call)
            if callee is not None:
                events.append((call.insn.index, callee))
        for ref in fn.refs:
            callee = index.pointed_to(ref)
            if callee is not None and callee.key not in roots:
                events.append((ref.insn_index, callee))
        if len(events) < 2:
            graph[fn.key] = [callee for _, callee in events]
            continue
        events.sort(key=lambda e: e[0])
        seen: set[tuple[str, str]] = set()
        out: list[Function] = []
        for _, callee in events:
            key = callee.key
            if key not in seen:
                seen.add(key)
                out.append(callee)
        graph[fn.key] = out
    return graph


def round_frame(depth: int, frame_round: int = 32) -> int:
    """A frame's contribution to the combined depth: the verifier's ``round_up_stack_depth``
    (``round_up(max(depth, 1), 32)`` for the interpreter, ``round_up(depth, 16)`` with the JIT;
    other values round ``depth`` up to that multiple)."""
    if frame_round == 32:
        depth = max(depth, 1)
    if frame_round <= 1:
        return depth
    return (depth + frame_round - 1) // frame_round * frame_round


def _tail_call_insn(fn: Function) -> Insn | None:
    for call in fn.calls:
        if call.kind == "helper" and call.helper_id == TAIL_CALL_HELPER:
            return call.insn
    return None


_Key = tuple[str, str]


def program_stack(obj: EbpfObject, prog: Program, frame_round: int = 32,
                  private_min: int | None = None) -> ProgramStack:
    """Stack use of *prog*: every frame, the deepest call chain and its combined depth.

    *private_min*: frames whose rounded size is at least this get a private stack (the program
    type and kernel allow it) and count 0 in the combined depth; None: no private stacks.

    Ties between chains are broken in favour of the first callee in instruction order. Back
    edges of a recursive call graph are ignored for the chains and reported in
    :attr:`ProgramStack.recursion`.
    """
    async_roots = async_callbacks(prog)
    graph = call_graph(obj, prog, async_roots)
    uses: dict[_Key, FrameUse] = {}
    for fn in prog.functions:
        use = function_stack(fn)
        extra = loop_inline_bytes(prog, fn)
        uses[fn.key] = replace(use, loop_inline=extra) if extra else use
    names: dict[_Key, str] = {fn.key: fn.name for fn in prog.functions}
    rounded = {k: round_frame(u.depth, frame_round) for k, u in uses.items()}
    private = {k for k, r in rounded.items() if private_min is not None and r >= private_min}
    for k in private:
        rounded[k] = 0
    entry = prog.entry.key

    # Iterative DFS from the entry and each asynchronous callback (the verifier's roots):
    # post-order (for chains below each node) and back edges.
    order: list[_Key] = []
    state: dict[_Key, int] = {}  # 1 on the DFS stack, 2 done
    stack: list[tuple[_Key, int]] = []
    path: list[_Key] = []
    back_edges: set[tuple[_Key, _Key]] = set()
    recursion: tuple[str, ...] = ()
    roots = [entry, *sorted(k for k in async_roots if k in uses and k != entry)]
    pending_roots = list(reversed(roots))
    while stack or pending_roots:
        if not stack:
            root = pending_roots.pop()
            if root in state:
                continue
            state[root] = 1
            stack.append((root, 0))
            path.append(root)
            continue
        key, i = stack[-1]
        callees = graph.get(key, [])
        if i < len(callees):
            stack[-1] = (key, i + 1)
            child = callees[i].key
            st = state.get(child)
            if st is None:
                state[child] = 1
                stack.append((child, 0))
                path.append(child)
            elif st == 1:
                back_edges.add((key, child))
                if not recursion:
                    cycle = path[path.index(child):]
                    recursion = (*(names.get(k, k[1]) for k in cycle), names[child])
        else:
            stack.pop()
            path.pop()
            state[key] = 2
            order.append(key)

    kids: dict[_Key, list[_Key]] = {
        key: [c.key for c in graph.get(key, ()) if (key, c.key) not in back_edges]
        if back_edges
        else [c.key for c in graph.get(key, ())]
        for key in order
    }

    # Deepest chain and longest chain below each node (post-order: children first).
    best: dict[_Key, int] = {}
    best_next: dict[_Key, _Key | None] = {}
    longest: dict[_Key, int] = {}
    longest_next: dict[_Key, _Key | None] = {}
    for key in order:
        b, bn, n, nn = 0, None, 0, None
        for child in kids[key]:
            if bn is None or best[child] > b:
                b, bn = best[child], child
            if longest[child] > n:
                n, nn = longest[child], child
        best[key] = rounded[key] + b
        best_next[key] = bn
        longest[key] = 1 + n
        longest_next[key] = nn

    # The deepest (and longest) chain of any root: the entry's unless a callback's is deeper.
    top = max(roots, key=lambda k: (best.get(k, -1), k == entry))
    top_long = max(roots, key=lambda k: (longest.get(k, -1), k == entry))

    def follow(nxt: dict[_Key, _Key | None], start: _Key) -> list[_Key]:
        out = [start]
        cur = nxt.get(start)
        while cur is not None:
            out.append(cur)
            cur = nxt.get(cur)
        return out

    chain_keys = follow(best_next, top)
    longest_keys = follow(longest_next, top_long)

    # Largest combined depth above each node (reverse post-order = topological order).
    above: dict[_Key, int] = {entry: 0}
    above_prev: dict[_Key, _Key | None] = {entry: None}
    for key in reversed(order):
        if key not in above:
            continue
        here = above[key] + rounded[key]
        for child in kids[key]:
            if child not in above or here > above[child]:
                above[child] = here
                above_prev[child] = key
    tail_depth: int | None = None
    tail_key: _Key | None = None
    for fn in prog.functions:
        if fn.key in above and _tail_call_insn(fn) is not None:
            d = above[fn.key]
            if tail_depth is None or d > tail_depth:
                tail_depth, tail_key = d, fn.key
    tail_chain: list[_Key] = []
    cur: _Key | None = tail_key
    while cur is not None:
        tail_chain.append(cur)
        cur = above_prev.get(cur)
    tail_chain.reverse()

    deepest = uses[chain_keys[0]]
    for key in chain_keys[1:]:
        if uses[key].depth > deepest.depth:
            deepest = uses[key]
    return ProgramStack(
        program=prog.name,
        frames={fn.name: uses[fn.key].depth for fn in prog.functions},
        chain=tuple(names[k] for k in chain_keys),
        chain_frames=tuple(uses[k].depth for k in chain_keys),
        total=best[top],
        max_frames=longest[top_long],
        tail_call_depth=tail_depth,
        recursion=recursion,
        deepest=deepest,
        frame_round=frame_round,
        tail_call_chain=tuple(names[k] for k in tail_chain),
        longest_chain=tuple(names[k] for k in longest_keys),
        uses={fn.name: uses[fn.key] for fn in prog.functions},
        private=frozenset(names[k] for k in private),
    )


def has_private_stacks(prog: Program, profile: KernelProfile) -> bool:
    """Do *prog*'s big frames get private stacks on *profile*'s kernel? Its type must allow it
    and no function of it may make a tail call (the kernel then keeps one stack)."""
    if not profile.private_stack(prog.kind.prog_type, prog.kind.expected_attach_type):
        return False
    return not any(_tail_call_insn(fn) is not None for fn in prog.functions)


def profile_stack(obj: EbpfObject, prog: Program, profile: KernelProfile) -> ProgramStack:
    """:func:`program_stack` as *profile*'s kernel adds it up (rounding, private stacks)."""
    private = PRIV_STACK_MIN_SIZE if has_private_stacks(prog, profile) else None
    return program_stack(obj, prog, profile.frame_round, private)


# ---------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------


def _describe(chain: tuple[str, ...], frames: tuple[int, ...]) -> str:
    return " -> ".join(f"{name} ({depth} B)" for name, depth in zip(chain, frames))


def _finding(kind: str, prog: Program, message: str, fix: str, function: str,
             chain: tuple[str, ...], frames: tuple[int, ...], total: int, insn: Insn | None,
             kernel: str | None, reason: str = "") -> Finding:
    return Finding(check=f"stack_{kind}", program=prog.name, function=function, insn=insn,
                   message=message, fix=fix, rule="stack", kernel=kernel, chain=chain,
                   chain_frames=frames, total=total, reason=reason)


_MAP_FIX = ("move the big buffer of `{fn}` into a per-CPU array map (PerCpuArray) and work on a "
            "pointer into it")


def stack_problems(
    obj: EbpfObject,
    prog: Program,
    frame_round: int = 32,
    limits: StackLimits = LIMITS,
    stack: ProgramStack | None = None,
    profile: KernelProfile | None = None,
) -> list[Finding]:
    """Every stack limit of the verifier that *prog* breaks (empty when it fits).

    With *profile*, that kernel's rules apply (its frame rounding and private stacks replace
    *frame_round*) and the messages name it. *stack*, when given, is the matching
    :func:`program_stack` already computed."""
    on = ""
    why = f"frames rounded to {frame_round}"
    if profile is not None:
        frame_round = profile.frame_round
        why = profile.frame_round_why
        on = f" on {profile.label}"
    label = profile.label if profile is not None else None
    if stack is not None:
        ps = stack
    elif profile is not None:
        ps = profile_stack(obj, prog, profile)
    else:
        ps = program_stack(obj, prog, frame_round)
    out: list[Finding] = []
    for name, use in ps.uses.items():
        if use.depth > limits.total:
            insn = use.deepest_insn
            where = f" at insn {insn.index} ({insn.text()})" if insn is not None else ""
            out.append(_finding(
                "frame_too_large", prog,
                f"program {prog.name}: function {name} uses {use.depth} bytes of stack{where}, "
                f"more than the {limits.total}-byte limit (the verifier refuses it: invalid "
                f"write to stack / stack limit exceeded)",
                _MAP_FIX.format(fn=name), name, (name,), (use.depth,), use.depth, insn, label))
    if ps.total > limits.total and len(ps.chain) > 1:
        parts = [str(ps.contribution(n)) for n in ps.chain if n not in ps.private]
        private = [n for n in ps.chain if n in ps.private]
        kept = f"; {', '.join(private)} on private stacks" if private else ""
        # the verifier speaks at the first frame of the chain that takes it over the limit
        calls, at, depth = len(ps.chain), ps.total, 0
        for i, n in enumerate(ps.chain):
            depth += 0 if n in ps.private else ps.contribution(n)
            if depth > limits.total:
                calls, at = i + 1, depth
                break
        out.append(_finding(
            "combined_too_large", prog,
            f"program {prog.name}: combined stack size of {calls} calls is "
            f"{at}. Too large{on} ({why}: {' + '.join(parts)} = {ps.total} > "
            f"{limits.total}{kept}): {_describe(ps.chain, ps.chain_frames)}",
            _MAP_FIX.format(fn=ps.deepest.function.name) + "; or mark small callees "
            "#[inline(always)] so fewer frames are counted",
            ps.deepest.function.name, ps.chain, ps.chain_frames, ps.total,
            ps.deepest.deepest_insn, label,
            f"{why}: {' + '.join(parts)} = {ps.total} > {limits.total}{kept}"))
    if ps.max_frames > limits.frames:
        chain = ps.longest_chain
        frames = tuple(ps.frames[n] for n in chain)
        out.append(_finding(
            "too_many_frames", prog,
            f"program {prog.name}: a call chain of {ps.max_frames} frames, more than the "
            f"verifier's {limits.frames} (\"the call stack of {limits.frames} frames is too "
            f"deep !\"): {' -> '.join(chain)}",
            "inline some functions of the chain (#[inline(always)]) or flatten the calls",
            chain[-1], chain, frames, sum(ps.contribution(n) for n in chain), None, label))
    if (
        ps.tail_call_depth is not None
        and ps.tail_call_depth >= limits.tail_call
        and len(ps.tail_call_chain) > 1
    ):
        chain = ps.tail_call_chain
        frames = tuple(ps.frames[n] for n in chain)
        fn = ps.uses[chain[-1]].function
        out.append(_finding(
            "tail_call_stack", prog,
            f"program {prog.name}: {chain[-1]} calls bpf_tail_call with {ps.tail_call_depth} "
            f"bytes of stack in the frames above it{on}; the verifier requires less than "
            f"{limits.tail_call} (\"tail_calls are not allowed when call stack of previous "
            f"frames is {ps.tail_call_depth} bytes. Too large\"): {_describe(chain, frames)}",
            "make the tail call from the entry function, or shrink the frames above it",
            chain[-1], chain, frames, ps.tail_call_depth, _tail_call_insn(fn), label))
    if ps.recursion:
        cycle = ps.recursion
        caller = ps.uses.get(cycle[-2])
        insn = None
        if caller is not None:
            callee = ps.uses.get(cycle[-1])
            for call in caller.function.calls:
                if (
                    call.kind == "bpf"
                    and callee is not None
                    and call.target_section == callee.function.section
                    and call.target_offset == callee.function.offset
                ):
                    insn = call.insn
                    break
        out.append(_finding(
            "recursion", prog,
            f"program {prog.name}: recursive call chain {' -> '.join(cycle)}; the verifier "
            f"refuses recursion (its stack must be bounded statically)",
            "rewrite the recursion as a bounded loop (or bpf_loop)",
            cycle[-2], cycle, tuple(ps.frames.get(n, 0) for n in cycle), 0, insn, label))
    return out
