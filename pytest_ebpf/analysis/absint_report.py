"""Findings of :mod:`pytest_ebpf.analysis.absint`: the kernel's words and the developer's fix."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_ebpf.analysis.checks import source_line
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.obj.isa import Insn
from pytest_ebpf.obj.model import EbpfObject, Function, Program

__all__ = ["CHECKS", "RULE", "Problem", "finding"]

RULE = "memory_safety"
"""The rule id the findings carry."""

_PACKET_FIX = (
    "check `data + N <= data_end` before reading (N: the offset plus the size read, {end} "
    "here); in Rust/Aya, compare `ctx.data() + offset + size` with `ctx.data_end()` before "
    "`ptr_at`")

CHECKS: dict[str, tuple[str, str]] = {
    "packet_bounds": ("packet access beyond the bounds checked", _PACKET_FIX),
    "map_null": ("map value used before its null check",
                 "test the result of bpf_map_lookup_elem before use (`if (!v) return 0;`); in "
                 "Rust, the `Option` from `get()`/`get_ptr()`"),
    "map_value_bounds": ("map value accessed outside its value",
                         "keep accesses inside the map's value: offset + size <= value_size "
                         "({value_size} bytes); check indexes against the value's length"),
    "ctx_access": ("context access outside the program type's context",
                   "read struct xdp_md fields as u32 at their offsets (data 0, data_end 4, "
                   "data_meta 8, ingress_ifindex 12, rx_queue_index 16, egress_ifindex 20); "
                   "the context is read-only"),
    "ctx_modified": ("context access through a pointer moved off the context's start",
                     "address context fields from the context pointer itself (ctx->field: the "
                     "offset goes in the load, r1 + 8), never through ctx + n kept in a "
                     "register; in Rust/Aya, read fields through the context's accessors"),
    "pointer_arithmetic": ("pointer arithmetic the verifier refuses",
                           "do arithmetic on data/data_end only by adding offsets to `data`, "
                           "null-check map values before offsetting them, and never apply "
                           "|, &, ^, * or shifts to pointers (cast to an integer first)"),
    "return_code": ("return value outside the program type's range",
                    "return only a value in [{lo}, {hi}] from this program{meaning}; in "
                    "Rust/Aya, return these constants from every arm (an error path too), not "
                    "-1 or an errno"),
    "map_readonly": ("store into read-only map memory",
                     "do not write to `const` globals: they live in .rodata, which the loader "
                     "freezes read-only for the program (BPF_F_RDONLY_PROG); drop `const` to "
                     "put the variable in .data/.bss (in Rust, a `static` without `mut` is "
                     "read-only to the program: use `static mut` or a map), or create the map "
                     "without BPF_F_RDONLY_PROG ({value_size}-byte value)"),
    "map_writeonly": ("load from write-only map memory",
                      "the map is created with BPF_F_WRONLY_PROG: the program may only store "
                      "into its values (user space reads them), and `+=`, `++` or a helper "
                      "taking the value as a key or value to copy all read it; store whole "
                      "values without reading them, keep what the program reads in a map "
                      "without the flag, or drop BPF_F_WRONLY_PROG from the map's flags "
                      "(`__uint(map_flags, ...)` in C; the flags argument of "
                      "`HashMap::with_max_entries(n, flags)` / `Array::with_max_entries` in "
                      "Rust/Aya) ({value_size}-byte value)"),
    "map_readonly_update": ("update or delete on a read-only map",
                            "the map is created with BPF_F_RDONLY_PROG: only user space may "
                            "update or delete its elements, the program may only look them "
                            "up; drop the flag from the map's flags (`__uint(map_flags, ...)` "
                            "in C; the flags argument of `HashMap::with_max_entries(n, "
                            "flags)` in Rust/Aya), or keep the entries the program changes in "
                            "a map without it"),
}
"""Check id -> (what it is, the fix; ``{name}`` fields come from the problem's facts)."""

_RETURN_MEANING = {
    "cgroup_skb": " (1 lets the packet through, 0 drops it; egress programs may add 2 for "
                  "congestion notification)",
    "cgroup_sock": " (1 allows the socket operation, 0 refuses it with EPERM)",
    "cgroup_sock_addr": " (1 allows, 0 refuses with EPERM; recvmsg, getpeername and "
                        "getsockname hooks must return 1; bind may return 2 and 3)",
    "cgroup_device": " (1 allows the device access, 0 denies it)",
    "cgroup_sysctl": " (1 allows the sysctl access, 0 refuses it)",
    "cgroup_sockopt": " (1 lets the kernel handle the option, 0 refuses it with EPERM)",
    "sock_ops": " (1 on success; the reply goes in `reply`, not the return value)",
    "sk_lookup": " (SK_PASS 1 or SK_DROP 0)",
}


@dataclass(frozen=True)
class Problem:
    """One refusal the interpreter predicts."""

    check: str
    insn: Insn
    lines: tuple[str, ...]
    """The kernel's log lines, the decisive (last) one last."""
    facts: tuple[tuple[str, int], ...] = ()
    """The numbers in the kernel's message (off, size, reg...)."""

    def fact(self, name: str) -> int | None:
        return dict(self.facts).get(name)


def finding(obj: EbpfObject, prog: Program, fn: Function, p: Problem) -> Finding:
    what, fix = CHECKS[p.check]
    facts = dict(p.facts)
    if p.check == "packet_bounds":
        off, size = facts.get("off"), facts.get("size")
        fix = fix.format(end=f"{off} + {size} = {off + size}" if off is not None and
                         size is not None else "the end of the last byte read")
    elif p.check == "return_code":
        fix = fix.format(meaning=_RETURN_MEANING.get(prog.prog_type, ""), **facts)
    else:
        fix = fix.format(**facts) if "{" in fix else fix
    where = f"{fn.name} ({fn.section}) insn {p.insn.index}"
    src = source_line(obj, fn, p.insn)
    at = f"{where}: `{p.insn.text()}`" + (f" ({src})" if src else "")
    kernel = "; ".join(p.lines)
    said = ", then ".join(f'"{line}"' for line in p.lines)  # each line quoted, as logged
    return Finding(check=p.check, rule=RULE, program=prog.name, function=fn.name, insn=p.insn,
                   message=f"program {prog.name}: {what} at {at}; the verifier: {said}",
                   fix=fix, reason=p.lines[-1] if len(p.lines) == 1 else kernel)
