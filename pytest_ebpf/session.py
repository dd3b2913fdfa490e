"""The session's build and object, shared by the fixtures, the generated checks and the
summary: built once per session (by the xdist controller), parsed once per process.

Also the static verdicts of the session's object (every program, every kernel profile) and the
report document the summary and the baselines use.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Union

import pytest

from pytest_ebpf.build.cargo import (
    BuildFailure,
    BuildRequest,
    BuildResult,
    prebuilt,
    run_build,
)
from pytest_ebpf.build.diagnose import BuildContext
from pytest_ebpf.settings import SETTINGS_KEY, Settings

if TYPE_CHECKING:
    from pytest_ebpf.analysis.rules import ProgramVerdict
    from pytest_ebpf.obj.model import EbpfObject

Outcome = Union[BuildResult, BuildFailure]

OUTCOME_KEY = pytest.StashKey[Outcome]()
OBJECT_KEY = pytest.StashKey["EbpfObject"]()
FAILURE_SHOWN_KEY = pytest.StashKey[str]()
CURRENT_TEST_KEY = pytest.StashKey[str]()
"""The node id of the test that reported a failed build in full."""
VERDICTS_KEY = pytest.StashKey[dict[str, "ProgramVerdict"]]()
PROPERTY = "ebpf."
"""Prefix of the figures in ``item.user_properties`` (and JUnit XML properties)."""
SCHEMA = 1
"""The report document's version (``--ebpf-report``, baselines, ``pytest-ebpf compare``)."""


def _request(settings: Settings) -> BuildRequest:
    assert settings.crate is not None
    return BuildRequest(
        crate=settings.crate,
        toolchain=settings.toolchain,
        target=settings.target,
        profile=settings.profile,
        features=settings.features,
        build_std=settings.build_std,
        toolchain_source=settings.values["toolchain"].source,
    )


def _progress(config: pytest.Config) -> Callable[[str], None] | None:
    """Show cargo's status lines while it runs, around pytest's output capture (as pytest's
    live logging does), so a cold build is never a silent minute."""
    tr: Any = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return None
    capman: Any = config.pluginmanager.get_plugin("capturemanager")
    quiet = config.get_verbosity() < 0

    def show(line: str) -> None:
        if quiet and not line.startswith(("Finished", "Compiling")):
            return
        text = f"ebpf build: {line}"
        if capman is not None:
            with capman.global_and_fixture_disabled():
                tr.write_line(text)
        else:
            tr.write_line(text)

    return show


def ensure_built(config: pytest.Config) -> Outcome:
    """Build once per session (or take the prebuilt object); later calls return the same."""
    if OUTCOME_KEY in config.stash:
        return config.stash[OUTCOME_KEY]
    settings = config.stash[SETTINGS_KEY]
    outcome: Outcome
    if settings.object_path is not None:
        outcome = prebuilt(settings.object_path)
    else:
        request = _request(settings)
        custom = config.hook.pytest_ebpf_build(config=config, request=request)
        outcome = custom if custom is not None else run_build(request, _progress(config))
    if isinstance(outcome, BuildFailure) and outcome.output:
        ctx = BuildContext(target=settings.target)
        extra = config.hook.pytest_ebpf_diagnose(output=outcome.output, context=ctx)
        more = tuple(d for found in extra if found for d in found)
        if more:
            outcome = dataclasses.replace(outcome, diagnoses=outcome.diagnoses + more)
    config.stash[OUTCOME_KEY] = outcome
    config.hook.pytest_ebpf_build_finished(config=config, outcome=outcome)
    return outcome


def built_object(config: pytest.Config) -> EbpfObject:
    """The parsed object of this session (parsed once per process)."""
    if OBJECT_KEY in config.stash:
        return config.stash[OBJECT_KEY]
    from pytest_ebpf.errors import ObjectError
    from pytest_ebpf.obj.load import load_object

    outcome = ensure_built(config)
    if isinstance(outcome, BuildFailure):
        fail_build(config, outcome, config.stash.get(CURRENT_TEST_KEY, None))
    try:
        obj = load_object(outcome.path,
                          max_size=config.stash[SETTINGS_KEY].max_object_size)
    except ObjectError as exc:
        pytest.fail(f"eBPF object cannot be read: {exc}\nfix: rebuild the crate; if the "
                    "object is prebuilt, check --ebpf-object", pytrace=False)
    config.stash[OBJECT_KEY] = obj
    return obj


def _xdist_worker(config: pytest.Config) -> bool:
    return getattr(config, "workerinput", None) is not None


def fail_build(config: pytest.Config, failure: BuildFailure, nodeid: str | None) -> NoReturn:
    """Fail a test because the build failed: in full for the first test that needs the build,
    in one line for every other (under xdist the full report is in the summary's "eBPF build"
    section, written once by the controller)."""
    __tracebackhide__ = True
    if not _xdist_worker(config) and FAILURE_SHOWN_KEY not in config.stash:
        config.stash[FAILURE_SHOWN_KEY] = nodeid or "the first test"
        pytest.fail(failure.render(), pytrace=False)
    where = (f"by {config.stash[FAILURE_SHOWN_KEY]}" if FAILURE_SHOWN_KEY in config.stash
             else "in the 'eBPF build' section of the summary")
    pytest.fail(f"eBPF build of {failure.package} failed: {failure.headline} (reported in "
                f"full {where})", pytrace=False)




def verdicts(config: pytest.Config, obj: EbpfObject) -> dict[str, ProgramVerdict]:
    """Every program judged by every kernel profile of the session, with the rules it keeps
    (once per process)."""
    if VERDICTS_KEY not in config.stash:
        from pytest_ebpf.analysis.rules import RULES, judge

        settings = config.stash[SETTINGS_KEY]
        rules = [r for r in RULES if r.id not in settings.skip_rules]
        found = judge(obj, settings.kernels, rules, settings.budgets.for_program)
        config.stash[VERDICTS_KEY] = {v.program.name: v for v in found}
    return config.stash[VERDICTS_KEY]


def report_doc(config: pytest.Config, obj: EbpfObject,
               loads: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The report document of this session (*loads*: program -> kernel -> the kernel's
    verdict and figures, as the ``loads`` checks recorded them)."""
    from pytest_ebpf.analysis.checks import helpers_used
    from pytest_ebpf.obj.helpers import helper_name

    settings = config.stash[SETTINGS_KEY]
    programs = []
    for name, v in verdicts(config, obj).items():
        prog = v.program
        programs.append({
            "name": name,
            "section": prog.section,
            "type": prog.kind.prog_type,
            "instructions": prog.instructions,
            "btf": obj.btf is not None and obj.btf_ext is not None,
            "helpers": [helper_name(h) for h in helpers_used(prog)],
            "stack": {p.name: {"total": v.stacks[p.name].total,
                               "chain": list(v.stacks[p.name].chain),
                               "frames": list(v.stacks[p.name].chain_frames)}
                      for p in v.profiles},
            "verdicts": {p.name: "rejected" if v.errors(p) else "loads" for p in v.profiles},
            "stack_ok": {p.name: not any(f.rule == "stack" for f in v.errors(p))
                         for p in v.profiles},
            "load": loads.get(name, {}),
            "findings": [f.as_json() for f in v.findings],
        })
    return {
        "schema": SCHEMA,
        "tool": "pytest-ebpf",
        "object": str(obj.path),
        "kernels": [p.as_json() for p in settings.kernels],
        "programs": programs,
    }
