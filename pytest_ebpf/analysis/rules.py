"""The registry of static rules: one table, one finding type, every verdict comes from here.

``inspect``, the assertion helpers (:mod:`pytest_ebpf.analysis.assertions`) and the plugin's
generated checks all run :data:`RULES`. A rule that depends on the kernel runs once per kernel
profile and its findings carry the profile's label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pytest_ebpf.abi import Helper, ProgType
from pytest_ebpf.analysis import checks
from pytest_ebpf.analysis.absint import AbsintResult, analyse_program
from pytest_ebpf.analysis.absint_report import CHECKS
from pytest_ebpf.analysis.budgets import Budget
from pytest_ebpf.analysis.corecheck import FIX as CORE_FIX
from pytest_ebpf.analysis.corecheck import core_findings
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.analysis.flow import (
    ProgramFlow,
    control_flow_findings,
    encoding_findings,
    register_findings,
    stack_access_findings,
)
from pytest_ebpf.analysis.globalfuncs import FIX as GLOBAL_FIX
from pytest_ebpf.analysis.globalfuncs import global_function_findings
from pytest_ebpf.analysis.helper_types import call_findings, context_findings, kfunc_absent
from pytest_ebpf.analysis.profiles import KernelProfile
from pytest_ebpf.analysis.stack import ProgramStack, profile_stack, stack_problems
from pytest_ebpf.obj.core import POISON_HELPER
from pytest_ebpf.obj.helpers import helper_name
from pytest_ebpf.obj.isa import Insn
from pytest_ebpf.obj.model import EbpfObject, Function, Program

__all__ = ["RULES", "Context", "ProgramVerdict", "Rule", "evaluate", "judge", "rule", "rule_ids"]


@dataclass
class Context:
    """What a rule looks at: one program of one object, judged by one kernel."""

    obj: EbpfObject
    prog: Program
    profile: KernelProfile
    budget: dict[str, Budget] = field(default_factory=dict)
    """Figure -> the project's budget for this program."""
    _stack: ProgramStack | None = None
    _func_info: list[Finding] | None = None
    _flow: ProgramFlow | None = None
    _shared: dict[str, AbsintResult] = field(default_factory=dict)
    """Kernel-independent results of this program, shared by its contexts of every profile."""

    @property
    def absint(self) -> AbsintResult:
        """The abstract interpreter's walk of the program (once for every profile)."""
        if "absint" not in self._shared:
            self._shared["absint"] = analyse_program(self.obj, self.prog)
        return self._shared["absint"]

    @property
    def stack(self) -> ProgramStack:
        if self._stack is None:
            self._stack = profile_stack(self.obj, self.prog, self.profile)
        return self._stack

    @property
    def flow(self) -> ProgramFlow:
        """The program laid out as the kernel gets it, with its control flow."""
        if self._flow is None:
            self._flow = ProgramFlow(self.obj, self.prog)
        return self._flow

    def func_info(self) -> list[Finding]:
        if self._func_info is None:
            self._func_info = checks.missing_func_info(self.obj)
        return [f for f in self._func_info if f.program == self.prog.name]


@dataclass(frozen=True)
class Rule:
    """One rule: what it checks, whether the kernel matters, and the usual fix."""

    id: str
    checks: str
    kernel_dependent: bool
    fix: str
    run: Callable[[Context], list[Finding]] = field(repr=False, compare=False)
    finds: tuple[str, ...] = ()
    """The :attr:`Finding.check` ids it reports."""


def _stack(ctx: Context) -> list[Finding]:
    return stack_problems(ctx.obj, ctx.prog, stack=ctx.stack, profile=ctx.profile)


def _calls(ctx: Context) -> list[Finding]:
    return checks.indirect_calls(ctx.obj, ctx.prog) + checks.undefined_calls(ctx.obj, ctx.prog)


def _control_flow(ctx: Context) -> list[Finding]:
    return checks.bad_function_ends(ctx.obj, ctx.prog) + control_flow_findings(ctx.flow)


def _encoding(ctx: Context) -> list[Finding]:
    return encoding_findings(ctx.flow)


def _registers(ctx: Context) -> list[Finding]:
    return register_findings(ctx.flow)


def _stack_access(ctx: Context) -> list[Finding]:
    return stack_access_findings(ctx.flow)


def _instructions(ctx: Context) -> list[Finding]:
    return checks.instruction_counts(ctx.obj, ctx.prog, profile=ctx.profile)


def _license(ctx: Context) -> list[Finding]:
    return checks.gpl_only_helpers(ctx.obj, ctx.prog)


_BTF_FLAGS = ('in the eBPF crate\'s .cargo/config.toml: rustflags = ["-C", "debuginfo=2", '
              '"-C", "link-arg=--btf"] (aya-build passes them); for C, clang -g')


def _btf(ctx: Context) -> list[Finding]:
    obj, prog = ctx.obj, ctx.prog
    what = None
    if obj.btf is None:
        what = ("no_btf", "the object has no .BTF section: the kernel gets no types, no "
                "function info and no source lines (BTF maps, CO-RE and global functions "
                "cannot work, verifier logs show no source)")
    elif obj.btf_ext is None:
        what = ("no_btf_ext", "the object has BTF but no .BTF.ext: no func_info or line_info")
    if what is not None:
        return [Finding(check=what[0], rule="btf", program=prog.name, function=prog.entry.name,
                        insn=None, message=f"program {prog.name}: {what[1]}",
                        fix=f"build with BTF: {_BTF_FLAGS}", policy=True)]
    return ctx.func_info()


def _core(ctx: Context) -> list[Finding]:
    return core_findings(ctx.obj, ctx.prog, ctx.profile, lambda: ctx.flow)


def _global_funcs(ctx: Context) -> list[Finding]:
    return global_function_findings(ctx.obj, ctx.prog, ctx.profile)


def _feature(ctx: Context, feature: str, what: str, fn: Function, insn: Insn | None,
             fix: str, check: str) -> Finding:
    change = ctx.profile.change(feature)
    since = f"{change.version[0]}.{change.version[1]}"
    return Finding(check=check, rule="features", program=ctx.prog.name, function=fn.name,
                   insn=insn, kernel=ctx.profile.label,
                   message=(f"program {ctx.prog.name}: {what}; rejected on {ctx.profile.label}: "
                            f"the kernel has it since {since} ({change.subject})"),
                   fix=fix)


def _features(ctx: Context) -> list[Finding]:
    """Instructions, helpers, kfuncs and program types newer than the kernel."""
    profile, prog = ctx.profile, ctx.prog
    found: dict[str, Finding] = {}
    scan = not (profile.has("cpu_v4") and profile.has("may_goto")
                and profile.has("bounded_loops"))
    for fn in prog.functions:
        for insn in fn.insns if scan else ():
            if "cpu_v4" not in found and insn.is_cpu_v4 and not profile.has("cpu_v4"):
                found["cpu_v4"] = _feature(
                    ctx, "cpu_v4", f"cpu v4 instruction `{insn.text()}` in {fn.name}", fn,
                    insn, "compile for cpu v3: -C target-cpu=v3 in rustflags (clang: -mcpu=v3)",
                    "cpu_v4_insn")
            elif "may_goto" not in found and insn.is_may_goto and not profile.has("may_goto"):
                found["may_goto"] = _feature(
                    ctx, "may_goto", f"may_goto in {fn.name}", fn, insn,
                    "bound the loop with a constant count instead of may_goto", "may_goto")
            elif ("loop" not in found and insn.is_jump and not profile.has("bounded_loops")
                  and insn.jump_target is not None and insn.jump_target <= insn.index):
                at = ctx.flow.by_key.get(fn.key)
                said = (f" (the verifier: \"back-edge from insn {at.kernel_index(insn.index)} "
                        f"to {at.kernel_index(insn.jump_target)}\")" if at is not None else "")
                found["loop"] = _feature(
                    ctx, "bounded_loops", f"a loop (back-edge at insn {insn.index}) in "
                    f"{fn.name}{said}", fn, insn, "unroll the loop (a constant bound the "
                    "compiler unrolls)", "loop")
        for call in fn.calls:
            if "kfunc" not in found and call.kind == "kfunc" and not profile.has("kfuncs"):
                found["kfunc"] = _feature(
                    ctx, "kfuncs", f"kfunc call {call.target} in {fn.name}", fn, call.insn,
                    "use a helper instead of the kfunc", "kfunc")
            newer = (profile.missing_kfunc(call.target or "") if call.kind == "kfunc"
                     and profile.has("kfuncs") else None)
            if newer is not None and newer.feature not in found:
                found[newer.feature] = _feature(
                    ctx, newer.feature, f"kfunc {call.target} in {fn.name}", fn, call.insn,
                    "avoid the kfunc on this kernel (loaders refuse it: the kernel's BTF has "
                    "no such function)", "kfunc_unavailable")
            absent = (kfunc_absent(profile, call.target or "") if call.kind == "kfunc"
                      and newer is None and profile.has("kfuncs") else None)
            if absent is not None and f"kfunc:{call.target}" not in found:
                probed = ("" if absent.version == profile.version
                          else f" (nor has {absent.label})")
                found[f"kfunc:{call.target}"] = Finding(
                    check="kfunc_unavailable", rule="features", program=prog.name,
                    function=fn.name, insn=call.insn, kernel=profile.label,
                    message=(f"program {prog.name}: kfunc {call.target} in {fn.name}: "
                             f"{profile.label} has no such kernel function{probed}, so loaders "
                             f"refuse the call (\"this kernel has no kernel function "
                             f"{call.target} in its BTF\")"),
                    fix=("avoid the kfunc on this kernel (it came later: target the oldest "
                         "kernel you ship to)"))
            last = profile.last_helper
            hid = call.helper_id
            if (call.kind == "helper" and hid is not None and last is not None and hid > last
                    and hid != POISON_HELPER and f"helper{hid}" not in found):
                found[f"helper{hid}"] = Finding(
                    check="helper_unavailable", rule="features", program=prog.name,
                    function=fn.name, insn=call.insn, kernel=profile.label,
                    message=(f"program {prog.name}: {helper_name(hid)} (helper {hid}) in "
                             f"{fn.name} is newer than {profile.label}, whose newest helper is "
                             f"{helper_name(last)} ({last}); the verifier says \"invalid func "
                             f"unknown#{hid}\""),
                    fix=("avoid the helper on this kernel (bpf_loop: a bounded for loop)"
                         if hid == Helper.loop else "avoid the helper on this kernel"))
    out = list(found.values())
    last_type = profile.last_prog_type
    try:
        ptype = ProgType[prog.kind.prog_type.upper()]
    except KeyError:
        ptype = None
    if ptype is not None and last_type is not None and ptype > last_type:
        out.append(Finding(
            check="prog_type_unavailable", rule="features", program=prog.name,
            function=prog.entry.name, insn=None, kernel=profile.label,
            message=(f"program {prog.name}: program type {prog.kind.prog_type} is newer than "
                     f"{profile.label} (its newest is {ProgType(last_type).name.lower()})"),
            fix="choose a program type this kernel has"))
    return out


def _helper_types(ctx: Context) -> list[Finding]:
    return call_findings(ctx.obj, ctx.prog, ctx.profile)


def _context(ctx: Context) -> list[Finding]:
    return context_findings(ctx.obj, ctx.prog, ctx.profile, ctx.absint.ctx_accesses)


def _budget(ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    prog = ctx.prog
    for figure, value, what in (
        ("stack", ctx.stack.total, "bytes of combined stack"),
        ("instructions", prog.instructions, "instructions"),
    ):
        budget = ctx.budget.get(figure)
        if budget is None or value <= budget.limit:
            continue
        chain = ""
        if figure == "stack":
            chain = ": " + " -> ".join(f"{n} ({b} B)" for n, b in
                                       zip(ctx.stack.chain, ctx.stack.chain_frames))
        out.append(Finding(
            check=f"budget_{figure}", rule="budget", program=prog.name,
            function=ctx.stack.deepest.function.name if figure == "stack" else prog.entry.name,
            insn=ctx.stack.deepest.deepest_insn if figure == "stack" else None,
            kernel=ctx.profile.label if figure == "stack" else None,
            message=(f"program {prog.name}: {value} {what}"
                     + (f" on {ctx.profile.label}" if figure == "stack" else "")
                     + f", over the budget of {budget.limit} (from {budget.source}){chain}"),
            fix=(f"shrink it, or raise the budget in {budget.source}"), total=value, policy=True,
            chain=ctx.stack.chain if figure == "stack" else (),
            chain_frames=ctx.stack.chain_frames if figure == "stack" else ()))
    return out


def _memory_safety(ctx: Context) -> list[Finding]:
    result = ctx.absint
    found = list(result.findings)
    if result.gave_up is not None:
        found.append(Finding(
            check="memory_safety_gave_up", rule="memory_safety", program=ctx.prog.name,
            function=ctx.prog.entry.name, insn=None, severity="note",
            message=(f"program {ctx.prog.name}: the memory-safety analysis gave up "
                     f"({result.gave_up}): it predicts nothing for this program"),
            fix="nothing to fix: the kernel decides (load it: loads[...] checks, verify)"))
    return found


RULES: tuple[Rule, ...] = (
    Rule("stack", "frame sizes, the combined stack of the deepest call chain (each kernel's "
         "rounding and private stacks), 8 frames, 256 bytes above a tail call, recursion",
         True, "keep big buffers in per-CPU array maps; inline less", _stack,
         ("stack_frame_too_large", "stack_combined_too_large", "stack_too_many_frames",
          "stack_tail_call_stack", "stack_recursion")),
    Rule("calls", "indirect calls (callx) and calls to undefined symbols", False,
         "static dispatch; let LLVM expand memcpy/memset", _calls,
         ("indirect_call", "undefined_call")),
    Rule("control_flow", "every function ends in exit or an unconditional jump, jumps stay in "
         "their function and out of ld_imm64s, every instruction is reachable", False,
         "end every function with exit; remove dead code", _control_flow,
         ("fallthrough", "jump_out_of_range", "unreachable_insn", "jump_into_ld_imm64")),
    Rule("encoding", "instructions are encoded as the kernel accepts them: registers r0-r10, "
         "r10 read-only, reserved fields zero, known opcodes, no division by "
         "a constant 0 or shift out of range, no call poisoned by CO-RE", False,
         "use the assembler's syntax; fix CO-RE relocations", _encoding,
         ("invalid_register", "frame_pointer_write", "reserved_fields", "unknown_opcode",
          "div_by_zero", "invalid_shift", "poisoned_call")),
    Rule("registers", "no register is read before any path writes it (r1-r5 after calls, r0 "
         "at the program's exit)", False, "set registers before reading them", _registers,
         ("uninit_register", "uninit_r0")),
    Rule("stack_access", "loads and stores through r10 stay inside the 512-byte frame, "
         "aligned to their size", False,
         "address the stack from r10 - 512 up to r10 - size", _stack_access,
         ("stack_out_of_bounds", "misaligned_stack")),
    Rule("memory_safety", "an abstract interpreter modelled on the verifier's (register "
         "types, packet ranges, null checks, value ranges): packet reads past the bounds "
         "checked, map values used before their null check or outside the value, context "
         "accesses outside the context, pointer arithmetic the verifier refuses, reads of "
         "write-only and writes of read-only maps (BPF_F_RDONLY_PROG/WRONLY_PROG, .rodata), "
         "directly or through helpers; silent where unsure", False,
         "check bounds and null before use", _memory_safety, tuple(CHECKS)),
    Rule("instructions", "the instruction limit of the kernel (4096 before 5.2, then 1M; "
         "4096 unprivileged)", True, "split with tail calls", _instructions,
         ("too_many_instructions", "unprivileged_insn_limit")),
    Rule("license", "GPL-only helpers need a GPL-compatible license (no license section: "
         "loaded as GPL, as Aya does)", False, "use a GPL-compatible license", _license,
         ("gpl_only_helper",)),
    Rule("btf", "BTF and .BTF.ext are present, with func_info for every function", False,
         "build with -C debuginfo=2 and --btf", _btf,
         ("no_btf", "no_btf_ext", "missing_func_info")),
    Rule("global_funcs", "global (non-static) functions the program calls have a prototype "
         "the kernel verifies them alone against: a scalar return (not a pointer; not void up "
         "to 6.18), scalar, context or sized-pointer arguments (sized pointers since 5.12)", True,
         GLOBAL_FIX, _global_funcs, ("global_func_signature",)),
    Rule("features", "instructions, helpers, kfuncs and program types the kernel has",
         True, "target the oldest kernel you ship to", _features,
         ("cpu_v4_insn", "may_goto", "loop", "kfunc", "kfunc_unavailable", "helper_unavailable",
          "prog_type_unavailable")),
    Rule("helper_types", "every helper and kfunc the program calls is one its type (with its "
         "attach type, and whether it sleeps) may call on the kernel: tables probed from real "
         "kernels (6.1, 6.12, 6.18); the nearest newer table judges a release without one",
         True, "call only the helpers and kfuncs the program type has", _helper_types,
         ("helper_not_allowed", "kfunc_not_allowed", "kfunc_sleepable")),
    Rule("context", "loads and stores through the context pointer are ones the program's "
         "kind may make on the kernel (which fields, at which sizes, which writable): tables "
         "probed from real kernels, at the accesses the abstract interpreter reaches (XDP: "
         "memory_safety)", True, "use the context's fields at their sizes", _context,
         ("ctx_field",)),
    Rule("core", "CO-RE relocations have a match in the kernel's BTF where every run reaches "
         "them (loaders poison the others' instructions); the host's kernel only, whose BTF "
         "is readable here", True, CORE_FIX, _core, ("core_unresolved",)),
    Rule("budget", "the project's own budgets (stack, instructions) from Cargo.toml metadata "
         "or the ini", True, "shrink the program or raise the budget", _budget,
         ("budget_stack", "budget_instructions")),
)
_BY_ID = {r.id: r for r in RULES}


def rule_ids() -> tuple[str, ...]:
    return tuple(_BY_ID)


def rule(rule_id: str) -> Rule:
    """The rule *rule_id*; an unknown id is a KeyError naming the rules."""
    try:
        return _BY_ID[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule {rule_id!r}; rules are {', '.join(_BY_ID)}") from None


def evaluate(obj: EbpfObject, prog: Program, profile: KernelProfile,
             rules: Iterable[Rule] = RULES, budget: dict[str, Budget] | None = None,
             context: Context | None = None) -> list[Finding]:
    """Every finding of *rules* for *prog* judged by *profile*."""
    ctx = context or Context(obj, prog, profile, budget or {})
    out: list[Finding] = []
    for r in rules:
        out += r.run(ctx)
    return out


@dataclass(frozen=True)
class ProgramVerdict:
    """One program judged by every kernel profile of a session."""

    program: Program
    profiles: tuple[KernelProfile, ...]
    stacks: dict[str, ProgramStack]
    """Profile name -> the stack as that kernel adds it up."""
    findings: tuple[Finding, ...]
    """Kernel-independent findings once, kernel-dependent ones per profile."""

    def errors(self, profile: KernelProfile) -> list[Finding]:
        """The errors that make *profile*'s kernel (or every loader) refuse the program (the
        project's policy, such as a budget, is not the kernel's: it is left out)."""
        return [f for f in self.findings if f.severity == "error" and not f.policy
                and f.kernel in (None, profile.label)]

    def summary(self) -> str:
        """``rejected on 6.1 (frames rounded to 32: 64 + 480 = 544 > 512); loads on 6.18
        (host)``."""
        parts = []
        for profile in self.profiles:
            errors = self.errors(profile)
            if errors:
                more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
                parts.append(f"rejected on {profile.label} ({errors[0].short}{more})")
            else:
                parts.append(f"loads on {profile.label}")
        return "; ".join(parts)


def judge(obj: EbpfObject, profiles: Iterable[KernelProfile], rules: Iterable[Rule] = RULES,
          budgets: Callable[[str], dict[str, Budget]] | None = None) -> list[ProgramVerdict]:
    """Every program of *obj* judged by every profile: kernel-independent rules run once."""
    profiles = tuple(profiles)
    rules = tuple(rules)
    fixed = [r for r in rules if not r.kernel_dependent]
    varying = [r for r in rules if r.kernel_dependent]
    func_info = checks.missing_func_info(obj) if any(r.id == "btf" for r in rules) else []
    out = []
    for prog in obj.programs:
        budget = budgets(prog.name) if budgets is not None else {}
        stacks: dict[str, ProgramStack] = {}
        found: list[Finding] = []
        shared: dict[str, AbsintResult] = {}
        for i, profile in enumerate(profiles):
            ctx = Context(obj, prog, profile, budget, _func_info=func_info, _shared=shared)
            found += evaluate(obj, prog, profile, (fixed + varying) if i == 0 else varying,
                              context=ctx)
            stacks[profile.name] = ctx.stack
        out.append(ProgramVerdict(prog, profiles, stacks, tuple(found)))
    return out
