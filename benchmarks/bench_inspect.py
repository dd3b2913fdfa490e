"""Benchmark: ``pytest-ebpf inspect --json`` against ``llvm-objdump-22 -dr`` on the same objects.

Generates C files with enough functions for >= 60,000 instructions (and 4x that), compiles
them (clang-19 -target bpf -O2 -g), and times, in the same run, interleaved (each round runs
every contender once; the best of ``--rounds`` counts, so a slow moment of the machine hits
all of them alike):

* ``pytest-ebpf inspect --json OBJECT``: the command a user runs, from a fresh virtual
  environment where pytest-ebpf is ``pip install``-ed (not editable: no import hook; bytecode
  compiled at install, as pip does; no dependencies, inspect needs only the standard library),
* ``run_inspect(path, as_json=True)`` in-process (what the plugin does inside pytest), and its
  two halves, loading the object and analysing it,
* ``llvm-objdump-22 -dr OBJECT``.

Prints a table with both sizes and the ratios. Run:
``.venv/bin/python benchmarks/bench_inspect.py [--profile] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_ebpf.analysis.profiles import host_profile  # noqa: E402
from pytest_ebpf.cli.inspect import inspect_data, run_inspect  # noqa: E402
from pytest_ebpf.obj.load import gc_paused, load_object  # noqa: E402

HEADER = '#include "obj_bpf.h"\n'


def generate(n_programs: int) -> str:
    """C source: *n_programs* socket programs, each calling two noinline helpers with a stack
    buffer; ~100 instructions per program with its helpers."""
    parts = [HEADER]
    for i in range(n_programs):
        parts.append(
            f"""
static __noinline int h{i}a(volatile u8 *p, u32 x)
{{
    volatile u8 b[48];
    b[x & 31] = p[0] ^ {i % 251};
    b[(x >> 3) & 31] += p[1] * 3;
    b[(x >> 5) & 31] ^= p[2] + {i % 13};
    return b[x & 15] + b[(x >> 2) & 15] + b[(x >> 4) & 15];
}}

static __noinline int h{i}b(volatile u8 *p, u32 x)
{{
    volatile u64 v[6];
    v[0] = x; v[1] = x * {i % 7 + 3}; v[2] = p[3]; v[3] = v[0] ^ v[1];
    v[4] = v[2] + v[3]; v[5] = v[4] >> 3;
    return (int)(v[5] + v[x & 3]) + h{i}a(p, x + 1);
}}

SEC("socket")
int prog{i}(u32 *skb)
{{
    volatile u8 buf[64];
    u32 x = skb[0];
    buf[0] = x; buf[1] = x >> 8; buf[2] = x >> 16; buf[3] = x >> 24;
    if (x & 1)
        return h{i}a(buf, x) + bpf_ktime_get_ns();
    return h{i}b(buf, x) + h{i}a(buf, x ^ {i});
}}
"""
        )
    parts.append('char _license[] SEC("license") = "GPL";\n')
    return "".join(parts)


def compile_c(src: str, out: Path) -> None:
    c = out.with_suffix(".c")
    c.write_text(src)
    subprocess.run(
        ["clang-19", "-target", "bpf", "-O2", "-g", "-I", str(ROOT / "tests/c"), "-c", str(c),
         "-o", str(out)],
        check=True,
    )


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time of each contender over *rounds* rounds, each round running all once."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def user_install(tmp: Path, env: dict[str, str]) -> Path:
    """A fresh venv with pytest-ebpf pip-installed as a user gets it; its console script."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "--no-deps", str(ROOT)],
                   check=True, env=env)
    return venv / "bin/pytest-ebpf"


def insn_count(path: Path) -> int:
    obj = load_object(path)
    return sum(f.slots for f in obj.functions)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", action="store_true", help="cProfile the in-process run")
    ap.add_argument("--base", type=int, default=60_000, help="instructions of the small object")
    ap.add_argument("--rounds", type=int, default=7, help="rounds of the interleaved timing")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    tmp = Path(tempfile.mkdtemp(prefix="bench_inspect-"))
    console = user_install(tmp, env)
    # Calibrate programs per instruction on a small sample.
    sample = tmp / "sample.o"
    compile_c(generate(20), sample)
    per_prog = insn_count(sample) / 20
    rows = []
    for factor in (1, 4):
        n = int(args.base * factor / per_prog) + 1
        obj_path = tmp / f"gen{factor}.o"
        compile_c(generate(n), obj_path)
        insns = insn_count(obj_path)
        path = str(obj_path)

        def command(p: str = path) -> None:
            subprocess.run([str(console), "inspect", "--json", p], check=True,
                           stdout=subprocess.DEVNULL, env=env)

        def objdump(p: str = path) -> None:
            subprocess.run(["llvm-objdump-22", "-dr", p], check=True, stdout=subprocess.DEVNULL)

        def inproc(p: str = path) -> None:
            run_inspect(p, as_json=True, out=io.StringIO(), err=io.StringIO())

        def load_only(p: str = path) -> None:
            load_object(p)

        def load_analyse(p: str = path) -> None:
            with gc_paused():
                inspect_data(load_object(p), (host_profile(),))

        t = interleaved(
            {"command": command, "objdump": objdump, "inproc": inproc, "load": load_only,
             "load_analyse": load_analyse},
            args.rounds,
        )
        rows.append((insns, n, t))
        if args.profile and factor == 1:
            prof = cProfile.Profile()
            prof.enable()
            inproc()
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    print(f"{'insns':>8} {'progs':>6} {'load':>7} {'analyse':>7} {'in-proc':>7} "
          f"{'command':>7} {'objdump':>7} {'cmd/od':>6} {'in/od':>6}")
    for insns, n, t in rows:
        print(f"{insns:>8} {n:>6} {t['load']:>7.3f} {t['load_analyse'] - t['load']:>7.3f} "
              f"{t['inproc']:>7.3f} {t['command']:>7.3f} {t['objdump']:>7.3f} "
              f"{t['command'] / t['objdump']:>6.2f} {t['inproc'] / t['objdump']:>6.2f}")
    if len(rows) == 2:
        small, big = rows[0][2], rows[1][2]
        size = rows[1][0] / rows[0][0]
        print(f"growth: {size:.2f}x instructions -> command "
              f"{big['command'] / small['command']:.2f}x, in-process "
              f"{big['inproc'] / small['inproc']:.2f}x, objdump "
              f"{big['objdump'] / small['objdump']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
