"""Global functions: the signatures the verifier refuses, read from BTF.

A global (non-static) BPF function is verified once, alone, against its BTF ``FUNC_PROTO``
(``btf_prepare_func_args`` in ``kernel/bpf/btf.c``), not in the context of each caller. When
its prototype says something the verifier cannot turn into register types, every call to it
is refused: the log has the prototype's problem, then "Caller passes invalid args into
func#N ('name')" (the decisive line). What it takes, by release:

* the return type (modifiers and typedefs skipped) is an ``int`` or an ``enum`` (5.6, the
  function-by-function verification, 51c39bb1d5d1): anything else is "Global function f()
  doesn't return scalar. Only those are supported." ``void`` included up to 6.18; mainline
  after 6.18 takes ``void`` (and words it "return value not void or scalar"), so a kernel
  newer than 6.18 is not held to the ``void`` rule;
* each argument is an ``int``/``enum`` (a scalar) or a pointer: a pointer to the program
  type's context struct (``struct __sk_buff *`` for a socket filter, by name) is the context;
  before 5.12 nothing else ("Arg#0 type PTR in f() is not supported yet."); since 5.12
  (e5069b9c23b3, "bpf: Support pointers in global func args") any other pointer is memory of
  the pointee's size, which must be known: ``void *``, a declared-only struct or a function
  pointer is "arg#0 reference type('UNKNOWN ') size cannot be determined: -22";
* any other argument (a struct or float by value) is "Arg#0 type STRUCT in f() is not
  supported yet.".

Not judged (nothing said): arguments with an ``arg:`` BTF decl tag (6.8+: ``arg:ctx``,
``arg:nonnull``...), pointers on kernels before 5.12 in program types whose context name this
module does not know, and the entry function (the kernel gives it the context whatever its
prototype says). Functions the loaders make static before loading are never judged:
``memset``/``memcpy``/``memmove``/``memcmp`` (aya-obj and the native loader) and global
functions of hidden visibility (libbpf and the native loader):
:attr:`~pytest_ebpf.obj.model.Function.loaded_static`.
"""

from __future__ import annotations

from pytest_ebpf.analysis.checks import source_line
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.analysis.profiles import KernelProfile
from pytest_ebpf.obj.btf import Btf, BtfType
from pytest_ebpf.obj.model import EbpfObject, Function, Program

__all__ = ["CTX_STRUCTS", "global_function_findings"]

POINTER_ARGS = (5, 12)
"""e5069b9c23b3 "bpf: Support pointers in global func args": pointers to sized types."""
VOID_RETURN_AFTER = (6, 18)
"""The newest release known to refuse a ``void`` global function (checked on 6.18)."""

CTX_STRUCTS: dict[str, str] = {
    "socket_filter": "__sk_buff", "sched_cls": "__sk_buff", "sched_act": "__sk_buff",
    "cgroup_skb": "__sk_buff", "lwt_in": "__sk_buff", "lwt_out": "__sk_buff",
    "lwt_xmit": "__sk_buff", "lwt_seg6local": "__sk_buff", "sk_skb": "__sk_buff",
    "flow_dissector": "__sk_buff", "xdp": "xdp_md", "cgroup_sock": "bpf_sock",
    "cgroup_sock_addr": "bpf_sock_addr", "sock_ops": "bpf_sock_ops", "sk_msg": "sk_msg_md",
    "perf_event": "bpf_perf_event_data", "raw_tracepoint": "bpf_raw_tracepoint_args",
    "sk_reuseport": "sk_reuseport_md", "sk_lookup": "bpf_sk_lookup",
    "cgroup_sysctl": "bpf_sysctl", "cgroup_sockopt": "bpf_sockopt",
    "cgroup_device": "bpf_cgroup_dev_ctx",
}
"""Program type -> its context struct's name (``include/linux/bpf_types.h``); the types whose
context is not a struct pointer (kprobe, tracepoint, tracing...) are not listed."""

_MODIFIERS = frozenset({"typedef", "volatile", "const", "restrict", "type_tag"})
_SCALARS = frozenset({"int", "enum", "enum64"})
_SIZED = frozenset({"int", "struct", "union", "enum", "enum64", "float", "ptr"})

FIX = ("make the function `static` (C) / `#[inline(always)]` or private (Rust), or change its "
       "signature to scalars and pointers to sized types")


def _skip(btf: Btf, type_id: int) -> BtfType:
    t = btf.type(type_id)
    for _ in range(32):
        if t.kind not in _MODIFIERS or t.type is None:
            return t
        t = btf.type(t.type)
    return t


def _kind(t: BtfType) -> str:
    return "UNKNOWN" if t.kind == "void" else t.kind.upper()


def _sized(btf: Btf, t: BtfType) -> bool:
    """``btf_resolve_size`` succeeds: a size through modifiers and arrays."""
    for _ in range(32):
        if t.kind in _SIZED:
            return True
        if t.kind in _MODIFIERS and t.type is not None:
            t = btf.type(t.type)
        elif t.kind == "array" and t.array is not None:
            t = btf.type(t.array.type)
        else:
            return False
    return False


def _tagged(btf: Btf, func: BtfType) -> frozenset[int]:
    """Argument indices carrying an ``arg:`` decl tag (judged by rules this module skips)."""
    return frozenset(t.component_idx for t in btf.types
                     if t.kind == "decl_tag" and t.type == func.id and t.name.startswith("arg:")
                     and t.component_idx is not None and t.component_idx >= 0)


def _problem(btf: Btf, func: BtfType, prog: Program, profile: KernelProfile) -> str | None:
    """The line ``btf_prepare_func_args`` logs for *func* on *profile*'s kernel, or None."""
    proto = btf.type(func.type) if func.type is not None else None
    if proto is None or proto.kind != "func_proto":
        return None
    name = func.name
    ret = _skip(btf, proto.type or 0)
    if ret.kind not in _SCALARS and (ret.kind != "void" or profile.version <= VOID_RETURN_AFTER):
        if profile.version > VOID_RETURN_AFTER:
            return (f"Global function {name}() return value not void or scalar. Only those are "
                    "supported.")
        return f"Global function {name}() doesn't return scalar. Only those are supported."
    tagged = _tagged(btf, func)
    ctx = CTX_STRUCTS.get(prog.kind.prog_type)
    for i, param in enumerate(proto.params):
        if i in tagged:
            return None  # the tags decide; not judged here
        t = _skip(btf, param.type)
        if t.kind in _SCALARS:
            continue
        if t.kind == "ptr":
            pointee = _skip(btf, t.type or 0)
            if pointee.kind == "struct" and ctx is not None and pointee.name == ctx:
                continue  # PTR_TO_CTX
            if profile.version < POINTER_ARGS:
                if ctx is None:
                    return None  # cannot tell the context from memory: say nothing
                return f"Arg#{i} type PTR in {name}() is not supported yet."
            if not _sized(btf, pointee):
                return (f"arg#{i} reference type('{_kind(pointee)} {pointee.name}') size "
                        "cannot be determined: -22")
            continue
        return f"Arg#{i} type {_kind(t)} in {name}() is not supported yet."
    return None


def _called(prog: Program) -> dict[tuple[str, str], tuple[Function, Function]]:
    """Function key -> (the function, its first caller) for every BPF-to-BPF call target."""
    index = prog.index
    out: dict[tuple[str, str], tuple[Function, Function]] = {}
    for fn in prog.functions:
        for call in fn.calls:
            callee = index.callee(call) if call.kind == "bpf" else None
            if callee is not None and callee.key not in out and callee is not prog.entry:
                out[callee.key] = (callee, fn)
    return out


def global_function_findings(obj: EbpfObject, prog: Program,
                             profile: KernelProfile) -> list[Finding]:
    """A finding per global function *prog* calls whose prototype *profile*'s kernel refuses."""
    btf = obj.btf
    if btf is None or obj.btf_ext is None:
        return []  # without func_info the kernel verifies every function in its caller
    out: list[Finding] = []
    for callee, caller in _called(prog).values():
        if callee.loaded_static:
            continue
        func = btf.find(callee.name, "func")
        if func is None or func.linkage != "global":
            continue
        line = _problem(btf, func, prog, profile)
        if line is None:
            continue
        call = next((c.insn for c in caller.calls if c.kind == "bpf"
                     and prog.index.callee(c) is callee), None)
        src = source_line(obj, caller, call) if call is not None else None
        at = f" (called at {src})" if src else ""
        out.append(Finding(
            check="global_func_signature", rule="global_funcs", program=prog.name,
            function=callee.name, insn=call, kernel=profile.label, reason=line,
            message=(f"program {prog.name}: global function {callee.name}(){at} is verified "
                     f"alone against its BTF prototype, which {profile.label} refuses: the "
                     f"verifier says \"{line}\", then \"Caller passes invalid args into "
                     f"func#N ('{callee.name}')\""),
            fix=FIX))
    return out
