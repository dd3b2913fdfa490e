"""Throughput of ``pytest_ebpf.kernel.bpf.prog_test_run`` against ``bpftool prog run``.

Runs one XDP program (``r0 = XDP_PASS; exit``) on a 64-byte packet N times through the ctypes
wrapper (one ``bpf(BPF_PROG_TEST_RUN)`` per call, repeat=1) and M times through ``bpftool prog
run pinned ...`` (one process per run), then prints runs/second for each and the ratio. The
product target is a ratio of at least 100.

Needs root (or CAP_BPF + CAP_SYS_ADMIN), bpftool and a bpf filesystem (mounted if missing).
Usage: ``python benchmarks/bench_test_run.py [--runs 20000] [--bpftool-runs 200]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_ebpf.kernel import bpf as k

XDP_PASS = 2


def _xdp_pass_prog() -> bytes:
    mov_r0 = struct.pack("<BBhi", 0xB7, 0, 0, XDP_PASS)
    exit_ = struct.pack("<BBhi", 0x95, 0, 0, 0)
    return mov_r0 + exit_


def _bench_ctypes(fd: k.Fd, packet: bytes, runs: int) -> float:
    for _ in range(200):  # warm up
        k.prog_test_run(fd, packet)
    start = time.perf_counter()
    for _ in range(runs):
        res = k.prog_test_run(fd, packet)
    elapsed = time.perf_counter() - start
    assert res.retval == XDP_PASS and res.data_out == packet
    return runs / elapsed


def _bench_bpftool(pin: Path, packet: bytes, runs: int, workdir: Path) -> float:
    data_in = workdir / "in.bin"
    data_out = workdir / "out.bin"
    data_in.write_bytes(packet)
    cmd = ["bpftool", "prog", "run", "pinned", str(pin), "data_in", str(data_in)]
    cmd += ["data_out", str(data_out)]
    subprocess.run(cmd, check=True, capture_output=True)  # warm up
    start = time.perf_counter()
    for _ in range(runs):
        subprocess.run(cmd, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    assert data_out.read_bytes() == packet
    return runs / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--bpftool-runs", type=int, default=200)
    args = parser.parse_args(argv)

    ok, why = k.bpf_available()
    if not ok:
        print(f"cannot run: {why}", file=sys.stderr)
        return 2
    if shutil.which("bpftool") is None:
        print("cannot run: bpftool not installed", file=sys.stderr)
        return 2
    bpffs = Path("/sys/fs/bpf")
    if not os.path.ismount(bpffs):
        subprocess.run(["mount", "-t", "bpf", "bpf", str(bpffs)], check=True)

    packet = bytes(range(64))
    out = k.prog_load(k.BPF_PROG_TYPE["xdp"], _xdp_pass_prog(), "GPL", name="bench_pass")
    assert out.fd is not None, out.log
    pin_dir = bpffs / f"pytest-ebpf-bench-{os.getpid()}"
    pin_dir.mkdir()
    pin = pin_dir / "prog"
    try:
        with out.fd as fd, tempfile.TemporaryDirectory() as tmp:
            k.obj_pin(fd, pin)
            ctypes_rate = _bench_ctypes(fd, packet, args.runs)
            bpftool_rate = _bench_bpftool(pin, packet, args.bpftool_runs, Path(tmp))
    finally:
        if pin.exists():
            pin.unlink()
        pin_dir.rmdir()

    ratio = ctypes_rate / bpftool_rate
    print(f"prog_test_run (ctypes): {args.runs} runs, {ctypes_rate:,.0f} runs/s")
    print(f"bpftool prog run:       {args.bpftool_runs} runs, {bpftool_rate:,.1f} runs/s")
    print(f"ratio: {ratio:,.0f}x (target >= 100x) -> {'OK' if ratio >= 100 else 'BELOW TARGET'}")
    return 0 if ratio >= 100 else 1


if __name__ == "__main__":
    sys.exit(main())
