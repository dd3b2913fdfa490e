"""An abstract interpreter for the common verifier failures of real programs.

Modelled on the kernel's verifier (``kernel/bpf/verifier.c``): it walks every path of a
program's entry function with register types (scalars with exact intervals and linked ids,
``ctx``, ``pkt`` with its offset, id and verified range, ``pkt_end``, ``map_value_or_null`` /
``map_value`` from ``bpf_map_lookup_elem`` on a known map, ``stack``), refines them on branches
as the kernel does (``find_good_pkt_pointers``, ``mark_pkt_end``, null checks on every copy of a
lookup result, linked scalars) and reports, in the kernel's words:

* packet accesses beyond the verified range (``invalid access to packet`` / ``offset is outside
  of the packet``);
* map values used before the null check (``invalid mem access 'map_value_or_null'``);
* map-value accesses outside the value (``invalid access to map value``);
* XDP context accesses outside ``struct xdp_md`` (``invalid bpf_context access``);
* pointer arithmetic the verifier refuses (on ``pkt_end``, on ``map_value_or_null``, bitwise
  and other operators on pointers).
* stores into read-only map memory (``write into map forbidden``): ``.rodata`` globals and maps
  created with ``BPF_F_RDONLY_PROG``; globals are ``map_value`` pointers from their ``ld_imm64``
  (the section's one-entry array map), so their bounds are checked too;
* loads from write-only map memory (``read from map forbidden``): maps created with
  ``BPF_F_WRONLY_PROG``; and the same two rules where a helper reads or writes map memory
  through an argument (a key or value of ``bpf_map_{lookup,update,delete}_elem``, the buffer
  ``bpf_skb_load_bytes`` or ``bpf_get_current_comm`` fill), and ``bpf_map_update_elem`` /
  ``bpf_map_delete_elem`` on a ``BPF_F_RDONLY_PROG`` map (``write into map forbidden``);
* constant return values outside the program type's range at the entry function's exit
  (``check_return_code``: cgroup programs, sock_ops, sk_lookup), only where every kernel from
  5.10 on refuses them.

It never guesses: whenever its state could be less precise than the kernel's (unknown helper
results, BPF-to-BPF and kfunc calls, atomics, unmodelled ALU ops, stack reads other than a whole
spilled register...), the path stops silently. A state cap and a time cap bound the work; when
either is hit the result has no findings and says why (:attr:`AbsintResult.gave_up`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from pytest_ebpf.analysis import absint_ops as ops
from pytest_ebpf.analysis.absint_domain import (
    AT_PKT_END,
    BEYOND_PKT_END,
    OPAQUE,
    UNINIT,
    Opaque,
    Ptr,
    Scalar,
    State,
    Value,
    const,
    shift_linked,
    unknown,
)
from pytest_ebpf.analysis.absint_machine import (
    F_RDONLY_PROG,
    F_WRONLY_PROG,
    Found,
    Machine,
    Stop,
    return_range,
)
from pytest_ebpf.analysis.absint_report import Problem, finding
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.errors import EbpfError
from pytest_ebpf.obj.isa import Insn
from pytest_ebpf.obj.model import EbpfObject, Program

__all__ = ["DEFAULT_MAX_SECONDS", "DEFAULT_MAX_STATES", "AbsintResult", "analyse_program"]

DEFAULT_MAX_STATES = 200_000
"""Instructions interpreted per program (over all paths) before giving up."""
DEFAULT_MAX_SECONDS = 5.0

_MAX_PACKET_OFF = 0xFFFF
_PKT_PROGS = frozenset({"xdp", "sched_cls", "sched_act"})
_HASH_MAPS = frozenset({"hash", "lru_hash", "percpu_hash", "lru_percpu_hash"})
_ARRAY_MAPS = frozenset({"array", "percpu_array"})
_LOOKUP = 1
# Helpers the kernel types RET_INTEGER without narrowing the result (do_refine_retval_range).
_INT_HELPERS = frozenset({2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 23, 25, 26, 28, 34,
                          44, 51, 65, 112, 113, 125, 130})
# Helpers that leave packet pointers valid (bpf_helper_changes_pkt_data is false for them).
_PKT_SAFE_HELPERS = frozenset({1, 2, 3, 4, 5, 6, 7, 12, 14, 15, 16, 23, 25, 26, 28, 34, 51,
                               112, 113, 125, 130})
_OP_MOV = 0xB0
_JEQ, _JNE, _JGT, _JGE, _JLT, _JLE = 0x10, 0x50, 0x20, 0x30, 0xA0, 0xB0
_FLIP = {_JGT: _JLT, _JLT: _JGT, _JGE: _JLE, _JLE: _JGE, _JEQ: _JEQ, _JNE: _JNE}


@dataclass(frozen=True)
class AbsintResult:
    """What :func:`analyse_program` found."""

    findings: tuple[Finding, ...]
    """One finding per offending instruction and kind (empty when :attr:`gave_up`)."""
    gave_up: str | None
    """Why the analysis stopped before exploring every path (state or time cap), else None."""
    states: int
    """Instructions interpreted, over all paths."""
    ctx_accesses: tuple[tuple[Insn, int, int, bool], ...] = ()
    """(instruction, offset, size, store) of each context access the walk reached (outside
    XDP, whose context the interpreter judges itself), first instruction per access."""


def analyse_program(obj: EbpfObject, prog: Program, *, max_states: int = DEFAULT_MAX_STATES,
                    max_seconds: float = DEFAULT_MAX_SECONDS) -> AbsintResult:
    """Interpret every path of *prog*'s entry function; the problems the kernel would refuse."""
    return _Interp(obj, prog, max_states, max_seconds).run()


def _nonnull(v: Ptr) -> bool:
    return v.kind in ("map_value", "map_ptr")


class _GiveUp(EbpfError):
    pass


class _Interp(Machine):
    def __init__(self, obj: EbpfObject, prog: Program, max_states: int,
                 max_seconds: float) -> None:
        self.obj, self.prog, self.fn = obj, prog, prog.entry
        self.max_states, self.deadline = max_states, time.monotonic() + max_seconds
        self.max_seconds = max_seconds
        self.insns: dict[int, Insn] = {i.index: i for i in self.fn.insns}
        self.refs = {r.insn_index: r for r in self.fn.refs}
        self.maps = {m.name: m for m in obj.maps}
        self.steps = 0
        self.next_id = 0
        self.found: dict[tuple[int, str], Problem] = {}
        self.ctx_seen = {}
        self.pkt = prog.prog_type in _PKT_PROGS
        self.ret_range = return_range(prog)

    # -- the walk ------------------------------------------------------------------------------

    def run(self) -> AbsintResult:
        regs: list[Value] = [UNINIT] * 11
        regs[1], regs[10] = Ptr("ctx"), Ptr("stack")
        work: list[tuple[int, State]] = [(self.fn.offset, State(regs, {}))]
        seen: set[tuple[int, tuple[object, ...]]] = set()
        try:
            while work:
                pc, st = work.pop()
                key = (pc, st.key())
                if key in seen:
                    continue
                seen.add(key)
                try:
                    work.extend(self.path(pc, st))
                except Stop:
                    pass
                except Found as hit:
                    p = hit.problem
                    self.found.setdefault((p.insn.index, p.check), p)
        except _GiveUp as why:
            return AbsintResult((), str(why), self.steps)
        problems = sorted(self.found.values(), key=lambda p: p.insn.index)
        accesses = tuple(sorted(((i, *k) for k, i in self.ctx_seen.items()),
                                key=lambda a: (a[0].index, a[1], a[2], a[3])))
        return AbsintResult(tuple(finding(self.obj, self.prog, self.fn, p) for p in problems),
                            None, self.steps, accesses)

    def path(self, pc: int, st: State) -> list[tuple[int, State]]:
        """Run one path from *pc* until it forks (the successors), ends or stops."""
        while True:
            self.steps += 1
            if self.steps > self.max_states:
                raise _GiveUp(f"state cap of {self.max_states} instructions reached")
            if self.steps % 512 == 0 and time.monotonic() > self.deadline:
                raise _GiveUp(f"time cap of {self.max_seconds:g} s reached")
            insn = self.insns.get(pc)
            if insn is None or not insn.known or insn.dst > 10 or insn.src > 10:
                raise Stop
            nxt = self.step(insn, st)
            if nxt is None:
                pc += insn.size
            elif len(nxt) == 1 and nxt[0][1] is st:
                pc = nxt[0][0]
            else:
                return nxt

    def step(self, insn: Insn, st: State) -> list[tuple[int, State]] | None:
        """Apply *insn*; None: go on with the next instruction; else the successors."""
        if insn.is_wide:
            st.regs[insn.dst] = self.ld_imm64(insn)
        elif insn.is_alu:
            if self.zext(insn, st):
                return [(insn.index + 2, st)]
            self.alu(insn, st)
        elif insn.cls == "ldx" and insn.is_load and not insn.is_sign_extending:
            st.regs[insn.dst] = self.access(insn, st, insn.src, None)
        elif insn.cls in ("st", "stx") and not insn.is_atomic:
            val = const(insn.imm) if insn.cls == "st" else self.read(st, insn.src)
            if isinstance(val, Scalar) and val.const is None and not val.id:
                val = replace(val, id=self.new_id(), delta=0)  # linked to its spill
                st.regs[insn.src] = val
            self.access(insn, st, insn.dst, val)
        elif insn.is_exit:
            self.exit(insn, st, self.ret_range)
            raise Stop
        elif insn.is_helper_call:
            self.helper(insn, st)
        elif insn.is_unconditional_jump and not insn.is_indirect_jump:
            target = insn.jump_target
            assert target is not None
            return [(target, st)]
        elif insn.is_conditional_jump and not insn.is_may_goto:
            return self.branch(insn, st)
        else:
            raise Stop  # calls, atomics, legacy packet loads, may_goto, gotox...
        return None

    def ld_imm64(self, insn: Insn) -> Value:
        ref = self.refs.get(insn.index)
        if ref is None:
            return const(insn.imm64 or 0) if insn.src == 0 else OPAQUE
        if ref.kind == "map" and ref.addend == 0 and ref.target in self.maps:
            return Ptr("map_ptr", map_name=ref.target)
        if ref.kind == "data":
            return self.global_data(ref.target, ref.addend)
        return OPAQUE

    # -- ALU -----------------------------------------------------------------------------------

    def alu(self, insn: Insn, st: State) -> None:
        op, alu64 = insn.opcode & 0xF0, insn.cls == "alu64"
        use_reg = bool(insn.opcode & 0x08)
        if op == _OP_MOV:
            if insn.off != 0:
                st.regs[insn.dst] = OPAQUE  # movsx, address space cast
            elif not use_reg:
                st.regs[insn.dst] = const(insn.imm if alu64 else insn.imm & 0xFFFFFFFF)
            else:
                st.regs[insn.dst] = self.mov(st, insn.src, alu64)
            return
        if op in (0x80, 0xD0):  # neg, end/bswap
            dst = self.read(st, insn.dst)
            res = ops.alu(op, dst, const(0), alu64) if isinstance(dst, Scalar) and \
                op == 0x80 else None
            st.regs[insn.dst] = res if res is not None else OPAQUE
            return
        dst = self.read(st, insn.dst)
        src: Value = self.read(st, insn.src) if use_reg else const(insn.imm)
        if isinstance(dst, Ptr) or isinstance(src, Ptr):
            st.regs[insn.dst] = self.ptr_alu(insn, op, alu64, dst, src)
            return
        if not isinstance(dst, Scalar) or not isinstance(src, Scalar) or insn.off != 0:
            st.regs[insn.dst] = OPAQUE
            return
        res = ops.alu(op, dst, src, alu64)
        st.regs[insn.dst] = res if res is not None else OPAQUE

    def zext(self, insn: Insn, st: State) -> bool:
        """``r <<= k; r >>= k`` (LLVM's zero extension) on a scalar that fits ``64 - k`` bits:
        the pair leaves it unchanged (the shift alone is not an interval)."""
        nxt = self.insns.get(insn.index + 1)
        if insn.opcode != 0x67 or nxt is None or nxt.opcode not in (0x77, 0xC7) \
                or nxt.dst != insn.dst or nxt.imm != insn.imm or not 0 < insn.imm < 64:
            return False
        v = st.regs[insn.dst]
        bits = 64 - insn.imm - (nxt.opcode == 0xC7)
        if not isinstance(v, Scalar) or v.umax >> bits:
            return False
        st.regs[insn.dst] = Scalar(v.umin, v.umax, holes=v.holes)
        return True

    def mov(self, st: State, r: int, alu64: bool) -> Value:
        v = self.read(st, r)
        if not isinstance(v, Scalar):
            return v if alu64 else OPAQUE
        if not alu64 and v.umax > 0xFFFFFFFF:
            c = v.const
            return OPAQUE if c is None else const(c & 0xFFFFFFFF)
        if v.const is None and not v.id:
            v = replace(v, id=self.new_id(), delta=0)
            st.regs[r] = v
        return v

    def helper(self, insn: Insn, st: State) -> None:
        hid = insn.imm
        self.helper_args(insn, st, self.maps)
        ret: Value = OPAQUE
        if hid == _LOOKUP:
            m = st.regs[1]
            mdef = self.maps.get(m.map_name) if isinstance(m, Ptr) and m.kind == "map_ptr" \
                else None
            if mdef is not None and mdef.value_size > 0 and \
                    (mdef.type in _HASH_MAPS or mdef.type in _ARRAY_MAPS):
                ret = Ptr("map_value_or_null", id=self.new_id(), value_size=mdef.value_size,
                          map_name=mdef.name, maybe_nonnull=mdef.type in _ARRAY_MAPS,
                          rdonly=bool(mdef.flags & F_RDONLY_PROG),
                          wronly=bool(mdef.flags & F_WRONLY_PROG))
        elif hid in _INT_HELPERS:
            ret = unknown()
        for r in range(1, 6):
            v = st.regs[r]
            if isinstance(v, Ptr) and v.kind == "stack":
                for slot in [s for s in st.stack if s >= v.off - 8]:
                    st.stack[slot] = OPAQUE
            st.regs[r] = UNINIT
        if hid not in _PKT_SAFE_HELPERS:
            st.replace_where(lambda v: isinstance(v, Ptr) and v.kind in ("pkt", "pkt_end"),
                             lambda v: OPAQUE)
        st.regs[0] = ret

    # -- branches ------------------------------------------------------------------------------

    def branch(self, insn: Insn, st: State) -> list[tuple[int, State]]:
        op, jmp32 = insn.opcode & 0xF0, insn.cls == "jmp32"
        target = insn.jump_target
        assert target is not None
        fall = insn.index + 1
        a = self.read(st, insn.dst)
        use_reg = bool(insn.opcode & 0x08)
        b: Value = self.read(st, insn.src) if use_reg else \
            const(insn.imm & 0xFFFFFFFF if jmp32 else insn.imm)
        if isinstance(a, Opaque) or isinstance(b, Opaque):
            raise Stop
        if isinstance(a, Scalar) and isinstance(b, Scalar):
            if use_reg and insn.src == insn.dst:
                raise Stop
            res = ops.compare(op, a, b, jmp32)
            if res is None:
                raise Stop
            out = []
            for pc, side in ((target, res[0]), (fall, res[1])):
                if side is not None:
                    s2 = st.copy()
                    self.refine(s2, insn.dst, side[0])
                    if use_reg:
                        self.refine(s2, insn.src, side[1])
                    out.append((pc, s2))
            return out
        if jmp32:
            raise Stop
        if isinstance(a, Ptr) and a.kind == "map_value_or_null":
            if use_reg or op not in (_JEQ, _JNE) or insn.imm != 0:
                raise Stop
            null_pc, ok_pc = (target, fall) if op == _JEQ else (fall, target)
            ok = st.copy()
            ok.replace_where(lambda v: isinstance(v, Ptr) and v.id == a.id,
                             lambda v: replace(v, kind="map_value", id=0))
            if a.maybe_nonnull:
                return [(ok_pc, ok)]  # the kernel may know it is not null: no null path
            null = st.copy()
            null.replace_where(lambda v: isinstance(v, Ptr) and v.id == a.id,
                               lambda v: const(0))
            return [(ok_pc, ok), (null_pc, null)]
        if isinstance(b, Ptr) and b.kind == "map_value_or_null":
            raise Stop
        if isinstance(a, Ptr) and isinstance(b, Ptr) and {a.kind, b.kind} == {"pkt", "pkt_end"}:
            return self.pkt_branch(insn, st, op, target, fall)
        for p, s in ((a, b), (b, a)):
            if isinstance(p, Ptr) and isinstance(s, Scalar) and _nonnull(p) and s.const == 0:
                if op == _JEQ:
                    return [(fall, st)]
                if op == _JNE:
                    return [(target, st)]
        return [(target, st.copy()), (fall, st)]

    def refine(self, st: State, r: int, new: Scalar) -> None:
        old = st.regs[r]
        st.regs[r] = new
        if not isinstance(old, Scalar) or not old.id:
            return
        for where, i, v in st.values():
            if isinstance(v, Scalar) and v.id == old.id and not (where == "reg" and i == r):
                linked = shift_linked(v, new.umin, new.umax, new.delta)
                st.put(where, i, linked if linked is not None and linked.umin <= linked.umax
                       else OPAQUE)

    def pkt_branch(self, insn: Insn, st: State, op: int, target: int,
                   fall: int) -> list[tuple[int, State]]:
        """pkt vs pkt_end (try_match_pkt_pointers, is_pkt_ptr_branch_taken)."""
        pkt_reg = insn.dst
        if isinstance(st.regs[insn.dst], Ptr) and st.regs[insn.dst].kind == "pkt_end":  # type: ignore[union-attr]
            pkt_reg, op = insn.src, _FLIP[op]
        pkt = st.regs[pkt_reg]
        assert isinstance(pkt, Ptr)
        if op not in (_JGT, _JGE, _JLT, _JLE):
            return [(target, st.copy()), (fall, st)]
        # the relation the taken branch establishes, and the fall-through's
        taken_rel = {_JGT: ">", _JGE: ">=", _JLT: "<", _JLE: "<="}[op]
        fall_rel = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[taken_rel]
        if pkt.range < 0:
            beyond = pkt.range == BEYOND_PKT_END
            if op in (_JGT, _JLE) and beyond:
                return [(target, st)] if op == _JGT else [(fall, st)]
            if op in (_JLT, _JGE):
                return [(target, st)] if op == _JGE else [(fall, st)]
        out = []
        for pc, rel in ((target, taken_rel), (fall, fall_rel)):
            s2 = st.copy()
            if rel in ("<=", "<"):
                self.good_pkt(s2, pkt, rel == "<")
            else:
                s2.regs[pkt_reg] = replace(
                    pkt, range=BEYOND_PKT_END if rel == ">" else AT_PKT_END)
            out.append((pc, s2))
        return out

    def good_pkt(self, st: State, pkt: Ptr, right_open: bool) -> None:
        if pkt.off < 0 or (pkt.off == 0 and right_open):
            return
        if pkt.vmax > _MAX_PACKET_OFF or pkt.vmax + pkt.off > _MAX_PACKET_OFF:
            return
        new = pkt.off + 1 if right_open else pkt.off
        st.replace_where(lambda v: isinstance(v, Ptr) and v.kind == "pkt" and v.id == pkt.id,
                         lambda v: replace(v, range=max(v.range, new)))

