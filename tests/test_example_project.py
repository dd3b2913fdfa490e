"""The example project's own tests, run the way a user runs them (privileged ones required)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


@pytest.mark.slow
def test_example_project_suite_passes_with_privileged_tests_required() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--ebpf-crate=lock-ebpf", "--ebpf-privileged=require",
         "-p", "no:cacheprovider", "-q", "-rs"],
        cwd=EXAMPLE, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "skipped" not in proc.stdout, proc.stdout[-3000:]
    assert "eBPF build" in proc.stdout and "eBPF programs" in proc.stdout
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()
            if line.startswith(("lock ", "lock_exec "))}
    assert rows["lock"][1:3] == ["xdp", "xdp"] and rows["lock_exec"][2] == "tracepoint"
