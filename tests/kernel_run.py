"""Running a command as root on a named kernel in tests: ``host`` here, any other name in a VM
of that kernel (:func:`pytest_ebpf.vm.qemu.run_command`). A command that fails, or a VM that
cannot start or finish, fails the test with the product's own message."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import pytest

from pytest_ebpf.errors import EbpfError

TIMEOUT = 600.0


def run_on(kernel: str, argv: list[str], cwd: Path, timeout: float = TIMEOUT
           ) -> tuple[str, str]:
    """*argv* (``argv[0]``: this Python) run as root on *kernel*: the release and the output."""
    __tracebackhide__ = True
    if kernel == "host":
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False,
                              timeout=timeout)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}",
                        pytrace=False)
        return platform.release(), proc.stdout
    from pytest_ebpf.vm.qemu import run_command

    try:
        run, text = run_command(kernel, argv, cwd=str(cwd), env=dict(os.environ),
                                timeout=timeout)
    except EbpfError as exc:  # qemu, busybox or the kernel image missing
        pytest.fail(f"kernel {kernel}: {exc}", pytrace=False)
    if run.error is not None or run.rc != 0:
        console = "\n".join(run.console_tail)
        pytest.fail(f"kernel {kernel}: {run.error or f'the job exited with {run.rc}'}\n"
                    f"output:\n{text[-4000:]}\nconsole:\n{console}", pytrace=False)
    return run.release, text
