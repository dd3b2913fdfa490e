"""Control flow and dataflow of a program as the kernel receives it: the verifier's rejections
that need no abstract state, predicted without loading.

A program reaches the kernel as one instruction stream: its entry function, then every function
it reaches, appended the first time a call or a function pointer refers to them (libbpf's and
the native loader's order). :class:`ProgramFlow` lays the program out that way, so that every
finding names the instruction index the kernel prints, and builds each function's control-flow
graph. Three kinds of rejection are predicted:

* structural ones, which the verifier checks on every instruction before it simulates anything
  (``check_subprogs``, ``check_cfg``, the instruction-table scan): "jump out of range from insn
  N to M", "unreachable insn N", "jump into the middle of ldimm64 insn N", "invalid
  bpf_ld_imm64 insn", "unknown opcode NN", "BPF_LDX uses reserved fields";
* encodings the simulation checks instruction by instruction (``do_check``): "R11 is invalid",
  "frame pointer is read only", "BPF_ALU uses reserved fields" and its siblings, "div by
  zero", "invalid shift N", "invalid func unknown#195896080" (a call libbpf poisoned because a
  CO-RE relocation failed);
* registers read while they hold nothing ("R3 !read_ok", "R0 !read_ok" at the program's exit)
  and accesses through R10 outside the 512-byte frame ("invalid write to stack R10 off=8
  size=8").

The simulation only visits instructions on paths it cannot rule out, so the last two kinds are
reported only for instructions *every* run passes through (they dominate every exit of their
function, and the function is called from such an instruction, or is the entry), and a register
is "undefined" only when no path from the function's start writes it. Whatever needs more than
that (helper arguments, values of registers, callbacks, ``may_goto``, atomics, legacy packet
loads, indirect jumps) is left alone: these rules never flag a program the kernel accepts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from pytest_ebpf.abi import PseudoSrc
from pytest_ebpf.analysis.checks import source_line
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.obj.core import POISON_HELPER
from pytest_ebpf.obj.isa import Insn, raw_slots
from pytest_ebpf.obj.model import EbpfObject, Function, Program

__all__ = [
    "FunctionFlow",
    "Problem",
    "ProgramFlow",
    "control_flow_findings",
    "encoding_findings",
    "register_findings",
    "stack_access_findings",
]

MAX_BPF_STACK = 512
_MAX_REG = 10  # R10, the frame pointer, is the last register
_FP = 10
_CALLER_SAVED = 0b111110  # R1-R5
_ALL = (1 << 11) - 1

# Opcode bytes the kernel's instruction table knows on every kernel with BPF-to-BPF calls, and
# the ones that only some kernels know (cpu v4, may_goto, gotox, 8/16-bit atomics): those are
# judged by the features rule, not here.
_ALU_OPS = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x90, 0xA0, 0xB0, 0xC0)
_COND_OPS = (0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0xA0, 0xB0, 0xC0, 0xD0)
_KNOWN: frozenset[int] = frozenset(
    [c | op | x for c in (0x04, 0x07) for op in _ALU_OPS for x in (0, 8)]
    + [0x84, 0x87, 0xD4, 0xDC, 0xD7]  # neg, end (alu: le/be; alu64: le only)
    + [0x05, 0x85, 0x95] + [c | op | x for c in (0x05, 0x06) for op in _COND_OPS for x in (0, 8)]
    + [0x18, 0x20, 0x28, 0x30, 0x40, 0x48, 0x50]
    + [0x61, 0x69, 0x71, 0x79, 0x62, 0x6A, 0x72, 0x7A, 0x63, 0x6B, 0x73, 0x7B, 0xC3, 0xDB])
_SOMETIMES: frozenset[int] = frozenset(
    {0x81, 0x89, 0x91, 0x06, 0xE5, 0x0D, 0x8D, 0xCB, 0xD3})  # 0x8d callx: the calls rule
_SIZES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}


@dataclass(frozen=True)
class Problem:
    """One predicted rejection: the check id, the verifier's own line, the instruction."""

    check: str
    line: str
    """The verifier's line, word for word (``R3 !read_ok``)."""
    fn: Function
    insn: Insn | None
    kernel_index: int | None
    what: str
    """The problem in the developer's words."""
    fix: str


def _bit(reg: int) -> int:
    return 1 << reg if reg <= _MAX_REG else 0


@dataclass
class FunctionFlow:
    """One function's instructions and control-flow graph (section-relative slots)."""

    fn: Function
    start: int
    """The kernel's index of the function's first slot."""
    insns: dict[int, Insn] = field(default_factory=dict)
    succ: dict[int, list[int]] = field(default_factory=dict)
    """Successors inside the function (jumps that leave it are not edges)."""
    out_of_range: list[tuple[Insn, int]] = field(default_factory=list)
    """Jumps whose target is outside the function: (jump, target slot)."""
    exits: list[int] = field(default_factory=list)
    opaque: bool = False
    """Control flow this analysis does not model (gotox, may_goto): no dataflow findings."""

    def kernel_index(self, slot: int) -> int:
        return self.start + slot - self.fn.offset

    @cached_property
    def order(self) -> list[int]:
        return sorted(self.insns)

    @cached_property
    def reachable(self) -> set[int]:
        """Slots reachable from the function's first instruction."""
        seen: set[int] = set()
        todo = [self.fn.offset] if self.fn.offset in self.insns else []
        while todo:
            i = todo.pop()
            if i in seen:
                continue
            seen.add(i)
            todo += self.succ[i]
        return seen

    @cached_property
    def certain(self) -> set[int]:
        """Instructions on every path from the function's start to any of its exits (each
        dominates every reachable exit): whoever runs the function to its end runs them.

        Immediate dominators by Cooper, Harvey and Kennedy's iteration over the reverse
        postorder: linear memory (a program may have a million instructions)."""
        reach = self.reachable
        exits = [e for e in self.exits if e in reach]
        entry = self.fn.offset
        if not exits or self.opaque or entry not in reach:
            return set()
        rpo = self._reverse_postorder(entry)
        number = {n: k for k, n in enumerate(rpo)}
        preds: dict[int, list[int]] = {n: [] for n in rpo}
        for n in rpo:
            for s in self.succ[n]:
                if s in preds:
                    preds[s].append(n)
        idom: dict[int, int] = {entry: entry}

        def meet(a: int, b: int) -> int:
            while a != b:
                while number[a] > number[b]:
                    a = idom[a]
                while number[b] > number[a]:
                    b = idom[b]
            return a

        changed = True
        while changed:
            changed = False
            for n in rpo[1:]:
                done = [p for p in preds[n] if p in idom]
                if not done:
                    continue
                new = done[0]
                for p in done[1:]:
                    new = meet(p, new)
                if idom.get(n) != new:
                    idom[n] = new
                    changed = True
        common: set[int] | None = None
        for e in exits:
            chain = {e}
            while e != entry:
                e = idom[e]
                chain.add(e)
            common = chain if common is None else common & chain
        return common or set()

    def _reverse_postorder(self, entry: int) -> list[int]:
        """The reachable slots in reverse postorder of a depth-first walk (iterative)."""
        post: list[int] = []
        seen = {entry}
        stack: list[tuple[int, int]] = [(entry, 0)]
        while stack:
            node, i = stack[-1]
            succ = self.succ[node]
            if i < len(succ):
                stack[-1] = (node, i + 1)
                nxt = succ[i]
                if nxt not in seen and nxt in self.insns:
                    seen.add(nxt)
                    stack.append((nxt, 0))
            else:
                stack.pop()
                post.append(node)
        post.reverse()
        return post


class ProgramFlow:
    """A program laid out as the kernel receives it, with each function's control flow."""

    def __init__(self, obj: EbpfObject, prog: Program) -> None:
        self.obj = obj
        self.prog = prog
        self.functions: list[FunctionFlow] = []
        start = 0
        for fn in prog.load_order:
            self.functions.append(self._function(fn, start))
            start += fn.slots
        self.length = start
        self.by_key = {f.fn.key: f for f in self.functions}

    def _function(self, fn: Function, start: int) -> FunctionFlow:
        flow = FunctionFlow(fn, start)
        throws = {c.insn.index for c in fn.calls if c.kind == "kfunc" and c.target == "bpf_throw"}
        insns = flow.insns
        for insn in fn.insns:
            insns[insn.index] = insn
        first, end = fn.offset, fn.end
        succ_of = flow.succ
        for insn in fn.insns:
            index = insn.index
            nxt = index + insn.size
            if insn.is_exit or index in throws:
                flow.exits.append(index)
                succ_of[index] = []
            elif insn.is_jump:
                succ: list[int] = []
                if insn.is_indirect_jump or insn.is_may_goto:
                    flow.opaque = True
                target = insn.jump_target
                if target is not None:
                    if first <= target < end:
                        succ.append(target)
                    else:
                        flow.out_of_range.append((insn, target))
                if insn.is_conditional_jump and nxt < end:
                    succ.append(nxt)
                succ_of[index] = [s for s in succ if s in insns]
            else:
                succ_of[index] = [nxt] if nxt < end and nxt in insns else []
        return flow

    # -- what refers to what ----------------------------------------------------------------

    def callees(self, flow: FunctionFlow) -> dict[int, FunctionFlow]:
        """Slot of a BPF-to-BPF call -> the function it enters."""
        out: dict[int, FunctionFlow] = {}
        for call in flow.fn.calls:
            callee = self.prog.index.callee(call)
            if callee is not None and callee.key in self.by_key:
                out[call.insn.index] = self.by_key[callee.key]
        return out

    def pointed(self, flow: FunctionFlow) -> dict[int, FunctionFlow]:
        """Slot of an ``ld_imm64`` of a function's address -> that function (callbacks)."""
        out: dict[int, FunctionFlow] = {}
        for ref in flow.fn.refs:
            callee = self.prog.index.pointed_to(ref)
            if callee is not None and callee.key in self.by_key:
                out[ref.insn_index] = self.by_key[callee.key]
        return out

    @cached_property
    def certainly_called(self) -> set[tuple[str, str]]:
        """Functions every run of the program enters: the entry, and the functions called
        (BPF-to-BPF) from instructions every run of a certainly called function passes."""
        done: set[tuple[str, str]] = set()
        todo = [self.functions[0]]
        while todo:
            f = todo.pop()
            if f.fn.key in done:
                continue
            done.add(f.fn.key)
            for slot, callee in self.callees(f).items():
                if slot in f.certain:
                    todo.append(callee)
        return done

    # -- structural problems (before any simulation) -----------------------------------------

    @cached_property
    def structural(self) -> list[Problem]:
        out: list[Problem] = []
        for f in self.functions:
            for insn, target in f.out_of_range:
                i, t = f.kernel_index(insn.index), f.kernel_index(target)
                out.append(Problem(
                    "jump_out_of_range", f"jump out of range from insn {i} to {t}", f.fn, insn, i,
                    f"`{insn.text()}` jumps to insn {t}, outside {f.fn.name} (insns "
                    f"{f.start}..{f.start + f.fn.slots - 1})",
                    "jump only inside the function; check the offsets of hand-written "
                    "assembly"))
            out += self._slots(f)
        if not any(p.check == "jump_out_of_range" for p in out) and not any(
                f.opaque for f in self.functions):
            out += self._unreachable()
        return out

    def _slots(self, f: FunctionFlow) -> list[Problem]:
        out: list[Problem] = []
        slots = list(raw_slots(f.fn.code, self.obj.byteorder))
        seconds = f.fn.second_slots
        for k, (opcode, _regs, _off, imm) in enumerate(slots):
            slot = f.fn.offset + k
            if slot in seconds:
                continue
            insn = f.insns.get(slot)
            i = f.kernel_index(slot)
            if opcode & 0x07 == 0x01 and (opcode & 0xE0 not in (0x60, 0x80) or imm != 0):
                out.append(Problem(
                    "reserved_fields", "BPF_LDX uses reserved fields", f.fn, insn, i,
                    f"the load at insn {i} sets fields that must be zero (mode {opcode & 0xE0:#x},"
                    f" imm {imm})", "encode loads as *(uN *)(rS + off) with imm 0"))
                continue
            if opcode == 0x18:
                # a second slot with fields set ("invalid bpf_ld_imm64 insn") is not judged:
                # the native loader re-encodes the pair, so what the kernel sees depends on
                # the loader
                continue
            if opcode not in _KNOWN and opcode not in _SOMETIMES:
                out.append(Problem(
                    "unknown_opcode", f"unknown opcode {opcode:02x}", f.fn, insn, i,
                    f"insn {i} has opcode {opcode:#04x}, which is no eBPF instruction",
                    "check hand-written assembly or raw instruction bytes"))
        for insn in f.insns.values():
            if not insn.is_jump or insn.jump_target is None:
                continue
            t = insn.jump_target
            if t in seconds and insn.index in f.reachable:
                wide = f.kernel_index(t - 1)
                out.append(Problem(
                    "jump_into_ld_imm64", f"jump into the middle of ldimm64 insn {wide}", f.fn,
                    insn, f.kernel_index(insn.index),
                    f"`{insn.text()}` lands on the second half of the ld_imm64 at insn {wide}",
                    "jump to the ld_imm64 itself or past it"))
        return out

    def _unreachable(self) -> list[Problem]:
        """The verifier walks the stream from insn 0, into callees at calls and into callbacks
        at function pointers; every instruction it does not reach is an error."""
        # per function (by its position), as the walk visits it: slots seen, successors,
        # instructions, the functions its calls and pointers enter, and where
        seen: list[set[int]] = [set() for _ in self.functions]
        place = {f.fn.key: k for k, f in enumerate(self.functions)}
        targets = [{slot: place[g.fn.key] for slot, g in {**self.callees(f),
                                                           **self.pointed(f)}.items()}
                   for f in self.functions]
        entries = [{c.insn.index: c.target_offset for c in f.fn.calls
                    if c.kind == "bpf" and c.target_offset is not None} for f in self.functions]
        pending: list[tuple[int, int]] = [(0, self.functions[0].fn.offset)]
        while pending:  # a function entered somewhere: walk it, note the functions it enters
            k, start = pending.pop()
            got, f, calls, at = seen[k], self.functions[k], targets[k], entries[k]
            insns, succ = f.insns, f.succ
            todo = [start]
            while todo:
                slot = todo.pop()
                if slot in got or slot not in insns:
                    continue
                got.add(slot)
                todo += succ[slot]
                callee = calls.get(slot)
                if callee is not None:
                    pending.append((callee, at.get(slot, self.functions[callee].fn.offset)))
                    continue
                insn = insns[slot]
                if insn.opcode not in (0x85, 0x18):  # a call, an ld_imm64 (function pointer)
                    continue
                inner = insn.call_target if insn.is_pseudo_call else (
                    slot + insn.imm + 1 if insn.pseudo == PseudoSrc.FUNC else None)
                if inner is not None:  # a call into the same function, without a relocation
                    todo.append(inner)
        out: list[Problem] = []
        for k, f in enumerate(self.functions):
            dead = [s for s in f.order if s not in seen[k]]
            if not dead:
                continue
            insn = f.insns[dead[0]]
            i = f.kernel_index(dead[0])
            out.append(Problem(
                "unreachable_insn", f"unreachable insn {i}", f.fn, insn, i,
                f"{len(dead)} instruction(s) of {f.fn.name} no path reaches, the first "
                f"`{insn.text()}` at insn {i}",
                "remove the dead code (a jump over it, or code after the last exit)"))
        return out

    # -- per-instruction problems of the simulation -----------------------------------------

    @cached_property
    def simulated(self) -> list[Problem]:
        """Problems of instructions every run passes, in the order the verifier checks an
        instruction's fields (reserved fields, then its registers, then its memory access)."""
        out: list[Problem] = []
        called = self.certainly_called
        for f in self.functions:
            if f.fn.key not in called:
                continue
            certain = f.certain
            if not certain:
                continue
            defined = self._defined(f)
            entry = f is self.functions[0]
            for slot in f.order:
                if slot in certain:
                    p = self._check(f, f.insns[slot], defined.get(slot, _ALL), entry)
                    if p is not None:
                        out.append(p)
        return out

    def _defined(self, f: FunctionFlow) -> dict[int, int]:
        """Registers some path from the function's start has written, before each instruction
        (a may-analysis: a register outside the set is undefined on every path)."""
        start = _bit(1) | _bit(_FP) if f is self.functions[0] else _CALLER_SAVED | _bit(_FP)
        if f.fn.offset not in f.insns:
            return {}
        state: dict[int, int] = {f.fn.offset: start}
        todo = [f.fn.offset]
        while todo:
            slot = todo.pop()
            after = _transfer(f.insns[slot], state[slot])
            for s in f.succ[slot]:
                old = state.get(s)
                new = after if old is None else old | after
                if new != old:
                    state[s] = new
                    todo.append(s)
        return state

    def _check(self, f: FunctionFlow, insn: Insn, defined: int, entry: bool) -> Problem | None:
        i = f.kernel_index(insn.index)
        found = _insn_problem(insn, defined, entry)
        if found is None:
            return None
        check, line = found
        what, fix = _EXPLAIN[check]
        text = insn.text() if insn.known else f"opcode {insn.opcode:#04x}"
        return Problem(check, line, f.fn, insn, i, f"insn {i} `{text}`: {what}", fix)


_EXPLAIN: dict[str, tuple[str, str]] = {
    "invalid_register": ("there are only registers r0-r10",
                         "use registers r0-r10; check hand-written encodings"),
    "frame_pointer_write": ("r10 is the frame pointer, it cannot be written",
                            "copy r10 into another register and change that copy"),
    "reserved_fields": ("a field this instruction does not use is not zero",
                        "zero the unused fields (src/off/imm); use the assembler's syntax"),
    "div_by_zero": ("division or modulo by the constant 0",
                    "divide by a non-zero constant, or test the divisor first"),
    "invalid_shift": ("a constant shift count out of the register's width",
                      "shift by 0-63 (64-bit) or 0-31 (32-bit)"),
    "poisoned_call": ("libbpf poisoned this call: a CO-RE relocation of it failed "
                      "(the field, type or enum value does not exist on the kernel)",
                      "guard it with bpf_core_field_exists()/bpf_core_type_exists(), or fix "
                      "the type the relocation names"),
    "uninit_register": ("the register is read before anything writes it, on every path "
                        "(after a call, r1-r5 hold nothing)",
                        "set the register first; after a call, keep values in r6-r9"),
    "uninit_r0": ("the program returns without setting r0",
                  "return a value (set r0 before exit)"),
    "misaligned_stack": ("the access is not aligned to its size (the stack is always "
                         "strictly aligned)", "align stack slots to their size"),
    "stack_out_of_bounds": ("the access is outside the 512-byte stack frame below r10",
                            "use offsets from -512 up to -size from r10"),
}


def _transfer(insn: Insn, d: int) -> int:
    op = insn.opcode
    cls = op & 0x07
    if op not in _KNOWN:
        return _ALL
    if cls in (0x04, 0x07, 0x01) or op == 0x18:
        return d | _bit(insn.dst)
    if cls == 0x00:  # legacy packet loads: r0 set, r1-r5 clobbered
        return (d & ~_CALLER_SAVED) | 1
    if cls == 0x03 and op & 0xE0 == 0xC0:  # atomics may write src, dst and r0
        return d | _bit(insn.src) | _bit(insn.dst) | 1
    if op == 0x85:
        return (d & ~_CALLER_SAVED) | 1
    return d


def _regs(ops: list[tuple[int, str]], d: int) -> tuple[str, str] | None:
    """``check_reg_arg`` on each operand in turn: ``r`` read, ``w`` written."""
    for reg, mode in ops:
        if reg > _MAX_REG:
            return "invalid_register", f"R{reg} is invalid"
        if mode == "r" and not d >> reg & 1:
            return "uninit_register", f"R{reg} !read_ok"
        if mode == "w" and reg == _FP:
            return "frame_pointer_write", "frame pointer is read only"
    return None


def _stack(insn: Insn, base: int, write: bool) -> tuple[str, str] | None:
    if base != _FP:
        return None
    size = _SIZES[insn.opcode & 0x18]
    if insn.off % size:  # the stack is always strictly aligned
        return "misaligned_stack", f"misaligned stack access off 0+0+{insn.off} size {size}"
    if insn.off + size > 0 or insn.off < -MAX_BPF_STACK:
        how = "write to" if write else "read from"
        return ("stack_out_of_bounds",
                f"invalid {how} stack R10 off={insn.off} size={size}")
    return None


def _insn_problem(insn: Insn, d: int, entry: bool) -> tuple[str, str] | None:
    """The first problem ``do_check`` finds in *insn*, given the registers defined before it."""
    op, dst, src, off, imm = insn.opcode, insn.dst, insn.src, insn.off, insn.imm
    if op not in _KNOWN:
        return None
    cls = op & 0x07
    x = op & 0x08
    code = op & 0xF0
    if cls in (0x04, 0x07):
        if code == 0x80:
            if src or off or imm:
                return "reserved_fields", "BPF_NEG uses reserved fields"
            return _regs([(dst, "r"), (dst, "w")], d)
        if code == 0xD0:
            if src or off or imm not in (16, 32, 64):
                return "reserved_fields", "BPF_END uses reserved fields"
            return _regs([(dst, "r"), (dst, "w")], d)
        if code == 0xB0:
            if x:
                if cls == 0x07 and off == 1:
                    return None  # addr_space_cast: arena rules
                widths = (0, 8, 16) if cls == 0x04 else (0, 8, 16, 32)
                if off not in widths or imm:
                    return "reserved_fields", "BPF_MOV uses reserved fields"
                return _regs([(src, "r"), (dst, "w")], d)
            if src or off:
                return "reserved_fields", "BPF_MOV uses reserved fields"
            return _regs([(dst, "w")], d)
        if (x and imm) or (not x and src) or off not in (0, 1) or (off == 1 and code not in (
                0x30, 0x90)):
            return "reserved_fields", "BPF_ALU uses reserved fields"
        found = _regs(([(src, "r")] if x else []) + [(dst, "r")], d)
        if found is not None:
            return found
        if not x and code in (0x30, 0x90) and imm == 0:
            return "div_by_zero", "div by zero"
        if not x and code in (0x60, 0x70, 0xC0) and not 0 <= imm < (64 if cls == 0x07 else 32):
            return "invalid_shift", f"invalid shift {imm}"
        return _regs([(dst, "w")], d)
    if cls == 0x01:
        return _regs([(src, "r"), (dst, "w")], d) or _stack(insn, src, False)
    if cls == 0x02:
        if src:
            return "reserved_fields", "BPF_ST uses reserved fields"
        return _regs([(dst, "r")], d) or _stack(insn, dst, True)
    if cls == 0x03:
        if op & 0xE0 == 0xC0:
            return None  # atomics
        if imm:
            return "reserved_fields", "BPF_STX uses reserved fields"
        return _regs([(src, "r"), (dst, "r")], d) or _stack(insn, dst, True)
    if cls == 0x00:
        if op != 0x18:
            return None  # legacy packet loads: program-type rules
        if off:
            return "reserved_fields", "BPF_LD_IMM64 uses reserved fields"
        return _regs([(dst, "w")], d)
    # jmp, jmp32
    if op == 0x85:
        if dst or src not in (0, 1, 2) or (src != 2 and off):
            return "reserved_fields", "BPF_CALL uses reserved fields"
        if src == 0 and imm == POISON_HELPER:
            return "poisoned_call", f"invalid func unknown#{POISON_HELPER}"
        return None
    if op == 0x05:
        if src or dst or imm:
            return "reserved_fields", "BPF_JA uses reserved fields"
        return None
    if op == 0x95:
        if src or dst or imm:
            return "reserved_fields", "BPF_EXIT uses reserved fields"
        if entry and not d & 1:
            return "uninit_r0", "R0 !read_ok"
        return None
    if (x and imm) or (not x and src):
        return "reserved_fields", "BPF_JMP/JMP32 uses reserved fields"
    return _regs(([(src, "r")] if x else []) + [(dst, "r")], d)


# --- findings ------------------------------------------------------------------------------

_RULE_OF: dict[str, str] = {
    "jump_out_of_range": "control_flow", "unreachable_insn": "control_flow",
    "jump_into_ld_imm64": "control_flow",
"unknown_opcode": "encoding", "reserved_fields": "encoding",
    "invalid_register": "encoding", "frame_pointer_write": "encoding", "div_by_zero": "encoding",
    "invalid_shift": "encoding", "poisoned_call": "encoding",
    "uninit_register": "registers", "uninit_r0": "registers",
    "stack_out_of_bounds": "stack_access", "misaligned_stack": "stack_access",
}


def _finding(flow: ProgramFlow, p: Problem) -> Finding:
    where = f"{p.fn.name} ({p.fn.section})"
    src = source_line(flow.obj, p.fn, p.insn) if p.insn is not None else None
    at = f", at {src}" if src else ""
    return Finding(
        check=p.check, rule=_RULE_OF[p.check], program=flow.prog.name, function=p.fn.name,
        insn=p.insn, reason=p.line,
        message=(f"program {flow.prog.name}: {p.what} in {where}{at}; the verifier says "
                 f"\"{p.line}\""),
        fix=p.fix)


def _pick(flow: ProgramFlow, problems: list[Problem], rule_id: str) -> list[Finding]:
    return [_finding(flow, p) for p in problems if _RULE_OF[p.check] == rule_id]


def control_flow_findings(flow: ProgramFlow) -> list[Finding]:
    """Jumps out of their function, into an ld_imm64, and unreachable instructions."""
    return _pick(flow, flow.structural, "control_flow")


def encoding_findings(flow: ProgramFlow) -> list[Finding]:
    """Instructions no kernel accepts as encoded."""
    return _pick(flow, flow.structural + flow.simulated, "encoding")


def register_findings(flow: ProgramFlow) -> list[Finding]:
    """Registers read before any path writes them."""
    return _pick(flow, flow.simulated, "registers")


def stack_access_findings(flow: ProgramFlow) -> list[Finding]:
    """Accesses through r10 outside the frame."""
    return _pick(flow, flow.simulated, "stack_access")
