"""The pytest plugin: options, the once-per-session build, fixtures and the report.

Under xdist the controller builds (in ``pytest_configure_node``, before the first worker
starts) and hands the outcome to every worker through ``workerinput``; workers never run cargo.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Union

import pytest

from pytest_ebpf import hooks
from pytest_ebpf.build.cargo import (
    BuildFailure,
    BuildRequest,
    BuildResult,
    outcome_from_json,
    outcome_to_json,
    prebuilt,
    run_build,
)
from pytest_ebpf.build.diagnose import BuildContext
from pytest_ebpf.settings import (
    SETTINGS_KEY,
    Settings,
    add_options,
    load_settings,
    unconfigured,
)

if TYPE_CHECKING:
    from pytest_ebpf.obj.model import EbpfObject

Outcome = Union[BuildResult, BuildFailure]

OUTCOME_KEY = pytest.StashKey[Outcome]()
OBJECT_KEY = pytest.StashKey["EbpfObject"]()
FAILURE_SHOWN_KEY = pytest.StashKey[str]()
CURRENT_TEST_KEY = pytest.StashKey[str]()
"""The node id of the test that reported a failed build in full."""
EBPF_FIXTURES = frozenset({"ebpf_build", "ebpf_object", "ebpf_loaded", "ebpf_load", "ebpf_run"})
WORKER_KEY = "ebpf_build"
_INACTIVE = "inactive"
WARNINGS_SHOWN = 3

NOT_CONFIGURED = (
    "no eBPF crate or object is configured for this session; fix: pass "
    "--ebpf-crate=PATH_OR_PACKAGE (or --ebpf-object=FILE), or set ebpf_crate in the ini file"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ebpf_privileged: needs root/CAP_BPF to load programs into the kernel"
    )
    if config.getoption("ebpf_doctor"):
        code = _doctor(config)
        pytest.exit("pytest-ebpf doctor finished", returncode=code)
    if config.option.help or config.option.version:  # as pytest-django: --help always works
        config.stash[SETTINGS_KEY] = unconfigured()
        return
    config.stash[SETTINGS_KEY] = load_settings(config)
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get(WORKER_KEY, _INACTIVE) != _INACTIVE:
        config.stash[OUTCOME_KEY] = outcome_from_json(workerinput[WORKER_KEY])
    from pytest_ebpf import privileged

    if not config.pluginmanager.is_registered(privileged):
        config.pluginmanager.register(privileged, "ebpf-privileged")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistController(config), "ebpf-xdist-controller")


def _doctor(config: pytest.Config) -> int:
    """``pytest --ebpf-doctor``: the doctor with the session's own settings."""
    import sys

    from pytest_ebpf.build.doctor import render, run_checks
    from pytest_ebpf.settings import resolve

    crate = resolve(config, "crate").value
    checks = run_checks(crate, Path(str(config.rootpath)), resolve(config, "toolchain").value,
                        resolve(config, "target").value or "bpfel-unknown-none",
                        resolve(config, "build_std").value or "auto")
    render(checks, sys.stdout)
    return 1 if any(c.blocks_build for c in checks) else 0


class _XdistController:
    """Hooks that only exist under xdist; registered when xdist is loaded."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl
    def pytest_configure_node(self, node: Any) -> None:
        settings = self.config.stash[SETTINGS_KEY]
        if settings.active:
            node.workerinput[WORKER_KEY] = outcome_to_json(ensure_built(self.config))
        else:
            node.workerinput[WORKER_KEY] = _INACTIVE


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


@pytest.fixture(scope="session")
def ebpf_build(pytestconfig: pytest.Config) -> BuildResult:
    """The built eBPF crate: object path, toolchain, rustc and LLVM versions, command, time.

    Cargo runs once per session (once in total under xdist). A failed build fails every test
    that uses this fixture with cargo's diagnostics and the fix for each known problem.
    """
    settings = pytestconfig.stash[SETTINGS_KEY]
    if not settings.active:
        pytest.fail(NOT_CONFIGURED, pytrace=False)
    outcome = ensure_built(pytestconfig)
    if isinstance(outcome, BuildFailure):
        fail_build(pytestconfig, outcome, pytestconfig.stash.get(CURRENT_TEST_KEY, None))
    return outcome


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


@pytest.fixture(scope="session")
def ebpf_object(ebpf_build: BuildResult, pytestconfig: pytest.Config) -> EbpfObject:
    """The built object, parsed: programs, functions, maps, BTF (``pytest_ebpf.load_object``)."""
    return built_object(pytestconfig)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A failed build fails each test that needs it here, before its fixtures: pytest would
    repeat a session fixture's first error word for word in every test."""
    config = item.config
    config.stash[CURRENT_TEST_KEY] = item.nodeid
    if SETTINGS_KEY not in config.stash or not config.stash[SETTINGS_KEY].active:
        return
    if EBPF_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        outcome = ensure_built(config)
        if isinstance(outcome, BuildFailure):
            fail_build(config, outcome, item.nodeid)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build as soon as the tests are known (not inside the first test's set-up), when a
    collected test needs the build: cargo's progress then follows "collected N items"."""
    config = session.config
    if _xdist_worker(config) or config.option.collectonly or SETTINGS_KEY not in config.stash:
        return
    if not config.stash[SETTINGS_KEY].active:
        return
    if any(EBPF_FIXTURES.intersection(getattr(item, "fixturenames", ()))
           for item in session.items):
        ensure_built(config)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if SETTINGS_KEY not in config.stash:
        return None
    settings = config.stash[SETTINGS_KEY]
    if not settings.active:
        return None
    return ["ebpf settings (option > env > ini > project files > default):",
            *settings.header_lines()]


def _program_lines(path: Path) -> list[str]:
    from pytest_ebpf.errors import ObjectError
    from pytest_ebpf.obj.load import load_object

    try:
        obj = load_object(path)
    except ObjectError as exc:
        return [f"  object cannot be read: {exc}"]
    lines = []
    for prog in obj.programs:
        lines.append(f"  program {prog.name:<24} section {prog.section:<28} "
                     f"type {prog.kind.prog_type}")
    for m in obj.maps:
        lines.append(f"  map     {m.name:<24} section {m.section:<28} type {m.type}")
    return lines


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if OUTCOME_KEY not in config.stash or getattr(config, "workerinput", None) is not None:
        return
    outcome = config.stash[OUTCOME_KEY]
    tr = terminalreporter
    tr.section("eBPF build")
    if isinstance(outcome, BuildFailure):
        if FAILURE_SHOWN_KEY in config.stash:
            tr.line(f"eBPF build of {outcome.package} failed: {outcome.headline} (reported in "
                    f"full by {config.stash[FAILURE_SHOWN_KEY]})")
        else:
            tr.line(outcome.render())
        return
    if outcome.prebuilt:
        tr.line(f"object {outcome.object_path} (prebuilt, no cargo)")
    else:
        tr.line(f"built {outcome.package} for {outcome.target} ({outcome.profile}) in "
                f"{outcome.duration:.1f}s with toolchain {outcome.toolchain} "
                f"(rustc {outcome.rustc_release}, LLVM {outcome.llvm_version}"
                f"{', ' + outcome.linker if outcome.linker else ''})")
        tr.line(f"toolchain chosen by {outcome.toolchain_source}")
        if outcome.build_std:
            tr.line(f"build-std: {','.join(outcome.build_std)}")
        if outcome.rustflags:
            tr.line(f"rustflags: {' '.join(outcome.rustflags)} (as {outcome.rustflags_source} "
                    "passes them: the object the user-space crate embeds)")
        for note in outcome.notes:
            tr.line(f"note: {note}", yellow=True)
        tr.line(f"object {outcome.object_path}")
    for line in _program_lines(outcome.path):
        tr.line(line)
    if outcome.warnings:
        shown = outcome.warnings[:WARNINGS_SHOWN]
        tr.line(f"{len(outcome.warnings)} warning(s) from the build"
                + (f", the first {len(shown)}:" if len(shown) < len(outcome.warnings) else ":"),
                yellow=True)
        for warning in shown:
            for line in warning.splitlines():
                tr.line(f"  {line}")
