"""The pytest plugin: options, the once-per-session build, fixtures and the report.

Under xdist the controller builds (in ``pytest_configure_node``, before the first worker
starts) and hands the outcome to every worker through ``workerinput``; workers never run cargo.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_ebpf import hooks
from pytest_ebpf.build.cargo import (
    BuildFailure,
    BuildResult,
    outcome_from_json,
    outcome_to_json,
)
from pytest_ebpf.session import (
    CURRENT_TEST_KEY,
    FAILURE_SHOWN_KEY,
    OUTCOME_KEY,
    _xdist_worker,
    built_object,
    ensure_built,
    fail_build,
)
from pytest_ebpf.settings import (
    SETTINGS_KEY,
    add_options,
    load_settings,
    unconfigured,
)

EBPF_FIXTURES = frozenset({"ebpf_build", "ebpf_object", "ebpf_loaded", "ebpf_load", "ebpf_run"})
WORKER_KEY = "ebpf_build"
_INACTIVE = "inactive"
WARNINGS_SHOWN = 3

NOT_CONFIGURED = (
    "no eBPF crate or object is configured for this session; fix: pass "
    "--ebpf-crate=PATH_OR_PACKAGE (or --ebpf-object=FILE), or set ebpf_crate in the ini file"
)

if TYPE_CHECKING:
    from pytest_ebpf.obj.model import EbpfObject

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
    from pytest_ebpf import generated, matrix, privileged
    from pytest_ebpf.summary import SessionReport

    if not config.pluginmanager.is_registered(matrix):
        config.pluginmanager.register(matrix, "ebpf-matrix")
    if matrix.guest_kernel() is not None and config.stash[SETTINGS_KEY].active:
        from pytest_ebpf import in_vm

        config.stash[OUTCOME_KEY] = in_vm.configure(config)
    else:
        matrix.install(config)
    if not config.pluginmanager.is_registered(privileged):
        config.pluginmanager.register(privileged, "ebpf-privileged")
    if not config.pluginmanager.is_registered(generated):
        config.pluginmanager.register(generated, "ebpf-generated")
    config.pluginmanager.register(SessionReport(config), "ebpf-summary")
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
            from pytest_ebpf.matrix import DIR_KEY, controller_dir

            node.workerinput[DIR_KEY] = controller_dir(self.config)
        else:
            node.workerinput[WORKER_KEY] = _INACTIVE


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
    if outcome.warnings:
        shown = outcome.warnings[:WARNINGS_SHOWN]
        tr.line(f"{len(outcome.warnings)} warning(s) from the build"
                + (f", the first {len(shown)}:" if len(shown) < len(outcome.warnings) else ":"),
                yellow=True)
        for warning in shown:
            for line in warning.splitlines():
                tr.line(f"  {line}")
