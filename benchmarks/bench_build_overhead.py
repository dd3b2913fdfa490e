"""Benchmark: what ``--ebpf-crate`` costs on an up-to-date crate, beyond cargo's own no-op build.

The example workspace is copied with its built ``target/`` to a temporary directory (so other
builds of ``example_project/`` do not disturb it) and built once. Then, in the same run,
interleaved (each round runs every contender once; the best of ``--rounds`` counts):

(a) whole pytest sessions, each a fresh ``python -m pytest`` process on one trivial test that
    uses ``ebpf_build``:

    * ``--ebpf-crate=.../lock-ebpf``, with the toolchain cache (the default),
    * the same with ``PYTEST_EBPF_TOOLCHAIN_CACHE=off`` (every toolchain question asked, as
      before the cache),
    * ``--ebpf-object=<the built object>`` (no cargo, no toolchain question);

(b) the build step alone, in-process: ``pytest_ebpf.build.cargo.run_build`` with the cache, and
    without it, against the bare cargo command it runs (same argv, same environment: the
    plugin's rustflags, when it sets them), as a subprocess; 3x as many rounds.

The cache is warm (the first, untimed build fills it), as on every session but the first.
Each figure is printed twice: the best round, and the median over rounds of the difference
(a) or ratio (b) within a round, which a busy machine disturbs less.
Target: (b) within 1.2x of the bare cargo no-op. Run:
``.venv/bin/python benchmarks/bench_build_overhead.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_ebpf.build.cargo import BuildRequest, BuildResult, run_build  # noqa: E402
from pytest_ebpf.build.project import find_crate  # noqa: E402

EXAMPLE = ROOT / "example_project"
SWITCH = "PYTEST_EBPF_TOOLCHAIN_CACHE"
TEST = """
def test_build(ebpf_build):
    assert ebpf_build.path.is_file()
"""


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int
                ) -> dict[str, list[float]]:
    """Wall times of each contender over *rounds* rounds, each round running all once."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def paired(times: dict[str, list[float]], a: str, b: str,
           op: Callable[[float, float], float]) -> float:
    """The median over rounds of ``op(a, b)``: each round's pair ran back to back, so a busy
    moment of the machine weighs on both."""
    return statistics.median(op(x, y) for x, y in zip(times[a], times[b]))


def copy_workspace(tmp: Path) -> Path:
    ws = tmp / "ws"
    shutil.copytree(EXAMPLE, ws, symlinks=True, ignore=shutil.ignore_patterns(
        "tests", ".pytest*", "incremental", "bpfeb-unknown-none"))
    return ws


def build(request: BuildRequest) -> BuildResult:
    outcome = run_build(request)
    if not isinstance(outcome, BuildResult):
        sys.exit(outcome.render())
    return outcome


def bare_env(result: BuildResult) -> dict[str, str]:
    """The environment run_build gives cargo: the rustflags it sets, when it sets them."""
    env = {k: v for k, v in os.environ.items() if k != SWITCH}
    flags: tuple[str, ...] = getattr(result, "rustflags", ())
    if flags:
        env["CARGO_ENCODED_RUSTFLAGS"] = "\x1f".join(flags)
        env.pop("RUSTFLAGS", None)
    return env


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11,
                    help="rounds of the interleaved sessions (the build steps get 3x as many)")
    args = ap.parse_args()
    os.environ.pop(SWITCH, None)
    tmp = Path(tempfile.mkdtemp(prefix="bench_build_overhead-"))
    ws = copy_workspace(tmp)
    crate = ws / "lock-ebpf"
    request = BuildRequest(crate=find_crate(str(crate), ws))
    result = build(request)  # builds what the copy lacks; fills the cache
    argv, cwd, env = list(result.command), crate, bare_env(result)
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    again = build(request)
    if "Compiling" in proc.stderr or again.duration > 2 * result.duration + 1:
        sys.exit("the bare cargo command and run_build do not share cargo's fingerprint:\n"
                 + proc.stderr)
    session_dir = tmp / "session"
    session_dir.mkdir()
    (session_dir / "test_trivial.py").write_text(TEST)
    (session_dir / "pytest.ini").write_text("[pytest]\n")
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_trivial.py"]
    off = {**os.environ, SWITCH: "off"}

    def session(option: str, environ: dict[str, str] | None = None) -> None:
        subprocess.run([*pytest, option], cwd=session_dir, env=environ, check=True,
                       stdout=subprocess.DEVNULL)

    def uncached_build() -> None:
        os.environ[SWITCH] = "off"
        try:
            build(request)
        finally:
            del os.environ[SWITCH]

    sessions = interleaved({
        "crate": lambda: session(f"--ebpf-crate={crate}"),
        "crate, no cache": lambda: session(f"--ebpf-crate={crate}", off),
        "object": lambda: session(f"--ebpf-object={result.object_path}"),
    }, args.rounds)
    steps = interleaved({
        "run_build": lambda: build(request),
        "run_build, no cache": uncached_build,
        "bare cargo": lambda: subprocess.run(argv, cwd=cwd, env=env, check=True,
                                             capture_output=True),
    }, 3 * args.rounds)
    shutil.rmtree(tmp, ignore_errors=True)

    ms = 1000.0
    best = {name: min(t) for name, t in {**sessions, **steps}.items()}
    print(f"(a) pytest session, one test using ebpf_build; {args.rounds} rounds")
    print(f"{'session':<26} {'best':>8} {'over --ebpf-object':>19} {'(median of rounds)':>19}")
    for name, label in (("object", "--ebpf-object"), ("crate", "--ebpf-crate"),
                        ("crate, no cache", "--ebpf-crate, cache off")):
        over = best[name] - best["object"]
        median = paired(sessions, name, "object", lambda x, y: x - y)
        print(f"{label:<26} {best[name] * ms:>5.0f} ms {over * ms:>16.0f} ms "
              f"{median * ms:>16.0f} ms")
    print()
    print(f"(b) build step on the up-to-date crate; {3 * args.rounds} rounds")
    print(f"{'step':<34} {'best':>8} {'/ bare cargo':>13} {'(median of rounds)':>19}")
    for name, label in (("bare cargo", "bare cargo no-op (same command)"),
                        ("run_build", "run_build"),
                        ("run_build, no cache", "run_build, cache off")):
        ratio = best[name] / best["bare cargo"]
        median = paired(steps, name, "bare cargo", lambda x, y: x / y)
        print(f"{label:<34} {best[name] * ms:>5.0f} ms {ratio:>12.2f}x {median:>18.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
