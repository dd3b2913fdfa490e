"""Tests for ``pytest-ebpf verify`` (pytest_ebpf.cli.verify.run_verify) against the running kernel.

The command runs in a subprocess, so "nothing stays loaded" is checked from outside it. Needs
root (or CAP_BPF + CAP_SYS_ADMIN); the unprivileged case drops to ``nobody`` with ``setpriv``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from kernel_wait import wait_unloaded

from pytest_ebpf.cli.verify import run_verify
from pytest_ebpf.kernel import bpf as k
from pytest_ebpf.kernel.loader import stale_pin_dirs

C_DIR = Path(__file__).parent / "c"
REPO = Path(__file__).resolve().parent.parent

_AVAILABLE, _WHY = k.bpf_available()
pytestmark = pytest.mark.skipif(
    not _AVAILABLE, reason=f"loading eBPF programs needs root or CAP_BPF here: {_WHY}"
)

SCRIPT = (
    "from pytest_ebpf.cli.verify import run_verify; import sys; "
    "sys.exit(run_verify(sys.argv[1], as_json=True))"
)




@pytest.fixture(scope="module")
def public_dir() -> Iterator[Path]:
    """A directory every user can read (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="pytest-ebpf-verify-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def example_obj(public_dir: Path, example_object: Callable[[str], Path]) -> Path:
    dest = public_dir / "lock.o"
    shutil.copyfile(example_object("bpfel-unknown-none"), dest)
    dest.chmod(0o644)
    return dest


@pytest.fixture(scope="module")
def rejected_obj(compile_c, public_dir: Path) -> Path:  # type: ignore[no-untyped-def]
    src: Path = compile_c((C_DIR / "ld_reject.c").read_text(), "ld_reject")
    dest = public_dir / "ld_reject.o"
    shutil.copyfile(src, dest)
    return dest


@pytest.fixture(scope="module")
def corrupt_obj(public_dir: Path) -> Path:
    dest = public_dir / "corrupt.o"
    dest.write_bytes(b"\x7fELF" + b"\x02\x01\x01" + bytes(9) + b"garbage" * 10)
    return dest


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)],
        capture_output=True, text=True, check=False, cwd=REPO, timeout=300,
    )  # fmt: skip


def test_example_object_verifies(example_obj: Path) -> None:
    before = set(k.prog_ids())
    proc = verify(example_obj)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"path", "loader", "programs"}
    assert doc["path"] == str(example_obj) and doc["loader"] == "native"
    progs = {p["name"]: p for p in doc["programs"]}
    assert set(progs) == {"lock", "lock_exec"}
    for p in progs.values():
        assert {"name", "loaded", "error", "stack_depth", "processed_insns",
                "verified_insns"} <= set(p)  # fmt: skip
        assert p["loaded"] is True and p["error"] is None
        assert p["processed_insns"] > 0 and p["verified_insns"] > 0
    assert len(progs["lock"]["stack_depth"]) == 2
    assert not wait_unloaded(set(k.prog_ids()) - before)
    assert not stale_pin_dirs()


def test_rejected_object_exits_1(rejected_obj: Path) -> None:
    proc = verify(rejected_obj)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["loader"] == "bpftool" if shutil.which("bpftool") else "native"
    (prog,) = doc["programs"]
    assert prog["name"] == "no_null_check" and prog["loaded"] is False
    assert prog["error"] == "R0 invalid mem access 'map_value_or_null'"
    assert prog["verified_insns"] is None
    assert not stale_pin_dirs()


def test_corrupt_object_exits_2(corrupt_obj: Path) -> None:
    proc = verify(corrupt_obj)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {corrupt_obj}: ")


def test_missing_file_exits_2(public_dir: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    missing = public_dir / "nope.o"
    assert run_verify(missing, out=out, err=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith(f"error: {missing}: ") and err.getvalue().count("\n") == 1


def test_text_table(example_obj: Path, rejected_obj: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_verify(example_obj, out=out, err=err) == 0
    text = out.getvalue()
    assert "program" in text and "stack depth" in text and "verified" in text
    assert "lock_exec" in text and "loaded" in text and "all 2 programs loaded" in text
    out = io.StringIO()
    assert run_verify(rejected_obj, out=out, err=err, loader="native") == 1
    assert "REJECTED" in out.getvalue()
    assert "R0 invalid mem access 'map_value_or_null'" in out.getvalue()
    assert "1 of 1 programs rejected" in out.getvalue()
    assert err.getvalue() == ""


def test_json_one_line_or_pretty(rejected_obj: Path) -> None:
    compact, pretty, err = io.StringIO(), io.StringIO(), io.StringIO()
    assert run_verify(rejected_obj, as_json=True, out=compact, err=err, loader="native") == 1
    assert run_verify(rejected_obj, as_json=True, pretty=True, out=pretty, err=err,
                      loader="native") == 1
    assert compact.getvalue().count("\n") == 1
    assert pretty.getvalue().startswith('{\n  "path": ')
    assert json.loads(compact.getvalue()) == json.loads(pretty.getvalue())


def test_unprivileged_exits_2(example_obj: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to drop to user nobody")
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}  # the package needs only stdlib
    proc = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
         python, "-c", SCRIPT, str(example_obj)],
        capture_output=True, text=True, check=False, cwd="/", env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot load eBPF programs here: ")
    assert lines[0].endswith("; fix: run as root or grant CAP_BPF")
    assert "EPERM" in lines[0]
