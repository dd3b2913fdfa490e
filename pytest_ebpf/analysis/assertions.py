"""Assertion helpers: the verifier's rules as readable pytest failures.

Each helper takes the parsed object (``ebpf_object``) or one program, and optionally
``programs=`` (a name or a list of names) to narrow it. A failure is one message: the summary,
the worst program first with its call chain, the offending instruction with its source line,
and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence
from typing import Union

from pytest_ebpf.analysis import checks
from pytest_ebpf.analysis import rules as registry
from pytest_ebpf.analysis.budgets import Budget
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.analysis.profiles import (
    KernelProfile,
    ProfileError,
    choose_kernels,
)
from pytest_ebpf.analysis.report import Case, fail
from pytest_ebpf.analysis.stack import profile_stack, stack_problems
from pytest_ebpf.obj.helpers import HELPERS, helper_id, helper_name
from pytest_ebpf.obj.model import EbpfObject, Function, Program

Target = Union[EbpfObject, Program]
Names = Union[str, Sequence[str], None]


def _select(target: Target, programs: Names) -> tuple[EbpfObject | None, list[Program]]:
    if isinstance(target, Program):
        return None, [target]
    if not isinstance(target, EbpfObject):
        raise TypeError(f"expected an EbpfObject or a Program, got {type(target).__name__}")
    if programs is None:
        return target, list(target.programs)
    names = [programs] if isinstance(programs, str) else list(programs)
    return target, [target.program(n) for n in names]


def _where(obj: EbpfObject | None, fn: Function | None, insn: object) -> list[str]:
    """``insn 12: r1 = ...`` and ``at src/main.rs:40: let x = ...`` lines."""
    from pytest_ebpf.obj.isa import Insn

    if fn is None or not isinstance(insn, Insn):
        return []
    lines = [f"insn {insn.index - fn.offset} of {fn.name} ({fn.section}+{insn.index}): "
             f"{insn.text()}"]
    if obj is not None:
        src = checks.source_line(obj, fn, insn)
        if src:
            lines.append(f"at {src}")
    return lines


def _function(prog: Program, name: str) -> Function | None:
    return next((f for f in prog.functions if f.name == name), None)


KernelSpec = Union[KernelProfile, str, None]


def kernel_profile(kernel: KernelSpec) -> KernelProfile:
    """A profile from a profile, a name (``6.1``, ``host``) or None (the running kernel, or
    the oldest named profile where it cannot be detected)."""
    if isinstance(kernel, KernelProfile):
        return kernel
    try:
        return choose_kernels(kernel)[0]
    except ProfileError as exc:
        raise ValueError(str(exc)) from exc


def assert_stack_usage(target: Target, limit: int = 512, programs: Names = None,
                       frame_round: int | None = None, kernel: KernelSpec = None) -> None:
    """Every program's deepest call chain fits ``limit`` bytes the way *kernel*'s verifier adds
    it up (its frame rounding and private stacks; ``frame_round`` overrides the rounding; at
    most 8 frames; less than 256 bytes above a tail call). *kernel*: a profile, a name such as
    ``"6.1"`` or ``"host"``, or None for the running kernel."""
    __tracebackhide__ = True
    profile = kernel_profile(kernel)
    if frame_round is not None:
        profile = dataclasses.replace(profile, frame_round_override=frame_round)
    obj, progs = _select(target, programs)
    cases = []
    for prog in progs:
        whole = obj or _bare(prog)
        stack = profile_stack(whole, prog, profile)
        # the caller's limit replaces the kernel's 512 bytes; frame count, tail-call and
        # recursion rules always apply
        problems = [p for p in stack_problems(whole, prog, stack=stack, profile=profile)
                    if p.check not in ("stack_combined_too_large", "stack_frame_too_large")]
        over = stack.total > limit
        if not problems and not over:
            continue
        chain = " -> ".join(f"{n} ({b} B)" for n, b in zip(stack.chain, stack.chain_frames))
        parts = " + ".join(str(stack.contribution(n)) for n in stack.chain
                           if n not in stack.private)
        details = [f"chain: {chain}",
                   f"combined on {profile.label}: {parts} = {stack.total} bytes "
                   f"({profile.frame_round_why})"]
        if stack.private:
            details.append(f"private stacks (not counted): {', '.join(sorted(stack.private))}")
        details += [p.message for p in problems]
        deepest = stack.deepest
        details += _where(obj, deepest.function, deepest.deepest_insn)
        fix = (f"move the {deepest.depth}-byte buffer in `{deepest.function.name}` to a "
               "per-CPU array map (PerCpuArray) and work on a pointer into it")
        cases.append(Case(f"{prog.name} ({prog.section}): {stack.total} bytes of stack on "
                          f"{profile.label}, limit {limit}", stack.total, tuple(details), fix))
    if cases:
        fail("assert_stack_usage", f"{len(cases)} program(s) over the {limit}-byte stack "
             f"on {profile.label}", cases,
             "the verifier counts every frame of the deepest call chain; inline small "
             "functions less, or keep big buffers in maps")


def assert_rules(target: Target, kernel: KernelSpec = None, rules: Names = None,
                 programs: Names = None, budget: dict[str, Budget] | None = None) -> None:
    """No rule of the registry (:data:`pytest_ebpf.analysis.rules.RULES`, or the *rules*
    named) finds an error in the programs, judged by *kernel* (as :func:`assert_stack_usage`).
    This is what the plugin's generated checks run."""
    __tracebackhide__ = True
    profile = kernel_profile(kernel)
    chosen = [registry.rule(r) for r in ([rules] if isinstance(rules, str) else rules)
              ] if rules is not None else list(registry.RULES)
    obj, progs = _select(target, programs)
    found = [f for p in progs
             for f in registry.evaluate(obj or _bare(p), p, profile, chosen, budget)
             if f.severity == "error"]
    names = ", ".join(r.id for r in chosen)
    findings_report("assert_rules", f"{{n}} finding(s) of rule(s) {names} on "
                     f"{profile.label}", found, obj)


def _bare(prog: Program) -> EbpfObject:
    """A minimal object around one program (no BTF: no source lines)."""
    return EbpfObject(path=None, byteorder="little", license=None, kernel_version=None,
                      programs=(prog,), functions=prog.functions, maps=(), data_sections=(),
                      btf=None, btf_ext=None, sections=())


def findings_report(name: str, summary: str, findings: Iterable[Finding],
                     obj: EbpfObject | None, remedy: str = "") -> None:
    __tracebackhide__ = True
    cases = []
    for f in findings:
        fn = None
        if obj is not None and f.function:
            try:
                fn = obj.function(f.function)
            except LookupError:
                fn = None
        headline = f.message if f.message.startswith("program ") else \
            f"{f.program}: {f.message}"
        cases.append(Case(headline, 1,
                          tuple(_where(obj, fn, f.insn)), f.fix))
    if cases:
        fail(name, summary.format(n=len(cases)), cases, remedy)


def assert_no_indirect_calls(target: Target, programs: Names = None) -> None:
    """No ``callx`` (indirect call through a register): the verifier rejects them."""
    __tracebackhide__ = True
    obj, progs = _select(target, programs)
    found = [f for p in progs for f in checks.indirect_calls(obj or _bare(p), p)]
    findings_report("assert_no_indirect_calls", "{n} indirect call(s)", found, obj)


def assert_no_undefined_calls(target: Target, programs: Names = None) -> None:
    """No calls to symbols nobody defines (an unexpanded ``memcpy``/``memset``, an extern)."""
    __tracebackhide__ = True
    obj, progs = _select(target, programs)
    found = [f for p in progs for f in checks.undefined_calls(obj or _bare(p), p)]
    findings_report("assert_no_undefined_calls", "{n} call(s) to undefined symbols", found, obj)


def assert_max_instructions(target: Target, limit: int = 1_000_000,
                            programs: Names = None) -> None:
    """Every program has at most ``limit`` instructions (4096 for unprivileged loaders)."""
    __tracebackhide__ = True
    _, progs = _select(target, programs)
    cases = [Case(f"{p.name} ({p.section}): {p.instructions} instructions, limit {limit}",
                  p.instructions, (f"functions: {', '.join(f.name for f in p.functions)}",),
                  f.fix)
             for p in progs
             for f in checks.instruction_counts(_bare(p), p, limit=limit)
             if f.check == "too_many_instructions"]
    if cases:
        fail("assert_max_instructions", f"{len(cases)} program(s) over {limit} instructions",
             cases)


def _known_helper(name: str) -> str:
    """The helper's full name (``map_lookup_elem`` -> ``bpf_map_lookup_elem``); an unknown name
    is a ValueError naming the nearest known helper."""
    helper = helper_id(name)
    if helper is not None:
        return helper_name(helper)
    close = difflib.get_close_matches(name, HELPERS.values(), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else "; helper names are bpf_<name>"
    raise ValueError(f"assert_helpers: allowed names an unknown helper {name!r}{hint}")


def assert_helpers(target: Target, allowed: Iterable[int | str],
                   programs: Names = None) -> None:
    """Every helper a program calls is in ``allowed`` (ids, or names such as
    ``bpf_map_lookup_elem``)."""
    __tracebackhide__ = True
    _, progs = _select(target, programs)
    allowed_names = {helper_name(a) if isinstance(a, int) else _known_helper(a) for a in allowed}
    cases = []
    for p in progs:
        extra = sorted({helper_name(h) for h in checks.helpers_used(p)} - allowed_names)
        if extra:
            cases.append(Case(f"{p.name} ({p.section}) calls {', '.join(extra)}", len(extra),
                              (), "remove the call, or add the helper to the allowed set"))
    if cases:
        fail("assert_helpers", f"{len(cases)} program(s) call helpers outside the allowed set",
             cases)


def assert_license(obj: EbpfObject, expected: str | None = None, gpl_compatible: bool = True
                   ) -> None:
    """The object has a license (``expected`` if given) and, when GPL-only helpers are used,
    a GPL-compatible one."""
    __tracebackhide__ = True
    if obj.license is None:
        fail("assert_license", "the object has no `license` section", [],
             'add #[unsafe(link_section = "license")] static LICENSE: [u8; N] = *b"GPL\\0";')
    if expected is not None and obj.license != expected:
        fail("assert_license", f"license is {obj.license!r}, expected {expected!r}", [])
    found = [f for p in obj.programs for f in checks.gpl_only_helpers(obj, p)]
    if gpl_compatible:
        findings_report("assert_license", "{n} GPL-only helper call(s) under license "
                         f"{obj.license!r}", found, obj,
                         "use a GPL-compatible license such as \"Dual MIT/GPL\"")


def assert_btf(obj: EbpfObject) -> None:
    """BTF is present and valid, with ``.BTF.ext`` func_info for every function programs use."""
    __tracebackhide__ = True
    rustflags = 'rustflags = ["-C", "debuginfo=2", "-C", "link-arg=--btf"]'
    if obj.btf is None:
        fail("assert_btf", "the object has no .BTF section", [],
             f"build with BTF: in the eBPF crate's .cargo/config.toml set {rustflags}")
    if obj.btf_ext is None:
        fail("assert_btf", "the object has BTF but no .BTF.ext (no func_info/line_info)", [],
             f"build with debug info: {rustflags}")
    found = checks.missing_func_info(obj)
    findings_report("assert_btf", "{n} function(s) without func_info", found, obj,
                     "the kernel refuses BTF-carrying programs whose subprograms lack "
                     "func_info; rebuild with -C debuginfo=2")


def assert_sections(obj: EbpfObject, expected: Iterable[str], exact: bool = False) -> None:
    """``expected`` program names or section names are present; with ``exact``, nothing else."""
    __tracebackhide__ = True
    want = set(expected)
    have = {p.name for p in obj.programs} | {p.section for p in obj.programs}
    missing = sorted(want - have)
    cases = [Case(f"missing: {m}", 2, (), "") for m in missing]
    if exact:
        extra = sorted(p.name for p in obj.programs if p.name not in want
                       and p.section not in want)
        cases += [Case(f"unexpected program: {e}", 1, (), "") for e in extra]
    if cases:
        listing = ", ".join(f"{p.name} ({p.section})" for p in obj.programs) or "none"
        fail("assert_sections", f"{len(cases)} section/program mismatch(es)", cases,
             f"the object has: {listing}")
