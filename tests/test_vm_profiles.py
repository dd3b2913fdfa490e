"""Kernel profiles against real kernels: every static verdict of the 6.1, 6.12 and host profiles
is the verdict of that kernel's verifier, program by program.

Debian's 6.1 and 6.12 kernels boot once each for the whole module (qemu TCG, the host's root
read-only, :func:`pytest_ebpf.vm.qemu.run_command`) and load every object inside in one run of
``tests/vm_verify.py`` (the native loader: one verdict per program); the host runs the same
script. The objects sit on the rules that differ between the three kernels or matter at a
limit:

* frame rounding at 512 bytes (32 before 6.9, 16 with the JIT since) and the x86-64 private
  stacks of tracing programs (6.13), which a tail call turns off: ``tests/c/prof_stack.c``; and
  which kprobe-type programs get them on 6.18 (kprobe.multi and kprobe.session only):
  ``tests/c/vm_kprobe_stack.c``;
* a subprogram's tail call below and above 256 bytes of stack in the frames above it, the
  frames rounded by the kernel's rule: ``tests/c/vm_tail.c``;
* a cpu v4 instruction (6.6), and the same source built for v3: ``tests/c/vm_cpu_v4.c``;
* kfuncs by release: the numbers iterator (6.4) and the RCU read lock (6.2), not in 6.1, and the
  key kfuncs of tracing programs (6.1), in all three: ``tests/c/vm_kfuncs.c``;
* helpers a program's type (and attach type) may not call, refused before anything else with the
  wording of the release (``unknown func`` before 6.10): ``tests/c/pred_helpers.c``; context
  accesses a kind may not make: ``tests/c/pred_ctx.c``; and the helper tables themselves
  (:mod:`pytest_ebpf.analysis.helper_types`), each equal to what its kernel answers when asked
  again (:mod:`pytest_ebpf.kernel.typeprobe`, in the same run; the context of a sample of
  kinds, ``vm_verify.CTX_SCOPES``);
* the instruction limit at exactly 1,000,000 (loads, every instruction processed once) and
  1,000,001 (E2BIG): ``tests/c/vm_insns.c``, on the host only. The limit is the same on all
  three kernels (1M since 5.2), and under TCG the pair costs about 185 s per kernel (measured:
  131 s to load the 1,000,000-instruction program on 6.1 and on 6.12, 54 s to read the other
  one in the guest's Python before the kernel's E2BIG), so the VMs do not load them.

A disagreement fails with both verdicts and the kernel's decisive line. The table of what each
kernel says (:data:`CASES`) is checked too, so a profile and a kernel cannot agree by both
missing the point, and so is the reason of every rejection. One test per kernel, which boots it
once for all the objects.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from kernel_run import run_on

from pytest_ebpf.analysis.helper_types import tables
from pytest_ebpf.analysis.profiles import KernelProfile, host_profile, named_profile
from pytest_ebpf.analysis.rules import judge
from pytest_ebpf.obj.load import load_object

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "tests" / "c"
VM_VERIFY = ROOT / "tests" / "vm_verify.py"
KERNELS = ("6.1", "6.12", "host")
VM_TIMEOUT = 600.0
CompileC = Callable[..., Path]

# The kernel's decisive lines, by rule.
COMBINED = r"combined stack size of \d+ calls is \d+\. Too large"
TAIL = r"tail_calls are not allowed when call stack of previous frames is \d+ bytes\. Too large"
CPU_V4 = r"BPF_LDX uses reserved fields"
NO_KFUNC = r"this kernel has no kernel function (bpf_\w+) in its BTF"
E2BIG = r"E2BIG"
HELPER = r"(?:program of this type cannot use helper|unknown func) bpf_\w+#\d+"
CTX = r"invalid bpf_context access off=\d+ size=\d+"
KFUNC = r"calling kernel function bpf_\w+ is not allowed"
SLEEP = r"program must be sleepable to call sleepable kfunc bpf_\w+"


@dataclass(frozen=True)
class Expect:
    """What the kernels say about one program: loads on 6.1, 6.12, the host; and the decisive
    line of its rejections."""

    on_61: bool
    on_612: bool
    on_host: bool
    why: str = ""
    """A pattern of the kernel's decisive line where the program is rejected."""

    def loads(self, kernel: str) -> bool:
        return {"6.1": self.on_61, "6.12": self.on_612, "host": self.on_host}[kernel]


@dataclass(frozen=True)
class Case:
    """One object: its C source, clang flags, and what each kernel says of its programs."""

    name: str
    source: str
    flags: tuple[str, ...]
    programs: dict[str, Expect]
    on: tuple[str, ...] = KERNELS
    """The kernels that load it."""


CASES = (
    Case("prof_stack", "prof_stack.c", (), {
        # 40 + 456: 64 + 480 = 544 rounded to 32, 48 + 464 = 512 rounded to 16
        "xdp_40_456": Expect(False, True, True, COMBINED),
        "xdp_40_472": Expect(False, False, False, COMBINED),
        "xdp_304_304": Expect(False, False, False, COMBINED),
        # private stacks of tracing programs (x86-64, 6.13)
        "tp_304_304": Expect(False, False, True, COMBINED),
        "kprobe_304_304_tail": Expect(False, False, False, COMBINED),
    }),
    Case("vm_kprobe_stack", "vm_kprobe_stack.c", (), {
        # 6.18: private stacks for kprobe.multi and kprobe.session only
        "kprobe_608": Expect(False, False, False, COMBINED),
        "kretprobe_608": Expect(False, False, False, COMBINED),
        "kprobe_multi_608": Expect(False, False, True, COMBINED),
        "kprobe_session_608": Expect(False, False, True, COMBINED),
        "uprobe_multi_608": Expect(False, False, False, COMBINED),
    }),
    Case("vm_tail", "vm_tail.c", (), {
        "xdp_tail_216": Expect(True, True, True),
        # 232: 256 rounded to 32 (not below 256), 240 rounded to 16
        "xdp_tail_232": Expect(False, True, True, TAIL),
        "xdp_tail_264": Expect(False, False, False, TAIL),
    }),
    Case("vm_cpu_v4", "vm_cpu_v4.c", ("-mcpu=v4",), {
        "signed_load": Expect(False, True, True, CPU_V4),
    }),
    Case("vm_cpu_v3", "vm_cpu_v4.c", ("-mcpu=v3",), {
        "signed_load": Expect(True, True, True),
    }),
    Case("vm_kfuncs", "vm_kfuncs.c", (), {
        "iter_num": Expect(False, True, True, NO_KFUNC),
        "rcu_lock": Expect(False, True, True, NO_KFUNC),
        "system_key": Expect(True, True, True),
    }),
    Case("pred_helpers", "pred_helpers.c", (), {
        **{f"bad_{n}": Expect(False, False, False, HELPER)
           for n in ("redirect_map", "bind", "get_stack", "adjust_head")},
        **{f"ok_{n}": Expect(True, True, True)
           for n in ("redirect_map", "bind", "get_stack", "adjust_head")},
        "bad_kfunc_type": Expect(False, False, False, KFUNC),
        "ok_kfunc_type": Expect(True, True, True),
        "xdp_system_key": Expect(False, False, True, KFUNC),
    }),
    Case("pred_ctx", "pred_ctx.c", (), {
        **{f"bad_{n}": Expect(False, False, False, CTX)
           for n in ("write_mark", "wide_len", "past_regs", "tp_common")},
        **{f"ok_{n}": Expect(True, True, True)
           for n in ("write_mark", "wide_len", "past_regs", "tp_common")},
    }),
    Case("pred_kfuncs", "pred_kfuncs.c", (), {  # 6.1 has no bpf_copy_from_user_str
        "bad_sleep_kfunc": Expect(False, False, False, SLEEP),
        "ok_sleep_kfunc": Expect(False, True, True),
    }, on=("6.12", "host")),
    Case("vm_insns_1000000", "vm_insns.c", ("-DINSNS=999998",), {
        "straight_line": Expect(True, True, True),
    }, on=("host",)),
    Case("vm_insns_1000001", "vm_insns.c", ("-DINSNS=999999",), {
        "straight_line": Expect(False, False, False, E2BIG),
    }, on=("host",)),
)


def _cases(kernel: str) -> list[Case]:
    return [c for c in CASES if kernel in c.on]


@dataclass(frozen=True)
class KernelRun:
    """One kernel's verdicts on the objects of :data:`CASES`."""

    kernel: str
    release: str
    profile: KernelProfile
    docs: dict[str, dict[str, Any]]
    """Case name -> ``verify --json``'s document (``programs``: one verdict each)."""
    helpers: dict[str, Any]
    """What the kernel answered the helper probe: ``last_helper``, ``scopes``."""
    seconds: float


@pytest.fixture(scope="module")
def objects(compile_c: CompileC) -> dict[str, Path]:
    return {c.name: compile_c((C_DIR / c.source).read_text(), c.name, *c.flags) for c in CASES}


def _kernel_run(kernel: str, objects: dict[str, Path]) -> KernelRun:
    """Boot *kernel* once (the host: none) and verify every object there."""
    cases = _cases(kernel)
    start = time.monotonic()
    release, text = run_on(kernel, [sys.executable, str(VM_VERIFY), "--probe-helpers",
                                    *(str(objects[c.name]) for c in cases)], ROOT, VM_TIMEOUT)
    seconds = time.monotonic() - start
    by_path = {}
    helpers: dict[str, Any] = {}
    for line in text.splitlines():
        if line.startswith('{"helpers"'):
            helpers = json.loads(line)["helpers"]
        elif line.startswith("{"):
            record = json.loads(line)
            by_path[record["object"]] = record
    docs = {}
    for c in cases:
        record = by_path.get(str(objects[c.name]))
        if record is None or record["doc"] is None:
            pytest.fail(f"kernel {kernel} ({release}) gave no verdicts for {c.name}: "
                        f"{record['error'] if record else 'nothing printed'}\n{text[-4000:]}",
                        pytrace=False)
        docs[c.name] = record["doc"]
    profile = host_profile() if kernel == "host" else named_profile(kernel)
    return KernelRun(kernel, release, profile, docs, helpers, seconds)


def _kernel_verdicts(run: KernelRun, case: Case) -> dict[str, tuple[bool, str]]:
    """Program -> (loaded, the decisive line) as the kernel said."""
    return {p["name"]: (bool(p["loaded"]), p.get("error") or p.get("cause") or "")
            for p in run.docs[case.name]["programs"]}


def _disagreements(run: KernelRun, objects: dict[str, Path]) -> list[str]:
    """Programs whose static verdict on the profile is not the kernel's."""
    profile = run.profile
    out = []
    for case in _cases(run.kernel):
        kernel = _kernel_verdicts(run, case)
        verdicts = judge(load_object(objects[case.name]), [profile])
        assert {v.program.name for v in verdicts} == set(kernel), case.name
        for v in verdicts:
            name = v.program.name
            errors = v.errors(profile)
            loaded, line = kernel[name]
            if (not errors) == loaded:
                continue
            said = (f"rejected ({errors[0].check}: {errors[0].message})" if errors
                    else "loads")
            out.append(f"{case.name}:{name}: profile {profile.label} says {said}; kernel "
                       f"{run.kernel} ({run.release}) says "
                       + ("loaded" if loaded else f"rejected: {line}"))
    return out


def _unexpected(run: KernelRun) -> list[str]:
    """Programs the kernel judged otherwise than :data:`CASES` says, or rejected for another
    reason (so that profile and kernel cannot agree by both missing the point of a case)."""
    out = []
    for case in _cases(run.kernel):
        kernel = _kernel_verdicts(run, case)
        assert set(kernel) == set(case.programs), case.name
        for name, expect in case.programs.items():
            loaded, line = kernel[name]
            if loaded != expect.loads(run.kernel):
                out.append(f"{case.name}:{name} on {run.kernel} ({run.release}): expected "
                           f"{'loaded' if expect.loads(run.kernel) else 'rejected'}, got "
                           + ("loaded" if loaded else f"rejected: {line}"))
            elif not loaded and not re.search(expect.why, line):
                out.append(f"{case.name}:{name} on {run.kernel} ({run.release}) rejected for "
                           f"another reason than /{expect.why}/: {line}")
    return out


CHECKS = {COMBINED: "stack_combined_too_large", TAIL: "stack_tail_call_stack",
          CPU_V4: "cpu_v4_insn", NO_KFUNC: "kfunc_unavailable", E2BIG: "too_many_instructions",
          HELPER: "helper_not_allowed", KFUNC: "kfunc_not_allowed", SLEEP: "kfunc_sleepable",
          CTX: "ctx_field"}
"""The kernel's decisive line -> the profile's finding for it."""


def _other_reasons(run: KernelRun, objects: dict[str, Path]) -> list[str]:
    """Rejections whose finding is not the kernel's reason. At a stack limit the finding must
    have the kernel's own sentence and numbers (the frames rounded and summed as that kernel
    does); a missing kfunc must be named."""
    profile = run.profile
    out = []
    for case in _cases(run.kernel):
        kernel = _kernel_verdicts(run, case)
        for v in judge(load_object(objects[case.name]), [profile]):
            loaded, line = kernel[v.program.name]
            why = case.programs[v.program.name].why
            said = re.search(why, line)
            if loaded or said is None:
                continue  # a wrong verdict or reason is reported by the others
            quoted = f"kfunc {said.group(1)}" if why == NO_KFUNC else said.group(0)
            found = [f for f in v.errors(profile) if f.check == CHECKS[why]]
            if not found or (why in (COMBINED, TAIL, NO_KFUNC, HELPER, KFUNC, SLEEP, CTX)
                             and not any(quoted in f.message for f in found)):
                out.append(f"{case.name}:{v.program.name} on {run.kernel}: the kernel says "
                           f"{line!r}; the profile {profile.label} says "
                           f"{[(f.check, f.message) for f in v.errors(profile)]}")
    return out


def _table_differences(run: KernelRun) -> list[str]:
    """The shipped helper table of the kernel's release against what the kernel answered now
    (the host: only when a table of its release ships)."""
    version = tuple(int(x) for x in run.release.split(".")[:2])
    table = next((t for t in tables() if t.version == version), None)
    if table is None:
        assert run.kernel == "host", f"no helper table ships for {run.release}"
        return []
    out = [f"last helper: table {table.last_helper}, kernel {run.helpers['last_helper']}"
           ] if table.last_helper != run.helpers["last_helper"] else []
    has = set(run.helpers["kfunc_names"])
    if table.kfunc_names != has:
        out.append(f"kfuncs the kernel has: only the table {sorted(table.kfunc_names - has)}, "
                   f"only the kernel {sorted(has - table.kfunc_names)}")
    for what, mine_all, key in (("helpers", table.scopes, "scopes"),
                                ("kfuncs", table.kfuncs, "kfuncs"),
                                ("sleepable kfuncs", table.sleepable_kfuncs, "sleepable_kfuncs")):
        probed: dict[str, frozenset[Any]] = {
            scope: frozenset(ids) for scope, ids in run.helpers[key].items()}
        for scope in sorted(set(mine_all) | set(probed)):
            mine, theirs = mine_all.get(scope), probed.get(scope)
            if mine == theirs or (what == "sleepable kfuncs" and not mine and not theirs):
                continue
            extra = "no entry" if mine is None else sorted(mine - (theirs or set()))
            missing = "no entry" if theirs is None else sorted(theirs - (mine or set()))
            out.append(f"{what} of {scope}: only the table allows {extra}; only the kernel "
                       f"allows {missing}")
    for scope, access in run.helpers["ctx"].items():  # the kinds vm_verify.CTX_SCOPES names
        mine_ctx = table.ctx.get(scope)
        if mine_ctx is None:
            out.append(f"context of {scope}: the table has no entry")
            continue
        for key, offsets in access.items():
            if mine_ctx.get(key) != frozenset(offsets):
                out.append(f"context {key} of {scope}: only the table allows "
                           f"{sorted(mine_ctx.get(key, set()) - set(offsets))}; only the "
                           f"kernel allows {sorted(set(offsets) - mine_ctx.get(key, set()))}")
    return out


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_profile_judges_as_its_kernel(kernel: str, objects: dict[str, Path]) -> None:
    """One boot of *kernel* for every object: program by program the profile's static verdict
    is the kernel's, the kernel's verdicts are those of :data:`CASES`, and every rejection's
    finding names the kernel's reason. (One test per kernel: no VM boots twice, however the
    items are spread over workers.)"""
    run = _kernel_run(kernel, objects)
    if kernel == "host":
        assert run.release == platform.release() and run.profile.name == "host"
    else:
        assert run.release.startswith(f"{kernel}."), run.release
    problems = {
        "the profile disagrees with the kernel": _disagreements(run, objects),
        "the kernel did not say what the case is about": _unexpected(run),
        "the profile rejects for another reason": _other_reasons(run, objects),
        "the helper table is not what the kernel answers": _table_differences(run),
    }
    report = [f"{title}:\n  " + "\n  ".join(lines) for title, lines in problems.items() if lines]
    assert not report, f"kernel {kernel} ({run.release}):\n" + "\n".join(report)
    print(f"kernel {kernel} ({run.release}): {len(run.docs)} objects, "
          f"{sum(len(d['programs']) for d in run.docs.values())} programs in {run.seconds:.1f} s")
