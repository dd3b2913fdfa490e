"""The README's first command on a fresh machine: no rustup, an empty HOME, a bare PATH.

A warm machine hides install steps (a bpf-linker built by an earlier session, a venv, crates in
``~/.cargo``). This test copies the checkout (tracked and untracked, not ignored, files: what a
clone of this change would hold), then runs ``./run-example.sh`` as the README says a new user
does::

    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
        HOME=$(mktemp -d) ./run-example.sh

with one addition: a decoy ``llvm-config`` of another LLVM (14) first on PATH. bpf-linker's
build script takes the first ``llvm-config`` on PATH unless the set-up pins its LLVM, so this
test fails when the pin in ``scripts/setup.sh`` is removed (the linker then links against the
decoy's directory and the build stops at ``cannot find -lLLVM``). Only the Debian packages are
shared with the machine: bpf-linker, the venv, the crates and the example's build are made
anew. Slow (about 5 minutes: bpf-linker is compiled from crates.io).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DECOY_LLVM = Path("/usr/lib/llvm-14/bin/llvm-config")
SETUP_TIMEOUT = 40 * 60


def _copy_checkout(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def _llvm_major(linker: Path) -> str:
    proc = subprocess.run([str(linker), "--llvm-args=--version", "-o", os.devnull, os.devnull],
                          capture_output=True, text=True, check=False)
    match = re.search(r"LLVM version (\d+)\.", proc.stdout + proc.stderr)
    return match.group(1) if match else f"unknown ({proc.stdout + proc.stderr!r})"


@pytest.mark.slow
def test_run_example_on_a_fresh_home_with_a_decoy_llvm_config(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test runs the set-up as a new user does, which needs root for apt "
                    "and bpffs: run the suite as root (CI does)", pytrace=False)
    if not DECOY_LLVM.is_file():
        pytest.fail(f"{DECOY_LLVM} is missing: the decoy needs llvm-14 (this image ships it)",
                    pytrace=False)
    repo, home, decoy = tmp_path / "repo", tmp_path / "home", tmp_path / "decoy"
    for d in (repo, home, decoy):
        d.mkdir()
    _copy_checkout(repo)
    (decoy / "llvm-config").symlink_to(DECOY_LLVM)
    env = {"PATH": f"{decoy}:{BARE_PATH}", "HOME": str(home)}

    proc = subprocess.run([str(repo / "run-example.sh"), "-p", "no:cacheprovider"],
                          env=env, cwd=repo, capture_output=True, text=True,
                          timeout=SETUP_TIMEOUT, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]

    # The set-up really built a linker here, on rustc's LLVM, not the decoy's.
    linker = home / ".cargo" / "bin" / "bpf-linker"
    assert linker.is_file(), output[-3000:]
    rustc = subprocess.run(["/usr/bin/rustc", "-vV"], capture_output=True, text=True, check=True)
    want = re.search(r"LLVM version: (\d+)\.", rustc.stdout)
    assert want is not None
    assert _llvm_major(linker) == want.group(1)
    # No rustup anywhere: cargo was Debian's, and the example's tests ran and passed.
    assert "no rustup: cargo on PATH" in output
    summary = re.search(r"=+ (\d+) passed[^\n]*=+", output)
    assert summary is not None, output[-3000:]
    assert "failed" not in summary.group(0) and "error" not in summary.group(0)
    assert int(summary.group(1)) >= 10
    assert (repo / "example_project" / "target").is_dir()
