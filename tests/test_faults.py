"""Faults: privileged sessions and `pytest-ebpf verify` stopped by SIGTERM, SIGHUP, `kill -9`,
and an xdist worker whose controller was killed.

Every process runs in a private bpffs (tests/bpffs_ns.py), so what a killed run leaves behind is
seen only here. Waits are bounded polls that fail the test when they run out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from bpffs_ns import BpffsNamespace, pids_alive, wait_for
from kernel_wait import wait_unloaded

from pytest_ebpf.kernel import bpf as k
from pytest_ebpf.kernel.pins import PIN_PREFIX, stale_pin_dirs

C_DIR = Path(__file__).parent / "c"
_AVAILABLE, _WHY = k.bpf_available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _AVAILABLE, reason=f"needs root or CAP_BPF here: {_WHY}"),
]

HOLD = """
import json, os, time
from pytest_ebpf.kernel.pins import session_pin_dir

def test_hold(ebpf_loaded):
    ids = [r.prog_id for r in ebpf_loaded.results.values() if r.prog_id]
    state = {"pid": os.getpid(), "ids": ids, "pins": os.path.basename(session_pin_dir())}
    with open("state.tmp", "w") as f:
        json.dump(state, f)
    os.rename("state.tmp", "state.json")
    time.sleep(120)  # one long call, as in a test stuck in the kernel: only a signal ends it
    raise AssertionError("never signalled")
"""

QUICK = "def test_loaded(ebpf_loaded):\n    assert ebpf_loaded.all_loaded\n"


@pytest.fixture
def ns() -> Iterator[BpffsNamespace]:
    space = BpffsNamespace()
    yield space
    space.close()


@pytest.fixture
def globals_obj(compile_c: Callable[..., Path]) -> Path:
    path: Path = compile_c((C_DIR / "ld_globals.c").read_text(), "ld_globals")
    return path


@pytest.fixture(scope="module")
def big_obj(compile_c: Callable[..., Path]) -> Path:
    """300 socket programs: bpftool takes long enough to be stopped half-way."""
    progs = "\n".join(f'SEC("socket") int p{i}(void *skb) {{ return {i}; }}' for i in range(300))
    path: Path = compile_c(f'#include "obj_bpf.h"\n{progs}\nchar _l[] SEC("license") = "GPL";',
                           "many_progs")
    return path


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pytest(ns: BpffsNamespace, obj: Path, cwd: Path, *extra: str,
            background: bool = False) -> subprocess.Popen[bytes]:
    """A privileged session in *ns*; *background*: as a background job of a non-interactive
    shell (CI scripts), which starts with SIGINT ignored."""
    out = open(cwd / "session.log", "wb")  # noqa: SIM115 - closed with the process below
    proc = subprocess.Popen(
        ns.cmd([sys.executable, "-m", "pytest", f"--ebpf-object={obj}",
                "--ebpf-privileged=require", "-p", "no:cacheprovider", *extra], cwd),
        stdout=out, stderr=subprocess.STDOUT, preexec_fn=_ignore_sigint if background else None,
    )  # fmt: skip
    out.close()
    return proc


def _held_state(proc: subprocess.Popen[bytes], cwd: Path) -> dict[str, Any]:
    state = cwd / "state.json"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the session ended early:\n{_log(cwd)}")
        return state.exists()

    wait_for(ready, 120, "the session to load its programs")
    loaded: dict[str, Any] = json.loads(state.read_text())
    assert loaded["ids"], _log(cwd)
    return loaded


def _log(cwd: Path) -> str:
    return (cwd / "session.log").read_text(errors="replace")


def _verify(ns: BpffsNamespace, obj: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ns.cmd([sys.executable, "-m", "pytest_ebpf.cli.main", "verify", "--loader", "bpftool",
                str(obj)], cwd),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _pin_root_of(ns: BpffsNamespace, pid: int) -> Path:
    """Wait (bounded) for the pin root of process *pid* to appear; return it."""
    found: list[Path] = []

    def appeared() -> bool:
        found[:] = [p for p in ns.bpffs.iterdir() if p.name.startswith(f"{PIN_PREFIX}{pid}-")]
        return bool(found)

    wait_for(appeared, 120, f"the pin directory of pid {pid}")
    return found[0]


def _pinned_prog_ids(root: Path) -> set[int]:
    ids = set()
    for path in root.rglob("*"):
        if path.is_file() and path.parent.name != "maps":
            with k.obj_get(path) as fd:
                ids.add(k.prog_info(fd).id)
    return ids


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_cleans_up_like_ctrl_c(ns: BpffsNamespace, globals_obj: Path,
                                      pytester: pytest.Pytester, sig: signal.Signals) -> None:
    pytester.makepyfile(test_hold=HOLD)
    proc = _pytest(ns, globals_obj, pytester.path)
    state = _held_state(proc, pytester.path)
    assert (ns.bpffs / state["pins"]).is_dir()
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    log = _log(pytester.path)
    assert code == pytest.ExitCode.INTERRUPTED, log
    assert f"{sig.name} received" in log
    assert not (ns.bpffs / state["pins"]).exists(), "pins left after " + sig.name
    assert not wait_unloaded(state["ids"], timeout=5.0), "programs still loaded"
    assert stale_pin_dirs(ns.bpffs) == []


def test_kill_9_leaves_pins_that_verify_removes(ns: BpffsNamespace, globals_obj: Path,
                                                pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_hold=HOLD)
    proc = _pytest(ns, globals_obj, pytester.path)
    state = _held_state(proc, pytester.path)
    proc.kill()
    proc.wait(timeout=60)
    root = ns.bpffs / state["pins"]
    assert stale_pin_dirs(ns.bpffs) == [root]  # nothing can run on SIGKILL: pins stay...
    assert not set(state["ids"]) - set(k.prog_ids()), "pinned programs should still be loaded"

    done = ns.run([sys.executable, "-m", "pytest_ebpf.cli.main", "verify", str(globals_obj)])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # our own stale directory: removed without a word
    assert not root.exists(), "verify did not remove the stale pin directory"
    assert not wait_unloaded(state["ids"], timeout=5.0)


def test_sigterm_of_verify_leaves_nothing(ns: BpffsNamespace, big_obj: Path,
                                          tmp_path: Path) -> None:
    before = set(k.prog_ids())
    proc = _verify(ns, big_obj, tmp_path)
    root = _pin_root_of(ns, proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert out == ""
    assert err.splitlines() == [f"error: {big_obj}: SIGTERM received: cleaning up and stopping; "
                                "nothing is left loaded or pinned"]
    assert not root.exists()
    assert not wait_unloaded(set(k.prog_ids()) - before, timeout=10.0)


def test_kill_9_of_verify_is_cleaned_by_the_next_session(
        ns: BpffsNamespace, big_obj: Path, globals_obj: Path, pytester: pytest.Pytester) -> None:
    proc = _verify(ns, big_obj, pytester.path)
    root = _pin_root_of(ns, proc.pid)
    proc.kill()
    proc.communicate(timeout=60)
    # bpftool, orphaned, may still be pinning: wait for it to finish
    wait_for(lambda: not any(root.name in _cmdline(p) for p in _pids()), 120,
             "the orphaned bpftool to exit")
    assert stale_pin_dirs(ns.bpffs) == [root]
    ids = _pinned_prog_ids(root)

    pytester.makepyfile(test_q=QUICK)
    session = _pytest(ns, globals_obj, pytester.path)
    assert session.wait(timeout=120) == 0, _log(pytester.path)
    assert not root.exists(), "the next session did not remove the stale pin directory"
    assert not wait_unloaded(ids, timeout=10.0)


def test_xdist_worker_of_a_killed_controller_stops_and_cleans_up(
        ns: BpffsNamespace, globals_obj: Path, pytester: pytest.Pytester) -> None:
    """execnet's own rescue is a SIGINT, then os._exit() 15 s later: with SIGINT ignored (a
    background job) that exit skips every cleanup and leaves the pins."""
    pytester.makepyfile(test_hold=HOLD)
    controller = _pytest(ns, globals_obj, pytester.path, "-n", "1", "-p", "xdist",
                         background=True)
    state = _held_state(controller, pytester.path)
    worker = state["pid"]
    assert worker != controller.pid and pids_alive(worker)
    controller.kill()
    controller.wait(timeout=60)
    wait_for(lambda: not pids_alive(worker), 60, f"worker {worker} to stop")
    assert not (ns.bpffs / state["pins"]).exists(), "the worker left its pins"
    assert not wait_unloaded(state["ids"], timeout=5.0)
    assert stale_pin_dirs(ns.bpffs) == []


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_signal_handlers_chain_and_respect_ignore() -> None:
    """In this process: a previous Python handler still runs, then Terminated (a
    KeyboardInterrupt) unwinds; an ignored signal (nohup) stays ignored."""
    from pytest_ebpf.kernel.pins import Terminated, install_signal_cleanup

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    seen: list[int] = []
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        install_signal_cleanup()
        with pytest.raises(Terminated, match="SIGTERM received") as info:
            os.kill(os.getpid(), signal.SIGTERM)
            wait_for(lambda: False, 10, "SIGTERM to arrive")
        assert isinstance(info.value, KeyboardInterrupt) and info.value.signum == signal.SIGTERM
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing happens
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
