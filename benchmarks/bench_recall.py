"""Benchmark: how many of the kernel's rejections the static rules foresee, and how many programs
the kernel accepts they flag (false alarms, which must be 0).

Over the suite's corpus: every ``tests/c/*.c`` object (the ``pred_*`` corpus included, compiled
with clang-19 -target bpf -O2 -g as the ``compile_c`` fixture does) and the example project's
object (``example_project/target/bpfel-unknown-none/release/lock``, when it is built), each
program is loaded into the running kernel with the native loader (needs root), and judged
statically by every rule of the registry on the host's profile. A rejection is *foreseen* when a
finding that predicts a rejection (an error, not the project's policy) says the kernel's own line
(its ``reason``, or the line quoted in its message), and *flagged* when some finding predicts a
rejection with other words. Rejections are classed by the kernel's line (numbers dropped).

Run: ``sudo .venv/bin/python benchmarks/bench_recall.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from pytest_ebpf.analysis.profiles import host_profile
from pytest_ebpf.analysis.rules import RULES, judge
from pytest_ebpf.kernel.bpf import bpf_available
from pytest_ebpf.kernel.loader import load_all
from pytest_ebpf.obj.load import load_object

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "tests" / "c"
EXAMPLE = ROOT / "example_project" / "target" / "bpfel-unknown-none" / "release" / "lock"
FLAGS = {"an_bigframe": ["-mllvm", "-bpf-stack-size=1024"], "vm_insns": ["-DINSNS=1000"]}


def corpus(out: Path) -> list[Path]:
    clang = shutil.which("clang-19")
    if clang is None:
        sys.exit("clang-19 is not on PATH")
    objs = []
    for src in sorted(C_DIR.glob("*.c")):
        obj = out / f"{src.stem}.o"
        cmd = [clang, "-target", "bpf", "-O2", "-g", "-I", str(C_DIR),
               *FLAGS.get(src.stem, []), "-c", str(src), "-o", str(obj)]
        subprocess.run(cmd, check=True, capture_output=True)
        objs.append(obj)
    if EXAMPLE.is_file():
        objs.append(EXAMPLE)
    else:
        print(f"note: {EXAMPLE} is not built (the suite builds it); left out")
    return objs


def kind(line: str) -> str:
    """The rejection's class: the kernel's line without its numbers and names."""
    line = re.sub(r"-?\b\d+\b|0x[0-9a-f]+", "N", line)
    return re.sub(r"\bR\d+|RN\b", "RN", line)[:70]


def main() -> int:
    ok, why = bpf_available()
    if not ok:
        print(f"needs root (or CAP_BPF) to load: {why}")
        return 2
    profile = host_profile()
    rejected: Counter[str] = Counter()
    foreseen: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    accepted = alarms = 0
    alarm_lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in corpus(Path(tmp)):
            obj = load_object(path)
            verdicts = {v.program.name: v for v in judge(obj, [profile], RULES)}
            try:
                with load_all(obj, loader="native") as loaded:
                    results = list(loaded.results.values())
            except Exception as exc:  # the loader could not prepare the object
                print(f"note: {path.name}: not loaded ({exc})")
                continue
            for res in results:
                errors = verdicts[res.program].errors(profile)
                if res.loaded:
                    accepted += 1
                    if errors:
                        alarms += 1
                        alarm_lines.append(f"{path.name}:{res.program}: {errors[0].message}")
                    continue
                if res.cause not in (None, "verifier") or not res.error:
                    continue
                k = kind(res.error)
                rejected[k] += 1
                if any(f.reason == res.error or f'"{res.error}"' in f.message for f in errors):
                    foreseen[k] += 1
                elif errors:
                    flagged[k] += 1
    total = sum(rejected.values())
    width = max([len(k) for k in rejected] + [20])
    print(f"{'rejection (the kernel says)':<{width}}  rejected  foreseen  other finding")
    for k, n in sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{k:<{width}}  {n:>8}  {foreseen[k]:>8}  {flagged[k]:>13}")
    seen = sum(foreseen.values())
    print(f"\nrecall: {seen}/{total} rejections foreseen word for word "
          f"({100 * seen / max(total, 1):.0f}%), {sum(flagged.values())} more flagged in "
          f"other words")
    print(f"false alarms: {alarms} of {accepted} accepted programs")
    for line in alarm_lines:
        print(f"  {line}")
    return 1 if alarms else 0


if __name__ == "__main__":
    sys.exit(main())
