"""Benchmark: what each kernel named in ``--ebpf-kernel`` costs a session, in VMs.

The example project's privileged tests (``-m ebpf_privileged``: its ``test_kernel.py``, 10
items per kernel) run as whole pytest sessions, interleaved over ``--rounds`` rounds (the best
and the median count):

* ``--ebpf-kernel=host`` (no VM),
* ``--ebpf-kernel=6.12,host`` and ``--ebpf-kernel=6.1,host`` (one VM beside the host's tests),
* ``--ebpf-kernel=6.1,6.12,host`` (two VMs at once, one per core).

The overhead of a kernel is the session's wall time minus the host-only session's. Each VM's
own figures come from the session summary: seconds from qemu's start to its exit, and the
guest's uptime when its tests started (the boot). The kernels must be cached first
(``pytest-ebpf kernels fetch``), so no download is timed.
Target (issue 13): at most 10 s per extra kernel. Run:
``.venv/bin/python benchmarks/bench_vm_kernels.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_project"
CONTENDERS = ("host", "6.12,host", "6.1,host", "6.1,6.12,host")
BOOTED = re.compile(r"^kernel (\S+) \(.*booted once, \d+ tests, ([\d.]+) s \(([\d.]+) s to boot\)",
                    re.M)


def session(kernels: str) -> tuple[float, dict[str, tuple[float, float]]]:
    """One session's wall time and, per VM kernel, (seconds, seconds to boot)."""
    env = {**os.environ, "PYTEST_EBPF_VM": "auto"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"--ebpf-kernel={kernels}", "-m", "ebpf_privileged",
         "--ebpf-privileged=require", "-p", "no:cacheprovider", "-q"],
        cwd=EXAMPLE, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"--ebpf-kernel={kernels} failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    vms = {m.group(1): (float(m.group(2)), float(m.group(3)))
           for m in BOOTED.finditer(proc.stdout)}
    return wall, vms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    session("host")  # the build, the object and the page cache warm
    walls: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    vms: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.rounds):
        for contender in CONTENDERS:
            wall, found = session(contender)
            walls[contender].append(wall)
            for kernel, figures in found.items():
                vms.setdefault(f"{kernel} in {contender}", []).append(figures)
    host = walls["host"]
    print(f"{'--ebpf-kernel':<16} {'best s':>7} {'median s':>9} {'overhead s':>11} "
          f"{'per VM kernel s':>16}")
    for contender in CONTENDERS:
        best, median = min(walls[contender]), statistics.median(walls[contender])
        overheads = [w - h for w, h in zip(walls[contender], host)]
        count = contender.count(",")
        over = statistics.median(overheads)
        per = f"{over / count:16.1f}" if count else f"{'-':>16}"
        print(f"{contender:<16} {best:7.1f} {median:9.1f} {over:11.1f} {per}")
    print()
    print(f"{'VM':<24} {'qemu start to exit s':>21} {'to boot s':>10}")
    for label, runs in vms.items():
        print(f"{label:<24} {statistics.median(r[0] for r in runs):21.1f} "
              f"{statistics.median(r[1] for r in runs):10.1f}")


if __name__ == "__main__":
    main()
