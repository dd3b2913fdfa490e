"""A private bpffs for tests that plant hostile entries or kill sessions on purpose.

A holder process lives in its own mount namespace, where /sys/fs/bpf is a fresh bpffs (mode
1777 like the default one, so user nobody can create entries). Commands run there through
``nsenter``; the test reads it through ``/proc/<holder>/root/sys/fs/bpf``. Closing the holder
destroys that bpffs and whatever is pinned in it, so nothing leaks into the machine's bpffs,
which other tests (under xdist, at the same time) check for stale entries.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


class BpffsNamespace:
    def __init__(self, mode: str = "1777") -> None:
        script = (f"mount -t bpf -o mode={mode} bpf /sys/fs/bpf && echo ready && "
                  "exec sleep 3600")
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.holder.stdout is not None
        ready, _, _ = select.select([self.holder.stdout], [], [], 30)
        line = self.holder.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.close()
            raise RuntimeError(f"no private bpffs: {line!r}")
        self.bpffs = Path(f"/proc/{self.holder.pid}/root/sys/fs/bpf")

    def cmd(self, args: Sequence[str], cwd: str | os.PathLike[str] = "/") -> list[str]:
        """*args* run inside the namespace, in *cwd* (entering a mount namespace resets the
        working directory); nsenter execs them: same pid."""
        return ["nsenter", f"--target={self.holder.pid}", "--mount", f"--wd={os.fspath(cwd)}",
                *args]

    def run(self, args: Sequence[str], cwd: str | os.PathLike[str] = "/",
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(args, cwd), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def as_nobody(self, *args: str) -> None:
        proc = self.run([*NOBODY, *args])
        assert proc.returncode == 0, f"{args} as nobody failed: {proc.stderr}"

    def close(self) -> None:
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.wait(timeout=30)


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    assert not Path(f"/proc/{child.pid}").exists()
    return child.pid


def wait_for(predicate: object, timeout: float, what: str) -> None:
    """Poll *predicate* (a callable) every 10 ms until true; AssertionError naming *what*."""
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def pids_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
