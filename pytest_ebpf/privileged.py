"""The privileged tier: gating (marker ``ebpf_privileged``, ``--ebpf-privileged``) and the
fixtures that load programs into the running kernel and run them with BPF_PROG_TEST_RUN.

Programs and maps live as long as their file descriptors, which only this process holds; pins
go to a private directory per session and xdist worker (:mod:`pytest_ebpf.kernel.pins`), removed at
teardown, at exit, on Ctrl-C, SIGTERM and SIGHUP, and (for killed earlier runs) at the next
start. An xdist worker whose controller died stops and cleans up (:func:`watch_controller`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from pytest_ebpf.kernel.bpf import TestRunResult
    from pytest_ebpf.kernel.loader import LoadedObject, LoadResult
    from pytest_ebpf.settings import Settings

LOADER_KEY = pytest.StashKey[str]()
LOADED_KEY = pytest.StashKey["LoadedObject"]()
MODES = ("auto", "require", "no")
LOADERS = ("auto", "bpftool", "native")


@dataclass(frozen=True)
class Gate:
    """Can this process load programs? ``reason`` says exactly why not."""

    ok: bool
    reason: str


def check_gate(loader: str) -> Gate:
    """Root/CAP_BPF, a working bpf(), bpffs (mounted when root and missing), bpftool."""
    from pytest_ebpf.kernel.bpf import bpf_available
    from pytest_ebpf.kernel.pins import BPFFS, PinError, ensure_bpffs

    ok, why = bpf_available()
    if not ok:
        fix = "" if "run as root" in why else " (fix: run as root or grant CAP_BPF)"
        return Gate(False, f"cannot load eBPF programs: {why}{fix}")
    try:
        ensure_bpffs()
    except PinError as exc:
        return Gate(False, f"{exc} (fix: mount -t bpf bpf {BPFFS} as root)")
    if loader == "bpftool" and shutil.which("bpftool") is None:
        return Gate(False, "--ebpf-loader=bpftool but bpftool is not on PATH (fix: apt-get "
                           "install bpftool, or --ebpf-loader=native)")
    return Gate(True, "")


def _settings(config: pytest.Config) -> Settings:
    from pytest_ebpf.settings import SETTINGS_KEY, unconfigured

    return config.stash.get(SETTINGS_KEY, None) or unconfigured()


def _mode(config: pytest.Config) -> str:
    return _settings(config).privileged


def _loader(config: pytest.Config) -> str:
    return _settings(config).loader


def enforce(config: pytest.Config) -> None:
    """Skip (auto), fail (require) or skip because disabled (no): one exact reason."""
    __tracebackhide__ = True
    mode = _mode(config)
    if mode == "no":
        pytest.skip("privileged eBPF tests disabled by --ebpf-privileged=no")
    gate = check_gate(_loader(config))
    if gate.ok:
        return
    if mode == "require":
        pytest.fail(f"--ebpf-privileged=require: {gate.reason}", pytrace=False)
    pytest.skip(gate.reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("ebpf_privileged") is not None:
        enforce(item.config)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if LOADER_KEY in config.stash:
        terminalreporter.line(config.stash[LOADER_KEY])


def rejection(result: LoadResult, obj: Any) -> str:
    if (result.cause or "verifier") == "verifier":
        lines = [f"program {result.program} ({result.section}) was rejected by the verifier "
                 f"(loader {result.loader}): {result.error}"]
    else:
        lines = [f"program {result.program} ({result.section}) was not loaded "
                 f"(loader {result.loader}): {result.why}"]
    log = [ln for ln in result.log.splitlines() if ln.strip()]
    if log and result.cause in (None, "verifier"):
        lines += ["", "verifier log (last lines):", *(f"  {ln}" for ln in log[-15:])]
    lines += ["", "fix: read the decisive line above; `pytest-ebpf verify OBJECT` prints the "
                  "whole log"]
    return "\n".join(lines)


def session_loaded(config: pytest.Config, obj: Any) -> LoadedObject:
    """Every program of the session's object loaded once per process (per xdist worker) with
    ``--ebpf-loader``, shared by the ``ebpf_loaded`` fixture and the generated ``loads``
    checks, so the verifier runs once; unloaded and unpinned when the session ends."""
    if LOADED_KEY not in config.stash:
        from pytest_ebpf.kernel.loader import load_all
        from pytest_ebpf.kernel.pins import remove_session_pin_dir, session_pin_dir

        prepare()
        settings = _settings(config)
        loaded = load_all(obj, loader=settings.loader, pin_dir=session_pin_dir(),
                          max_entries=settings.map_sizes)

        def unload() -> None:
            loaded.close()
            remove_session_pin_dir()

        config.add_cleanup(unload)
        verdicts = ", ".join(f"{r.program} {'loaded' if r.loaded else 'REJECTED'}"
                             for r in loaded.results.values())
        config.stash[LOADER_KEY] = f"loader {loaded.loader} ({loaded.reason}): {verdicts}"
        config.stash[LOADED_KEY] = loaded
    return config.stash[LOADED_KEY]


@pytest.fixture(scope="session")
def ebpf_loaded(pytestconfig: pytest.Config, ebpf_object: Any) -> LoadedObject:
    """Every program of the built object, loaded once per session (per xdist worker) with
    ``--ebpf-loader``; unloaded and unpinned at the end. Rejected programs are in
    ``.results`` with the verifier's log."""
    enforce(pytestconfig)
    return session_loaded(pytestconfig, ebpf_object)


@pytest.fixture
def ebpf_load(pytestconfig: pytest.Config, ebpf_object: Any
              ) -> Iterator[Callable[..., LoadedObject]]:
    """Factory ``ebpf_load(program, **options) -> LoadedObject`` loading one program afresh
    (its own maps); everything it loaded is unloaded after the test."""
    from pytest_ebpf.kernel.loader import load_program

    enforce(pytestconfig)
    prepare()
    opened: list[LoadedObject] = []

    def load(program: str, **options: Any) -> LoadedObject:
        options.setdefault("loader", _loader(pytestconfig))
        options.setdefault("max_entries", _settings(pytestconfig).map_sizes)
        loaded = load_program(ebpf_object, program, **options)
        opened.append(loaded)
        return loaded

    try:
        yield load
    finally:
        for loaded in opened:
            loaded.close()


def _as_input(what: str, value: object, program: str) -> bytes:
    """Test-run input as bytes: bytes-like, or anything with ``__bytes__`` (a scapy packet)."""
    __tracebackhide__ = True
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    to_bytes = getattr(type(value), "__bytes__", None)
    if to_bytes is not None:
        out = to_bytes(value)
        if isinstance(out, bytes):
            return out
    pytest.fail(f"ebpf_run({program!r}, {what}=...): a {type(value).__name__} is not input; "
                "give bytes or an object with __bytes__ (e.g. a scapy packet: "
                "Ether()/IP()/UDP())", pytrace=False)


@pytest.fixture
def ebpf_run(ebpf_loaded: LoadedObject, ebpf_object: Any
             ) -> Callable[..., TestRunResult]:
    """``ebpf_run(program, data=b"", ctx=None, repeat=1) -> TestRunResult(retval, data_out,
    ctx_out, duration_ns)`` through BPF_PROG_TEST_RUN, called directly (no subprocess).
    ``data`` and ``ctx`` are bytes or anything with ``__bytes__`` (a scapy packet)."""
    from pytest_ebpf.kernel.bpf import KernelError, prog_test_run
    from pytest_ebpf.kernel.loader import nearest

    def run(program: str, data: object = b"", ctx: object = None,
            repeat: int = 1) -> TestRunResult:
        __tracebackhide__ = True
        data_in = _as_input("data", data, program)
        ctx_in = None if ctx is None else _as_input("ctx", ctx, program)
        result = ebpf_loaded.results.get(program)
        if result is None:
            names = ", ".join(sorted(ebpf_loaded.results)) or "none"
            hint = nearest(program, ebpf_loaded.results)
            pytest.fail(f"no program {program!r} in the object (programs: {names}){hint}",
                        pytrace=False)
        if not result.loaded:
            pytest.fail(rejection(result, ebpf_object), pytrace=False)
        try:
            return prog_test_run(ebpf_loaded.prog_fd(program), data_in=data_in, ctx_in=ctx_in,
                                 repeat=repeat)
        except KernelError as exc:
            pytest.fail(f"ebpf_run({program!r}): {exc}", pytrace=False)

    return run


# --- safety: stale pins, signals, a dead xdist controller ----------------------------------------


def warn(message: str) -> None:
    """A pytest warning that never fails the session: shown even under ``-W error`` (an
    attacker's symlink must not be able to stop the tests)."""
    from pytest_ebpf.kernel.pins import PinDirWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", PinDirWarning)
        warnings.warn(PinDirWarning(message), stacklevel=3)


_prepared: set[int] = set()


def prepare() -> None:
    """Before loading: remove stale pin roots of killed runs (foreign entries are warnings;
    once per process), turn SIGTERM/SIGHUP into Ctrl-C's cleanup, and in an xdist worker watch
    the controller."""
    from pytest_ebpf.kernel.pins import install_signal_cleanup, remove_stale_pin_dirs

    if os.getpid() not in _prepared:
        _prepared.add(os.getpid())
        for message in remove_stale_pin_dirs():
            warn(message)
    install_signal_cleanup()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        watch_controller()


_watching: set[int] = set()
GRACE = 5.0  # seconds the worker gets to tear down by itself before it is stopped hard


def watch_controller(poll: float = 0.2) -> None:
    """A daemon thread that notices when this process's parent (the xdist controller) is
    gone (``getppid()`` changes: the worker was re-parented). It then sends this process
    SIGTERM (the Ctrl-C path: fixtures torn down), and after :data:`GRACE` seconds removes the
    pins itself and exits (the kernel closes the fds)."""
    pid = os.getpid()
    if pid in _watching:
        return
    _watching.add(pid)
    parent = os.getppid()

    def watch() -> None:
        from pytest_ebpf.kernel.pins import remove_session_pin_dir

        while os.getppid() == parent:
            time.sleep(poll)
        sys.stderr.write(f"pytest-ebpf: the xdist controller (pid {parent}) is gone; "
                         "stopping this worker and removing its pins\n")
        os.kill(pid, signal.SIGTERM)
        time.sleep(GRACE)
        remove_session_pin_dir()
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="pytest-ebpf-controller-watch", daemon=True).start()


def assert_rejected(result: LoadResult, match: str) -> None:
    """The program was rejected and the verifier said ``match`` (a regular expression), like
    the kernel selftests' ``__failure __msg(...)``."""
    __tracebackhide__ = True
    if result.loaded:
        raise AssertionError(f"program {result.program} was expected to be rejected "
                             f"({match!r}) but the verifier accepted it")
    if not re.search(match, result.log or "") and not re.search(match, result.error or ""):
        raise AssertionError(f"program {result.program} was rejected, but not with "
                             f"{match!r}: {result.error}")
