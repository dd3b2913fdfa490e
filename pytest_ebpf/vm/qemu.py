"""One throwaway VM: a Debian kernel under qemu (TCG), the host's root shared read-only, one
job run inside as root, then power-off.

Why qemu directly and not virtme-ng: see the README ("Other kernels in VMs"). The settings
below are the ones measured to be stable here: the ``pc`` machine with the bzImage
(``microvm`` with a bzImage hangs at random), ``-cpu max`` under TCG (KVM is unusable on
nested PVM hosts; ``-cpu host`` aborts), ``-no-reboot`` with ``panic=-1`` so a panic ends
qemu, and always a timeout, after which the whole process group is killed.

The result channel is the second serial port: ``/init`` writes ``BOOTED``, ``READY``,
``FAILED <step>`` and ``EXIT <rc>`` there (:mod:`pytest_ebpf.vm.initramfs`); the console (first
port) is kept for the reason of a panic.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_ebpf.errors import EbpfError
from pytest_ebpf.vm.guest import output, write_job
from pytest_ebpf.vm.images import KernelImage, fetch
from pytest_ebpf.vm.initramfs import (
    JOB_TAG,
    ROOT_TAG,
    WITHOUT_VMS,
    build_initramfs,
    find_busybox,
)

QEMU = "qemu-system-x86_64"
MEMORY_MB = 2048
CONSOLE = "console.log"
STATUS = "status.log"
CONSOLE_TAIL = 12
_RUNNING: set[subprocess.Popen[bytes]] = set()
_LOCK = threading.Lock()


class VmError(EbpfError):
    """A VM could not be started (qemu or busybox missing): one line, the cause and the fix."""


@dataclass(frozen=True)
class VmRun:
    """How one VM ended."""

    kernel: str
    release: str
    rc: int | None
    """The job's exit status; ``None`` when the job did not finish."""
    error: str | None
    """One line, the cause and the fix, when the job did not finish."""
    seconds: float
    console_tail: tuple[str, ...] = ()
    ready: float | None = None
    """The guest's uptime when the job started (boot, modules and mounts done)."""


def find_qemu() -> str:
    found = shutil.which(QEMU)
    if found is None:
        raise VmError(f"{QEMU} is not on PATH, and kernels other than the host run in qemu "
                      "VMs; fix: apt-get install qemu-system-x86 (dnf install "
                      f"qemu-system-x86-core), or {WITHOUT_VMS}")
    return found


def command(qemu: str, image: KernelImage, job_dir: Path, initrd: Path,
            memory_mb: int = MEMORY_MB) -> list[str]:
    """The qemu command line for *image* running the job in *job_dir*."""
    if any(c.isspace() for c in str(job_dir)):
        raise VmError(f"the VM job directory {job_dir} has white space in its path, which the "
                      "kernel command line cannot carry; fix: set TMPDIR to a plain path")
    share = "security_model=none,multidevs=remap"
    return [
        qemu, "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", str(memory_mb),
        "-nodefaults", "-display", "none", "-no-reboot", "-nic", "none",
        "-serial", f"file:{job_dir / CONSOLE}", "-serial", f"file:{job_dir / STATUS}",
        "-kernel", str(image.vmlinuz), "-initrd", str(initrd),
        "-append", f"console=ttyS0 quiet panic=-1 pytest_ebpf.job={job_dir}",
        "-virtfs", f"local,path=/,mount_tag={ROOT_TAG},readonly=on,{share}",
        "-virtfs", f"local,path={job_dir},mount_tag={JOB_TAG},{share}",
    ]


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return []
    return [ln.strip() for ln in text.replace("\r", "").splitlines() if ln.strip()]


def run_job(image: KernelImage, job_dir: Path, timeout: float) -> VmRun:
    """Boot *image*, run the job prepared in *job_dir* (see :mod:`pytest_ebpf.vm.guest`), and
    say how it ended. Raises :class:`VmError` only when qemu or busybox is missing."""
    qemu = find_qemu()
    initrd = job_dir / "initrd.gz"
    initrd.write_bytes(build_initramfs(find_busybox(), image.modules))
    argv = command(qemu, image, job_dir, initrd)
    start = time.monotonic()
    with open(job_dir / "qemu.log", "wb") as qlog:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qlog,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
    with _LOCK:
        _RUNNING.add(proc)
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(proc)
    finally:
        with _LOCK:
            _RUNNING.discard(proc)
    seconds = time.monotonic() - start
    status = _lines(job_dir / STATUS)
    console = _lines(job_dir / CONSOLE)
    tail = tuple(console[-CONSOLE_TAIL:])
    name = f"kernel {image.name} ({image.release})"
    exits = [s for s in status if s.startswith("EXIT ")]
    readies = [s.split() for s in status if s.startswith("READY ")]
    ready = float(readies[-1][1]) if readies and _is_number(readies[-1][1]) else None
    if exits and exits[-1].split()[1].lstrip("-").isdigit():
        return VmRun(image.name, image.release, int(exits[-1].split()[1]), None, seconds, tail,
                     ready)
    failed = [s for s in status if s.startswith("FAILED ")]
    panic = [c for c in console if "Kernel panic" in c]
    if timed_out:
        error = (f"{name}: the VM did not finish within {timeout:.0f} s and was stopped "
                 f"(last step: {status[-1] if status else 'none reported'}); fix: raise "
                 "--ebpf-vm-timeout, or look for a test that waits forever")
    elif failed:
        error = (f"{name}: the VM could not start the tests: {failed[-1][7:]} failed; fix: "
                 "`pytest-ebpf kernels fetch --refresh " + image.name + "`, and check that "
                 "qemu's 9p (virtfs) support is installed")
    elif panic:
        error = f"{name}: the kernel panicked: {panic[-1]}"
    else:
        qemu_said = _lines(job_dir / "qemu.log")
        error = (f"{name}: qemu exited with status {proc.returncode} before the tests ran"
                 + (f": {qemu_said[-1]}" if qemu_said else ""))
    return VmRun(image.name, image.release, None, error, seconds, tail, ready)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def run_command(name: str, argv: list[str], *, cwd: str, env: dict[str, str],
                timeout: float) -> tuple[VmRun, str]:
    """Run one command (``argv[0]``: the host's Python) as root in a VM of kernel *name*:
    how the VM ended and what the command printed. Raises :class:`VmError` and
    :class:`~pytest_ebpf.vm.images.KernelImageError`."""
    import tempfile

    image = fetch(name)
    job_dir = Path(tempfile.mkdtemp(prefix="pytest-ebpf-vm-"))
    try:
        write_job(job_dir, argv, env, cwd)
        return run_job(image, job_dir, timeout), output(job_dir)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the thread that started qemu ends (a pytest
    process killed with SIGKILL leaves no VM running). ``prctl(PR_SET_PDEATHSIG)``."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def kill_all() -> None:
    """Stop every VM this process started (at the end of the session, on Ctrl-C, at exit)."""
    with _LOCK:
        running = list(_RUNNING)
        _RUNNING.clear()
    for proc in running:
        _kill(proc)
