"""Memory accesses and pointer arithmetic of :mod:`pytest_ebpf.analysis.absint`: the kernel's
``check_mem_access`` (packet, map value, context, stack) and ``adjust_ptr_min_max_vals``."""

from __future__ import annotations

from dataclasses import replace

from pytest_ebpf.analysis.absint_domain import (
    OPAQUE,
    S64_MAX,
    Misc,
    Opaque,
    Ptr,
    Scalar,
    State,
    Uninit,
    Value,
    signed,
    unknown,
)
from pytest_ebpf.analysis.absint_report import Problem
from pytest_ebpf.errors import EbpfError
from pytest_ebpf.obj.isa import Insn
from pytest_ebpf.obj.model import EbpfObject, Map, Program

__all__ = ["F_RDONLY_PROG", "F_WRONLY_PROG", "Found", "Machine", "Stop", "return_range"]

_MAX_VAR_OFF = 1 << 29
_STACK_SIZE = 512
_XDP_MD_SIZE = 24  # struct xdp_md: six u32
_XDP_EGRESS = 20  # egress_ifindex: devmap programs only
_XDP_PTRS = {0: "pkt", 4: "pkt_end"}  # data, data_end (data_meta: not modelled)
_SKB_PTRS = {76: "pkt", 80: "pkt_end"}  # struct __sk_buff data, data_end
_OP_ADD, _OP_SUB, _OP_MUL, _OP_OR, _OP_AND, _OP_XOR = (
    0x00, 0x10, 0x20, 0x40, 0x50, 0xA0)
_BITWISE = frozenset({_OP_OR, _OP_AND, _OP_XOR})
_ALU_STRING = {0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=",
               0x60: "<<=", 0x70: ">>=", 0x80: "neg", 0x90: "%=", 0xA0: "^=", 0xB0: "=",
               0xC0: "s>>=", 0xD0: "endian"}
_GLOBAL_DATA = frozenset({"rodata", "data", "bss"})  # not .kconfig: its size is the kernel's
_RETURN_01 = frozenset({"cgroup_sock", "sock_ops", "cgroup_device", "cgroup_sysctl",
                        "cgroup_sockopt", "sk_lookup"})
_ADDR_RECV = frozenset({"cgroup_udp4_recvmsg", "cgroup_udp6_recvmsg", "cgroup_unix_recvmsg"})
_ADDR_NAME = frozenset({f"cgroup_{f}_{n}" for f in ("inet4", "inet6", "unix")
                        for n in ("getpeername", "getsockname")})
_ADDR_BIND = frozenset({"cgroup_inet4_bind", "cgroup_inet6_bind"})
F_RDONLY_PROG = 1 << 7
F_WRONLY_PROG = 1 << 8
_LOOKUP, _UPDATE, _DELETE = 1, 2, 3
_MAP_HELPERS = frozenset({_LOOKUP, _UPDATE, _DELETE})  # (map, key[, value, flags])
_MAX_VAR_SIZE = 1 << 29  # BPF_MAX_VAR_SIZ
_SKB_LOAD_BYTES_PROGS = ("socket_filter", "sched_cls", "sched_act", "cgroup_skb")
_TRACING_PROGS = ("kprobe", "tracepoint", "raw_tracepoint", "perf_event")
# helper -> program type -> the register of the memory the helper writes (the size follows it):
# bpf_skb_load_bytes(skb, off, to, len), bpf_get_current_comm(buf, size)
_WRITE_HELPERS: dict[int, dict[str, int]] = {
    26: dict.fromkeys(_SKB_LOAD_BYTES_PROGS, 3),
    16: dict.fromkeys(_TRACING_PROGS, 1),
}


def return_range(prog: Program) -> tuple[int, int, int, int] | None:
    """The return values the kernel allows *prog*'s entry function (check_return_code):
    ``(lo, hi)`` as this kernel prints them, then ``(lo, hi)`` that no kernel from 5.10 on
    refuses (wider where the range changed); None: no range is checked, or it varies."""
    ptype, attach = prog.prog_type, prog.kind.expected_attach_type
    if ptype == "cgroup_skb":
        return (0, 3, 0, 3) if attach == "cgroup_inet_egress" else (0, 1, 0, 1)
    if ptype == "cgroup_sock_addr":
        if attach in _ADDR_RECV:
            return (1, 1, 1, 1)
        if attach in _ADDR_NAME:
            return (1, 1, 0, 1)  # [0, 1] before the unix socket hooks (6.7)
        if attach in _ADDR_BIND:
            return (0, 3, 0, 3)  # [0, 1] before 5.12
        return (0, 1, 0, 1)
    if ptype in _RETURN_01:
        return (0, 1, 0, 1)
    # None: xdp, tc, socket filters, kprobes (no range); lsm (per hook, from 6.12 on);
    # fentry/fexit ([0, 0], but not checked against a kernel: trampolines are not everywhere)
    return None

class Stop(EbpfError):
    """The path ends here: the program exits, or the model is unsure (silent)."""


class Found(EbpfError):
    """A refusal the kernel would print (the path ends)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.check)
        self.problem = problem


class Machine:
    """Registers, memory and pointer arithmetic (the walk: ``absint._Interp``)."""

    obj: EbpfObject
    prog: Program
    next_id: int
    ctx_seen: dict[tuple[int, int, bool], Insn]
    """(offset, size, store) -> the first load or store through the unmoved context pointer
    that makes it, outside XDP (the kernel-dependent rule ``context`` judges them)."""

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def read(self, st: State, r: int) -> Value:
        v = st.regs[r]
        if isinstance(v, Uninit):
            raise Stop
        return v

    def problem(self, insn: Insn, check: str, lines: tuple[str, ...], **facts: int) -> Found:
        return Found(Problem(check, insn, lines, tuple(sorted(facts.items()))))

    # -- one instruction -----------------------------------------------------------------------

    def ptr_alu(self, insn: Insn, op: int, alu64: bool, dst: Value, src: Value) -> Value:
        """``dst op= src`` with a pointer operand (adjust_ptr_min_max_vals)."""
        if isinstance(dst, Ptr) and isinstance(src, Ptr):
            if op != _OP_SUB:  # adjust_reg_min_max_vals, before any other check
                raise self.problem(insn, "pointer_arithmetic", (
                    f"R{insn.dst} pointer {_ALU_STRING[op]} pointer prohibited",), reg=insn.dst)
            return unknown() if alu64 and src.kind != "map_value_or_null" \
                and dst.kind != "map_value_or_null" else OPAQUE
        ptr, off = (dst, src) if isinstance(dst, Ptr) else (src, dst)
        assert isinstance(ptr, Ptr)
        if not isinstance(off, Scalar) or not alu64:
            return OPAQUE
        r = insn.dst
        if ptr.kind == "map_value_or_null":
            if ptr.maybe_nonnull:
                raise Stop
            raise self.problem(insn, "pointer_arithmetic", (
                f"R{r} pointer arithmetic on map_value_or_null prohibited, null-check it first",),
                reg=r)
        if ptr.kind == "pkt_end":
            raise self.problem(insn, "pointer_arithmetic",
                               (f"R{r} pointer arithmetic on pkt_end prohibited",), reg=r)
        if ptr.kind == "map_ptr":
            if op == _OP_ADD and off.const == 0:
                return ptr
            raise Stop
        c = off.const
        if op not in (_OP_ADD, _OP_SUB):
            if c is None or (op == _OP_MUL and ptr is src):
                raise Stop  # the kernel may refuse the offset first (check_reg_sane_offset)
            sc = c - (1 << 64) if c >> 63 else c
            if abs(sc) >= _MAX_VAR_OFF or abs(ptr.off) >= _MAX_VAR_OFF:
                raise Stop
            what = (f"R{r} bitwise operator {_ALU_STRING[op]} on pointer prohibited"
                    if op in _BITWISE else
                    f"R{r} pointer arithmetic with {_ALU_STRING[op]} operator prohibited")
            raise self.problem(insn, "pointer_arithmetic", (what,), reg=r)
        if op == _OP_SUB and ptr is src:
            raise Stop  # scalar -= pointer
        if c is not None:
            sc = c - (1 << 64) if c >> 63 else c
            new = ptr.off + (sc if op == _OP_ADD else -sc)
            if op == _OP_SUB and ptr.kind == "stack":
                raise Stop
            if not -(1 << 31) <= new < (1 << 31) or abs(sc) >= _MAX_VAR_OFF:
                raise Stop
            return replace(ptr, off=new)
        if op != _OP_ADD or ptr.kind not in ("pkt", "map_value") or off.crosses_sign \
                or off.umax >= _MAX_VAR_OFF:
            return OPAQUE
        vmin, vmax = ptr.vmin + off.umin, ptr.vmax + off.umax
        if ptr.kind == "pkt":
            return replace(ptr, id=self.new_id(), range=0, vmin=vmin, vmax=vmax)
        return replace(ptr, vmin=vmin, vmax=vmax)

    # -- memory --------------------------------------------------------------------------------

    def access(self, insn: Insn, st: State, r: int, val: Value | None) -> Value:
        """A load (*val* None: the value read) or store of *val* through register *r*."""
        base = self.read(st, r)
        size, write = insn.mem_size, val is not None
        if not isinstance(base, Ptr):
            raise Stop
        off = base.off + insn.off
        if base.kind == "stack":
            return self.stack(st, off, size, val)
        if base.kind == "map_value_or_null":
            if base.maybe_nonnull:
                raise Stop
            raise self.problem(insn, "map_null",
                               (f"R{r} invalid mem access 'map_value_or_null'",), reg=r)
        if base.kind == "ctx":
            return self.ctx(insn, base, r, off, size, write)
        if base.kind == "pkt":
            self.packet(insn, base, r, off, size)
        elif base.kind == "map_value":
            if write and base.rdonly:
                if not isinstance(val, Scalar):
                    raise Stop  # a pointer: "leaks addr into map" first, when unprivileged
                raise self.forbidden(insn, base, off, size, write=True)
            if not write and base.wronly:
                raise self.forbidden(insn, base, off, size, write=False)
            self.map_value(insn, base, r, off, size)
            if base.rdonly:
                return OPAQUE  # a frozen map's bytes: the kernel may read the constant
        else:
            raise Stop
        return OPAQUE if write else unknown(8 * size)

    def forbidden(self, insn: Insn, base: Ptr, off: int, size: int, *, write: bool) -> Found:
        """check_map_access_type: an access the map's ``BPF_F_RDONLY_PROG`` /
        ``BPF_F_WRONLY_PROG`` capability refuses (*off*: the fixed offset, as the kernel
        prints it)."""
        vs = base.value_size
        what = "write into" if write else "read from"
        return self.problem(insn, "map_readonly" if write else "map_writeonly", (
            f"{what} map forbidden, value_size={vs} off={off} size={size}",),
            off=off, size=size, value_size=vs)

    def stack(self, st: State, off: int, size: int, val: Value | None) -> Value:
        if off < -_STACK_SIZE or off + size > 0:
            raise Stop
        if val is None:
            v = st.stack.get(off) if size == 8 and off % 8 == 0 else None
            return v if v is not None and not isinstance(v, Misc) else OPAQUE
        for slot in range(off - off % 8, off + size, 8):
            prev = st.stack.get(slot)
            mask = prev.mask if isinstance(prev, Misc) else \
                0 if prev is None or isinstance(prev, Opaque) else 0xFF
            for b in range(max(off, slot), min(off + size, slot + 8)):
                mask |= 1 << (b - slot)
            st.stack[slot] = Misc(mask)
        if size == 8 and off % 8 == 0:
            st.stack[off] = val
        return OPAQUE

    def ctx(self, insn: Insn, base: Ptr, r: int, off: int, size: int, write: bool) -> Value:
        if base.vmin or base.vmax:
            raise Stop  # "variable ctx access var_off=... disallowed"
        if base.off != 0:  # check_ptr_off_reg: the context is addressed from its start only
            raise self.problem(insn, "ctx_modified", (
                f"dereference of modified ctx ptr R{r} off={base.off} disallowed",),
                off=base.off, size=size)
        if self.prog.prog_type == "xdp":
            if insn.cls == "st":
                raise Stop  # "BPF_ST stores into R%d ctx is not allowed"
            egress = off == _XDP_EGRESS and self.prog.kind.expected_attach_type != "xdp_devmap"
            if write or not 0 <= off < _XDP_MD_SIZE or off % size or size != 4 or egress:
                raise self.problem(insn, "ctx_access", (
                    f"invalid bpf_context access off={off} size={size}",), off=off, size=size)
            kind = _XDP_PTRS.get(off)
            if kind is not None:
                return Ptr(kind)  # type: ignore[arg-type]
            return OPAQUE if off == 8 else unknown(32)
        if insn.cls in ("ldx", "stx"):
            self.ctx_seen.setdefault((off, size, write), insn)
        if self.prog.prog_type in ("sched_cls", "sched_act") and not write and size == 4:
            kind = _SKB_PTRS.get(off)
            if kind is not None:
                return Ptr(kind)  # type: ignore[arg-type]
        return OPAQUE

    def packet(self, insn: Insn, base: Ptr, r: int, off: int, size: int) -> None:
        if base.vmin < 0:
            raise Stop
        if base.range < 0:
            raise self.problem(insn, "packet_bounds",
                               (f"R{r} offset is outside of the packet",), reg=r)
        if off < 0 or off + size > base.range:
            raise self.problem(insn, "packet_bounds", (
                f"invalid access to packet, off={off} size={size}, "
                f"R{r}(id={base.id},off={off},r={base.range})",
                f"R{r} offset is outside of the packet"),
                off=off, size=size, reg=r, r=base.range)

    def map_value(self, insn: Insn, base: Ptr, r: int, off: int, size: int) -> None:
        vs = base.value_size
        lo, hi = base.vmin + off, base.vmax + off
        if lo < 0 or lo + size > vs:
            raise self.problem(insn, "map_value_bounds", (
                f"invalid access to map value, value_size={vs} off={lo} size={size}",
                f"R{r} min value is outside of the allowed memory range"),
                off=lo, size=size, value_size=vs)
        if base.vmax >= _MAX_VAR_OFF:
            raise Stop
        if hi + size > vs:
            raise self.problem(insn, "map_value_bounds", (
                f"invalid access to map value, value_size={vs} off={hi} size={size}",
                f"R{r} max value is outside of the allowed memory range"),
                off=hi, size=size, value_size=vs)

    def global_data(self, section: str, off: int) -> Value:
        """``ld_imm64`` of a global (``.rodata``/``.data``/``.bss``): a map value of the
        one-entry array map holding the section, at the variable's offset (check_ld_imm)."""
        sec = next((d for d in self.obj.data_sections if d.name == section), None)
        if sec is None or sec.kind not in _GLOBAL_DATA or not 0 <= off < sec.size:
            return OPAQUE
        return Ptr("map_value", off=off, value_size=sec.size, map_name=sec.name,
                   rdonly=sec.kind == "rodata")

    def exit(self, insn: Insn, st: State, allowed: tuple[int, int, int, int] | None) -> None:
        """The entry function's ``exit``: R0 against the program type's range."""
        r0 = st.regs[0]
        if allowed is None or not isinstance(r0, Scalar) or r0.const is None:
            return  # a range: its bounds may not be the kernel's, so no message to predict
        lo, hi, any_lo, any_hi = allowed
        v = signed(r0.const)
        if any_lo <= v <= any_hi:
            return
        has = (f" smin={v}" if v > -S64_MAX - 1 else "") + (f" smax={v}" if v < S64_MAX else "")
        raise self.problem(insn, "return_code", (
            f"At program exit the register R0 has{has} should have been in [{lo}, {hi}]",),
            value=v, lo=lo, hi=hi)

    # -- calls ---------------------------------------------------------------------------------

    def helper_args(self, insn: Insn, st: State, maps: dict[str, Map]) -> None:
        """The map memory a helper reads or writes through its arguments, against the map's
        ``BPF_F_RDONLY_PROG`` / ``BPF_F_WRONLY_PROG`` (check_func_arg, check_helper_mem_access,
        record_func_map). The kernel checks the arguments in order and stops at the first
        refusal: an argument is judged only when every one before it is known to pass."""
        hid = insn.imm
        if hid in _MAP_HELPERS:
            m = st.regs[1]
            mdef = maps.get(m.map_name) if isinstance(m, Ptr) and m.kind == "map_ptr" and \
                m.off == 0 else None
            if mdef is None or mdef.key_size <= 0 or mdef.value_size <= 0 or \
                    not self.mem_arg(insn, st, 2, mdef.key_size, write=False):
                return
            if hid == _UPDATE and not (self.mem_arg(insn, st, 3, mdef.value_size, write=False)
                                       and _initialised(st.regs[4])):
                return
            if hid != _LOOKUP and mdef.flags & F_RDONLY_PROG:
                raise self.problem(insn, "map_readonly_update", ("write into map forbidden",),
                                   helper=hid)
            return
        ptr_reg = _WRITE_HELPERS.get(hid, {}).get(self.prog.prog_type)
        if ptr_reg is None:
            return
        if ptr_reg == 3:  # bpf_skb_load_bytes(skb, offset, to, len)
            ctx = st.regs[1]
            if not (isinstance(ctx, Ptr) and ctx.kind == "ctx" and ctx.off == 0
                    and not ctx.vmin and not ctx.vmax and _initialised(st.regs[2])):
                return
        size = st.regs[ptr_reg + 1]
        n = size.const if isinstance(size, Scalar) else None
        if n is not None and 0 < n < _MAX_VAR_SIZE:
            self.mem_arg(insn, st, ptr_reg, n, write=True)

    def mem_arg(self, insn: Insn, st: State, r: int, size: int, *, write: bool) -> bool:
        """Helper argument *r* gives *size* bytes of memory to read or write: refused by the
        map's flags (raised), known to pass (True), or not judged (False)."""
        p = st.regs[r]
        if not isinstance(p, Ptr):
            return False
        if p.kind == "map_value":
            if (p.wronly and not write) or (p.rdonly and write):
                raise self.forbidden(insn, p, p.off, size, write=write)
            return p.off + p.vmin >= 0 and p.off + p.vmax + size <= p.value_size and \
                p.vmax < _MAX_VAR_OFF
        if p.kind != "stack" or write or p.vmin or p.vmax or p.off < -_STACK_SIZE or \
                p.off + size > 0:
            return False
        for b in range(p.off, p.off + size):
            slot = b - b % 8
            v = st.stack.get(slot)
            if not (isinstance(v, Scalar) or (isinstance(v, Misc) and v.mask >> (b - slot) & 1)):
                return False
        return True


def _initialised(v: Value) -> bool:
    return not isinstance(v, Uninit)
