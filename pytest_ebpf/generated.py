"""Generated checks: the CI gate that needs no test code.

With a crate or object configured (and ``--ebpf-checks`` not ``no``), collection gains one item
per program and rule of :data:`pytest_ebpf.analysis.rules.RULES`, per kernel profile for the
rules that depend on the kernel (``lock-ebpf::lock::stack[6.1]``), one ``loads[host]`` item per
program that loads it into the running kernel (gated like every ``ebpf_privileged`` test), and
with ``--ebpf-baseline`` one ``baseline`` item per program. They are ordinary pytest items:
``-k`` selects them, xdist spreads them, JUnit XML carries their figures as properties. A
project without test files still gets every verdict and a failing exit status on a violation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_ebpf.session import (
    PROPERTY,
    built_object,
    ensure_built,
    fail_build,
    report_doc,
    verdicts,
)
from pytest_ebpf.settings import SETTINGS_KEY, Settings

if TYPE_CHECKING:
    from pytest_ebpf.analysis.profiles import KernelProfile
    from pytest_ebpf.analysis.rules import ProgramVerdict
    from pytest_ebpf.obj.model import EbpfObject



def unit_name(settings: Settings) -> str:
    """The first part of every generated id: the crate's package name, or the object's name."""
    if settings.crate is not None:
        return settings.crate.name
    assert settings.object_path is not None
    return settings.object_path.name


def _unit_path(settings: Settings) -> Path:
    if settings.crate is not None:
        return settings.crate.manifest
    assert settings.object_path is not None
    return settings.object_path


class EbpfCheck(pytest.Item):
    """One generated check: *kind* is a rule id, ``loads``, ``baseline``, ``build`` or
    ``object``."""

    def __init__(self, *, program: str, kind: str, kernel: str | None = None,
                 problem: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.program = program
        self.kind = kind
        self.kernel = kernel
        self.problem = problem

    def runtest(self) -> None:
        run(self)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        from pytest_ebpf.analysis.report import EbpfAssertionError

        if isinstance(excinfo.value, EbpfAssertionError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


def _item(session: pytest.Session, settings: Settings, name: str, **kw: Any) -> EbpfCheck:
    nodeid = f"{unit_name(settings)}::{name}"
    item: EbpfCheck = EbpfCheck.from_parent(session, name=nodeid, nodeid=nodeid,
                                            path=_unit_path(settings), **kw)
    return item


def generate(session: pytest.Session) -> list[EbpfCheck]:
    """The generated items of this session (builds first when needed)."""
    from pytest_ebpf.analysis.rules import RULES
    from pytest_ebpf.build.cargo import BuildFailure
    from pytest_ebpf.errors import ObjectError
    from pytest_ebpf.obj.load import load_object

    config = session.config
    settings = config.stash[SETTINGS_KEY]
    outcome = ensure_built(config)
    if isinstance(outcome, BuildFailure):
        return [_item(session, settings, "build", program="", kind="build")]
    try:
        obj = load_object(outcome.path, max_size=settings.max_object_size)
    except ObjectError as exc:
        return [_item(session, settings, "object", program="", kind="object",
                      problem=str(exc))]
    items: list[EbpfCheck] = []
    rules = [r for r in RULES if r.id not in settings.skip_rules]
    for prog in obj.programs:
        budget = settings.budgets.for_program(prog.name)
        for r in rules:
            if r.id == "budget" and not ({"stack", "instructions"} & budget.keys()):
                continue  # nothing to hold the program to
            if r.kernel_dependent:
                items += [_item(session, settings, f"{prog.name}::{r.id}[{p.name}]",
                                program=prog.name, kind=r.id, kernel=p.name)
                          for p in settings.kernels]
            else:
                items.append(_item(session, settings, f"{prog.name}::{r.id}",
                                   program=prog.name, kind=r.id))
        if settings.privileged != "no":
            for kernel in settings.load_kernels:
                loads = _item(session, settings, f"{prog.name}::loads[{kernel}]",
                              program=prog.name, kind="loads", kernel=kernel)
                loads.add_marker(pytest.mark.ebpf_privileged)
                items.append(loads)
        if settings.baseline is not None:
            items.append(_item(session, settings, f"{prog.name}::baseline",
                               program=prog.name, kind="baseline"))
    return items


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Append the generated checks before ``-k``/``-m`` deselect (tryfirst)."""
    if SETTINGS_KEY not in config.stash:
        return
    settings = config.stash[SETTINGS_KEY]
    if settings.active and settings.checks:
        items.extend(generate(session))


def profile(config: pytest.Config, name: str) -> KernelProfile:
    return next(p for p in config.stash[SETTINGS_KEY].kernels if p.name == name)


# ---------------------------------------------------------------------------------------------
# Running the checks
# ---------------------------------------------------------------------------------------------


def _record(item: EbpfCheck, **figures: object) -> None:
    for key, value in figures.items():
        if value is not None and value != "":
            item.user_properties.append((PROPERTY + key, value))


def run(item: EbpfCheck) -> None:
    """Fail *item* with the rendered findings, or pass; build and object problems first."""
    __tracebackhide__ = True
    config = item.config
    if item.kind == "build":
        from pytest_ebpf.build.cargo import BuildFailure

        outcome = ensure_built(config)
        assert isinstance(outcome, BuildFailure)
        fail_build(config, outcome, item.nodeid)
    if item.kind == "object":
        pytest.fail(f"eBPF object cannot be read: {item.problem}\nfix: rebuild the crate; if "
                    "the object is prebuilt, check --ebpf-object", pytrace=False)
    obj = built_object(config)
    _record(item, program=item.program, instructions=obj.program(item.program).instructions)
    if item.kind == "loads":  # the kernel's verdict: no static rule runs (nor, in a VM, under TCG)
        _loads(item, obj)
    elif item.kind == "baseline":
        _baseline(item, obj)
    else:
        _rule(item, obj, verdicts(config, obj)[item.program])


def _rule(item: EbpfCheck, obj: EbpfObject, verdict: ProgramVerdict) -> None:
    __tracebackhide__ = True
    from pytest_ebpf.analysis.assertions import findings_report

    label = None
    if item.kernel is not None:
        p = profile(item.config, item.kernel)
        label = p.label
        stack = verdict.stacks[p.name]
        _record(item, kernel=p.name, kernel_label=p.label, stack=stack.total,
                stack_chain=" -> ".join(stack.chain))
    found = [f for f in verdict.findings if f.rule == item.kind and f.severity == "error"
             and (f.kernel is None or f.kernel == label)]
    _record(item, findings=len(found))
    on = f" on {label}" if label else ""
    findings_report(f"{item.kind} rule", f"{{n}} finding(s) in program {item.program}{on}",
                    found, obj)


def _loads(item: EbpfCheck, obj: EbpfObject) -> None:
    __tracebackhide__ = True
    from pytest_ebpf.privileged import rejection, session_loaded

    result = session_loaded(item.config, obj).results[item.program]
    if result.cause == "optional":  # a '?' section: the check asks for it by name
        from pytest_ebpf.kernel.loader import load_program

        settings = item.config.stash[SETTINGS_KEY]
        with load_program(obj, item.program, loader=settings.loader,
                          max_entries=settings.map_sizes) as alone:
            result = alone.results[item.program]
    _record(item, kernel=item.kernel, verdict="loaded" if result.loaded else "rejected",
            processed_insns=result.processed_insns, verified_insns=result.verified_insns,
            stack_depth="+".join(str(d) for d in result.stack_depth))
    if not result.loaded:
        pytest.fail(rejection(result, obj), pytrace=False)
    settings = item.config.stash[SETTINGS_KEY]
    budget = settings.budgets.for_program(item.program)
    limit = budget.get("processed_insns")
    if limit is not None and result.processed_insns is not None and \
            result.processed_insns > limit.limit:
        pytest.fail(f"program {item.program}: the verifier processed {result.processed_insns} "
                    f"instructions, over the budget of {limit.limit} (from {limit.source})\n"
                    f"fix: simplify the program's branches and loops, or raise the budget in "
                    f"{limit.source}", pytrace=False)
    if settings.baseline is not None and result.processed_insns is not None:
        _processed_baseline(item, settings.baseline, result.processed_insns)


def _processed_baseline(item: EbpfCheck, path: Path, new: int) -> None:
    """The verifier's processed instructions against the baseline's (known only once loaded,
    so checked here rather than by the program's ``baseline`` item)."""
    __tracebackhide__ = True
    from pytest_ebpf.analysis.baseline import BaselineError, load_report, threshold_for

    try:
        old_doc = load_report(path)
    except BaselineError as exc:
        pytest.fail(str(exc), pytrace=False)
    old_prog = next((p for p in old_doc["programs"] if p["name"] == item.program), None)
    old = (old_prog or {}).get("load", {}).get("host", {}).get("processed_insns")
    if not isinstance(old, int):
        return  # not loaded when the baseline was saved: nothing to compare
    thresholds = item.config.stash[SETTINGS_KEY].baseline_thresholds
    threshold = threshold_for("processed_insns[host]", thresholds)
    if threshold.exceeded(old, new):
        pct = f" ({(new - old) * 100 / old:+.1f}%)" if old else ""
        pytest.fail(f"program {item.program}: the verifier processed {new} instructions, "
                    f"{old} in the baseline {path}: {new - old:+d}{pct}, past the threshold "
                    f"{threshold}\nfix: simplify the program's branches and loops, or save a "
                    "new baseline with --ebpf-save-baseline when the growth is intended",
                    pytrace=False)


def _baseline(item: EbpfCheck, obj: EbpfObject) -> None:
    __tracebackhide__ = True
    from pytest_ebpf.analysis.baseline import BaselineError, compare, load_report, render

    settings = item.config.stash[SETTINGS_KEY]
    assert settings.baseline is not None
    try:
        old = load_report(settings.baseline)
    except BaselineError as exc:
        pytest.fail(f"{exc}", pytrace=False)
    new = report_doc(item.config, obj, loads={})
    mine = {**new, "programs": [p for p in new["programs"] if p["name"] == item.program]}
    theirs = {**old, "programs": [p for p in old["programs"] if p["name"] == item.program]}
    for doc in (mine, theirs):  # the loads figures of this run are not known yet
        for p in doc["programs"]:
            p["load"] = {}
    result = compare(theirs, mine, settings.baseline_thresholds)
    if result.exceeded:
        lines = render(result, only_changed=True)
        pytest.fail(f"program {item.program} grew past the baseline {settings.baseline}:\n"
                    + "\n".join(lines) + "\nfix: shrink the program, or save a new baseline "
                    "with --ebpf-save-baseline when the growth is intended", pytrace=False)
