"""Benchmark: ``pytest-ebpf inspect --json`` against ``llvm-objdump-22 -dr`` on the same objects.

Generates C files with enough functions for >= 60,000 instructions (and 4x that), compiles
them (clang-19 -target bpf -O2 -g), and times, best of 3 each, in the same run:

* ``run_inspect(path, as_json=True)`` in-process (loader + analyses + JSON),
* ``python -m pytest_ebpf.cli inspect --json`` as a subprocess: the command a user runs, with
  interpreter start-up and imports. The package's bytecode is compiled first, as ``pip install``
  does (a shell with ``PYTHONDONTWRITEBYTECODE=1`` would otherwise recompile every module on
  every run),
* ``llvm-objdump-22 -dr``.

Then prints a table with both sizes and the ratios, and where in-process time goes (load vs
analysis). Run: ``.venv/bin/python benchmarks/bench_inspect.py [--profile]``.
"""

from __future__ import annotations

import argparse
import compileall
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_ebpf.inspect_cmd import inspect_data, run_inspect  # noqa: E402
from pytest_ebpf.object import load_object  # noqa: E402

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


def best_of(fn: object, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def insn_count(path: Path) -> int:
    obj = load_object(path)
    return sum(f.slots for f in obj.functions)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", action="store_true", help="cProfile the in-process run")
    ap.add_argument("--base", type=int, default=60_000, help="instructions of the small object")
    args = ap.parse_args()
    compileall.compile_dir(str(ROOT / "pytest_ebpf"), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    tmp = Path(tempfile.mkdtemp(prefix="bench_inspect-"))
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
        sink = io.StringIO()

        def inproc(p: Path = obj_path, err: io.StringIO = sink) -> None:
            run_inspect(str(p), as_json=True, out=io.StringIO(), err=err)

        def load_only(p: Path = obj_path) -> None:
            load_object(p)

        def analyse(p: Path = obj_path) -> None:
            inspect_data(load_object(p))

        def sub(p: Path = obj_path) -> None:
            subprocess.run([sys.executable, "-m", "pytest_ebpf.cli", "inspect", "--json",
                            str(p)], check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env=env)

        def objdump(p: Path = obj_path) -> None:
            subprocess.run(["llvm-objdump-22", "-dr", str(p)], check=True,
                           stdout=subprocess.DEVNULL)

        t_in = best_of(inproc)
        t_load = best_of(load_only)
        t_an = best_of(analyse)
        t_sub = best_of(sub)
        t_od = best_of(objdump)
        rows.append((insns, n, t_load, t_an - t_load, t_in, t_sub, t_od))
        if args.profile and factor == 1:
            prof = cProfile.Profile()
            prof.enable()
            inproc()
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    print(f"{'insns':>8} {'progs':>6} {'load':>8} {'analyse':>8} {'inspect':>8} "
          f"{'subproc':>8} {'objdump':>8} {'in/od':>6} {'sub/od':>6}")
    for insns, n, t_load, t_an, t_in, t_sub, t_od in rows:
        print(f"{insns:>8} {n:>6} {t_load:>8.3f} {t_an:>8.3f} {t_in:>8.3f} {t_sub:>8.3f} "
              f"{t_od:>8.3f} {t_in / t_od:>6.2f} {t_sub / t_od:>6.2f}")
    if len(rows) == 2:
        growth = rows[1][4] / rows[0][4]
        size = rows[1][0] / rows[0][0]
        print(f"growth: {size:.2f}x instructions -> {growth:.2f}x inspect time "
              f"(objdump {rows[1][6] / rows[0][6]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
