"""Static checks of programs: what the verifier or a loader would refuse, found without loading.

Every check returns a list of :class:`Finding`; ``check`` is a stable id (``indirect_call``,
``undefined_call``, ``fallthrough``, ``too_many_instructions``, ``unprivileged_insn_limit``,
``gpl_only_helper``, ``missing_func_info``). Only functions reachable from a program are looked
at: code nobody calls (e.g. ``memcpy`` & co. that Rust's ``compiler_builtins`` leaves in
``.text``) is never a problem of a program.
"""

from __future__ import annotations

from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.analysis.profiles import KernelProfile
from pytest_ebpf.obj.helpers import GPL_ONLY, helper_name
from pytest_ebpf.obj.isa import Insn
from pytest_ebpf.obj.model import EbpfObject, Function, Program

__all__ = [
    "BPF_COMPLEXITY_LIMIT_INSNS",
    "BPF_MAXINSNS",
    "GPL_COMPATIBLE_LICENSES",
    "Finding",
    "all_findings",
    "bad_function_ends",
    "callees",
    "gpl_only_helpers",
    "helpers_used",
    "indirect_calls",
    "instruction_counts",
    "is_gpl_compatible",
    "kfuncs_used",
    "missing_func_info",
    "source_line",
    "undefined_calls",
]

BPF_MAXINSNS = 4096
"""Most instructions an unprivileged user may load (``BPF_MAXINSNS``)."""
BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000
"""Most instructions a privileged user may load (and the verifier may process)."""

GPL_COMPATIBLE_LICENSES = (
    "GPL",
    "GPL v2",
    "GPL and additional rights",
    "Dual BSD/GPL",
    "Dual MIT/GPL",
    "Dual MPL/GPL",
)
"""The kernel's ``license_is_gpl_compatible()`` list (include/linux/license.h)."""


def is_gpl_compatible(license: str | None) -> bool:
    """True when the kernel treats *license* as GPL-compatible (exact match, as the kernel)."""
    return license is not None and license in GPL_COMPATIBLE_LICENSES


def _where(fn: Function, insn: Insn) -> str:
    return f"{fn.name} ({fn.section}) insn {insn.index}"


def indirect_calls(obj: EbpfObject, prog: Program) -> list[Finding]:
    """``callx`` instructions: the verifier only accepts calls to known targets."""
    out: list[Finding] = []
    for fn in prog.functions:
        for call in fn.calls:
            if call.kind == "callx":
                reg = call.insn.callx_reg
                out.append(
                    Finding(
                        check="indirect_call",
                        rule="calls",
                        program=prog.name,
                        function=fn.name,
                        insn=call.insn,
                        message=(
                            f"program {prog.name}: indirect call through r{reg} at "
                            f"{_where(fn, call.insn)}: `{call.insn.text()}`; the verifier "
                            f"refuses calls through registers"
                        ),
                        fix=(
                            "use a static dispatch (match) or bpf_tail_call with a PROG_ARRAY"
                        ),
                    )
                )
    return out


def undefined_calls(obj: EbpfObject, prog: Program) -> list[Finding]:
    """Calls to symbols nothing defines (e.g. an unexpanded ``memcpy``): no loader can link them."""
    out: list[Finding] = []
    for fn in prog.functions:
        for call in fn.calls:
            if call.kind == "undefined":
                target = call.target or "?"
                out.append(
                    Finding(
                        check="undefined_call",
                        rule="calls",
                        program=prog.name,
                        function=fn.name,
                        insn=call.insn,
                        message=(
                            f"program {prog.name}: call to undefined function {target} at "
                            f"{_where(fn, call.insn)}; no eBPF loader can resolve it"
                        ),
                        fix=(
                            "avoid large/unaligned copies (use core::ptr::copy_nonoverlapping "
                            "with a const size <= 512, or #[inline(always)]) so LLVM expands "
                            "them; for C, __builtin_memcpy with a constant size"
                        ),
                    )
                )
    return out


def bad_function_ends(obj: EbpfObject, prog: Program) -> list[Finding]:
    """Functions whose last instruction is neither ``exit`` nor an unconditional jump: control
    would fall through into whatever follows (the verifier: "last insn is not an exit or jmp",
    "jump out of range")."""
    out: list[Finding] = []
    for fn in prog.functions:
        last = fn.last_insn
        if last is not None and (last.is_exit or last.is_unconditional_jump):
            continue
        text = f"`{last.text()}`" if last is not None else "nothing (empty function)"
        out.append(
            Finding(
                check="fallthrough",
                rule="control_flow",
                program=prog.name,
                function=fn.name,
                insn=last,
                message=(
                    f"program {prog.name}: function {fn.name} ({fn.section}) ends with {text}, "
                    f"not exit or an unconditional jump: execution falls through its end "
                    f"(verifier: \"last insn is not an exit or jmp\")"
                ),
                fix="end every function with exit (return); check hand-written assembly",
                reason="last insn is not an exit or jmp",
            )
        )
    return out


def instruction_counts(
    obj: EbpfObject, prog: Program, limit: int = BPF_COMPLEXITY_LIMIT_INSNS,
    profile: KernelProfile | None = None,
) -> list[Finding]:
    """Programs larger than *limit* (privileged) or :data:`BPF_MAXINSNS` (unprivileged loads).
    With *profile*, that kernel's limit applies (4096 for everyone before 5.2)."""
    n = prog.instructions
    on = ""
    label = None
    if profile is not None:
        limit, on, label = profile.insn_limit, f" on {profile.label}", profile.label
    out: list[Finding] = []
    if n > limit:
        out.append(
            Finding(
                check="too_many_instructions",
                rule="instructions",
                program=prog.name,
                function=prog.entry.name,
                insn=None,
                message=(
                    f"program {prog.name} has {n} instructions (its functions included), more "
                    f"than the {limit} a privileged load accepts{on}"
                    + (f" (unprivileged: {BPF_MAXINSNS})" if profile is None
                       or profile.has("complexity_1m") else "")
                    + "; the kernel returns E2BIG"
                ),
                fix=(
                    "split the program with bpf_tail_call, move loops into bpf_loop callbacks, "
                    "or stop inlining large functions"
                ),
                kernel=label,
                total=n,
            )
        )
    elif n > BPF_MAXINSNS:
        out.append(
            Finding(
                check="unprivileged_insn_limit",
                rule="instructions",
                severity="note",
                program=prog.name,
                function=prog.entry.name,
                insn=None,
                message=(
                    f"program {prog.name} has {n} instructions, more than the {BPF_MAXINSNS} "
                    f"an unprivileged load accepts (privileged limit: {limit}); it needs "
                    f"CAP_BPF or root"
                ),
                fix="load it with CAP_BPF, or shrink it below 4096 instructions",
                kernel=label,
                total=n,
            )
        )
    return out


def gpl_only_helpers(obj: EbpfObject, prog: Program) -> list[Finding]:
    """GPL-only helpers called while the object's license is not GPL-compatible (the verifier:
    "cannot call GPL-restricted function from non-GPL compatible program").

    An object without a ``license`` section is loaded as ``"GPL"``: aya-obj's default, which
    the native loader follows; only a license the object spells is judged."""
    if obj.license is None or is_gpl_compatible(obj.license):
        return []
    out: list[Finding] = []
    lic = repr(obj.license)
    for fn in prog.functions:
        for call in fn.calls:
            if call.kind == "helper" and call.helper_id in GPL_ONLY:
                name = helper_name(call.helper_id)
                out.append(
                    Finding(
                        check="gpl_only_helper",
                        rule="license",
                        program=prog.name,
                        function=fn.name,
                        insn=call.insn,
                        message=(
                            f"program {prog.name}: {name} (helper {call.helper_id}) at "
                            f"{_where(fn, call.insn)} is GPL-only but the license is {lic}; the "
                            f"verifier refuses it (\"cannot call GPL-restricted function from "
                            f"non-GPL compatible program\")"
                        ),
                        fix=(
                            'use a GPL-compatible license ("GPL", "Dual MIT/GPL", '
                            '"Dual BSD/GPL"...) or avoid the helper'
                        ),
                    )
                )
    return out


def missing_func_info(obj: EbpfObject) -> list[Finding]:
    """With ``.BTF.ext``: program entries and reachable functions without a func_info record at
    their offset (a loader then cannot hand the kernel complete BTF function info; the verifier
    refuses BPF-to-BPF calls, tail calls from subprograms and global functions without it)."""
    ext = obj.btf_ext
    if ext is None:
        return []
    starts: dict[str, frozenset[int]] = {
        sec: frozenset(r.insn_off for r in recs) for sec, recs in ext.func_info.items()
    }
    out: list[Finding] = []
    for prog in obj.programs:
        for fn in prog.functions:
            if fn.offset * 8 in starts.get(fn.section, frozenset()):
                continue
            role = "entry" if fn is prog.entry else "function"
            out.append(
                Finding(
                    check="missing_func_info",
                    rule="btf",
                    program=prog.name,
                    function=fn.name,
                    insn=fn.first_insn,
                    message=(
                        f"program {prog.name}: {role} {fn.name} ({fn.section} insn {fn.offset}) "
                        f"has no .BTF.ext func_info record"
                    ),
                    fix=(
                        "compile with debug info (-g / debug = true) and do not hand-write "
                        "functions in assembly without BTF"
                    ),
                )
            )
    return out


def helpers_used(prog: Program) -> tuple[int, ...]:
    """Sorted unique helper ids called by *prog* and its functions."""
    return tuple(sorted({c.helper_id for c in prog.calls if c.helper_id is not None}))


def kfuncs_used(prog: Program) -> tuple[str, ...]:
    """Sorted unique kfunc names called by *prog* and its functions."""
    return tuple(sorted({c.target for c in prog.calls if c.kind == "kfunc" and c.target}))


def callees(prog: Program) -> tuple[str, ...]:
    """Sorted unique names of the functions *prog* (and its functions) call BPF-to-BPF."""
    return tuple(sorted({c.target for c in prog.calls if c.kind == "bpf" and c.target}))


def all_findings(
    obj: EbpfObject, prog: Program, func_info: list[Finding] | None = None
) -> list[Finding]:
    """Every per-program check, plus the program's missing func_info findings (pass
    ``missing_func_info(obj)`` as *func_info* when checking every program of an object, so it
    is computed once)."""
    kinds = {c.kind for fn in prog.functions for c in fn.calls}
    out = indirect_calls(obj, prog) if "callx" in kinds else []
    if "undefined" in kinds:
        out += undefined_calls(obj, prog)
    out += bad_function_ends(obj, prog)
    out += instruction_counts(obj, prog)
    if "helper" in kinds:
        out += gpl_only_helpers(obj, prog)
    if func_info is None:
        func_info = missing_func_info(obj)
    out += [f for f in func_info if f.program == prog.name]
    return out


def source_line(obj: EbpfObject, fn: Function, insn: Insn) -> str | None:
    """``file:line: text`` of *insn* from ``.BTF.ext`` line_info, or None without one."""
    ext = obj.btf_ext
    if ext is None:
        return None
    li = ext.line_at(fn.section, insn.index * 8)
    if li is None:
        return None
    if li.insn_off < fn.offset * 8:
        return None  # the record belongs to the function before
    text = li.line.strip()
    where = f"{li.file_name}:{li.line_num}"
    return f"{where}: {text}" if text else where
