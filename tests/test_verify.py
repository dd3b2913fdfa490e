"""Tests for ``pytest-ebpf verify`` (pytest_ebpf.cli.verify.run_verify) against the running kernel.

The command runs in a subprocess, so "nothing stays loaded" is checked from outside it. Needs
root (or CAP_BPF + CAP_SYS_ADMIN); the unprivileged case drops to ``nobody`` with ``setpriv``.
"""

from __future__ import annotations

import io
import json
import os
import re
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
from pytest_ebpf.kernel.loader import BPFFS, bpftool_path, stale_pin_dirs

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
    assert set(progs) == {"lock", "lock_exec", "lock_exec_btf"}
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
    assert "lock_exec" in text and "loaded" in text and "all 3 programs loaded" in text
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


# --- per-program verdicts: one rejected program does not hide the accepted ones ----------------

MIXED = ("bad", "good", "also_good")  # tests/c/verify_mixed.c, in object order; -DONLY=N keeps one
BAD_ERROR = "R0 invalid mem access 'map_value_or_null'"
LOADERS = ["native", pytest.param("bpftool", marks=pytest.mark.skipif(
    bpftool_path() is None, reason="bpftool is not installed"))]  # fmt: skip


@pytest.fixture(scope="module")
def mixed_obj(compile_c, public_dir: Path) -> Path:  # type: ignore[no-untyped-def]
    src: Path = compile_c((C_DIR / "verify_mixed.c").read_text(), "verify_mixed")
    dest = public_dir / "verify_mixed.o"
    shutil.copyfile(src, dest)
    return dest


@pytest.fixture(scope="module")
def alone(compile_c) -> dict[str, tuple[bool, str]]:  # type: ignore[no-untyped-def]
    """The truth: each program of verify_mixed.c compiled alone and loaded by ``bpftool -d prog
    load``, independently of pytest-ebpf. Name -> (accepted, bpftool's output)."""
    tool = bpftool_path()
    if tool is None:
        pytest.skip("bpftool is not installed: the kernel's verdicts are taken with it")
    source = (C_DIR / "verify_mixed.c").read_text()
    pin_dir = BPFFS / f"verify-truth-{os.getpid()}"
    pin_dir.mkdir()
    truth: dict[str, tuple[bool, str]] = {}
    try:
        for n, name in enumerate(MIXED, 1):
            obj: Path = compile_c(source, f"verify_only_{name}", f"-DONLY={n}")
            pin = pin_dir / name
            proc = subprocess.run([tool, "-d", "prog", "load", str(obj), str(pin)],
                                  capture_output=True, text=True, check=False, timeout=120)
            truth[name] = (proc.returncode == 0, proc.stdout + proc.stderr)
            pin.unlink(missing_ok=True)
    finally:
        pin_dir.rmdir()
    return truth


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``pytest-ebpf ARGS`` in a subprocess (argparse included)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_ebpf.cli.main", *args],
        capture_output=True, text=True, check=False, cwd=REPO, timeout=300,
    )  # fmt: skip


def _processed(log: str) -> int:
    found = re.findall(r"^processed (\d+) insns", log, re.MULTILINE)
    assert found, log
    return int(found[-1])


def test_kernel_truth(alone: dict[str, tuple[bool, str]]) -> None:
    assert {name: ok for name, (ok, _) in alone.items()} == {
        "bad": False, "good": True, "also_good": True}  # fmt: skip
    assert BAD_ERROR in alone["bad"][1]


@pytest.mark.parametrize("loader", LOADERS)
def test_each_program_has_its_own_verdict(
    mixed_obj: Path, alone: dict[str, tuple[bool, str]], loader: str
) -> None:
    before = set(k.prog_ids())
    proc = cli("verify", str(mixed_obj), "--loader", loader, "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["loader"] == loader
    progs = {p["name"]: p for p in doc["programs"]}
    assert [p["name"] for p in doc["programs"]] == list(MIXED)
    assert {name: p["loaded"] for name, p in progs.items()} == {
        name: ok for name, (ok, _) in alone.items()}  # fmt: skip
    assert progs["bad"]["error"] == BAD_ERROR and progs["bad"]["cause"] == "verifier"
    for name in ("good", "also_good"):
        assert progs[name]["error"] is None and progs[name]["cause"] is None
        assert progs[name]["verified_insns"] == _processed(alone[name][1])
    assert progs["bad"]["processed_insns"] == _processed(alone["bad"][1])
    assert "log" not in progs["bad"]

    proc = cli("verify", str(mixed_obj), "--loader", loader)
    assert proc.returncode == 1, proc.stderr
    rows = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines()[2:5]}
    assert rows == {"bad": "REJECTED", "good": "loaded", "also_good": "loaded"}, proc.stdout
    assert BAD_ERROR in proc.stdout and "unloaded again" not in proc.stdout
    assert proc.stdout.endswith("\n1 of 3 programs rejected\n")
    assert proc.stderr == ""
    assert not wait_unloaded(set(k.prog_ids()) - before)
    assert not stale_pin_dirs()


def _same_load(log: str) -> str:
    """*log* without what differs between two loads: timings and kernel addresses of maps."""
    log = re.sub(r"^verification time \d+ usec$", "", log, flags=re.M)
    return re.sub(r"0xffff[0-9a-f]{12}", "ADDR", log)


def _logs(text: str) -> dict[str, tuple[str, str]]:
    """``--log`` output: program -> (header verdict, log text)."""
    parts = re.split(r"^--- verifier log of (\S+) \((\S+)\): (.+) ---$", text, flags=re.M)
    return {parts[i]: (parts[i + 2], parts[i + 3].strip("\n"))
            for i in range(1, len(parts), 4)}  # fmt: skip


@pytest.mark.parametrize("loader", LOADERS)
def test_log_prints_the_kernels_log(
    mixed_obj: Path, alone: dict[str, tuple[bool, str]], loader: str
) -> None:
    proc = cli("verify", str(mixed_obj), "--loader", loader, "--log")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith(f"{mixed_obj}: 3 programs, loader {loader}")
    logs = _logs(proc.stdout)
    assert list(logs) == list(MIXED)
    verdict, bad_log = logs["bad"]
    assert verdict == "REJECTED"
    assert BAD_ERROR in bad_log.splitlines()  # the kernel's own line, as bpftool alone shows it
    assert re.search(r"^; return \(int\)\*v; @ verify_mixed\S*\.c:\d+$", bad_log, re.M)  # BTF
    assert _processed(bad_log) == _processed(alone["bad"][1])
    for name in ("good", "also_good"):
        assert logs[name][0] == "loaded"
        assert _processed(logs[name][1]) == _processed(alone[name][1])

    one = cli("verify", str(mixed_obj), "--loader", loader, "--log", "good")
    assert one.returncode == 1, one.stderr
    assert list(_logs(one.stdout)) == ["good"]
    assert _same_load(_logs(one.stdout)["good"][1]) == _same_load(logs["good"][1])

    js = cli("verify", str(mixed_obj), "--loader", loader, "--json", "--log", "bad")
    assert js.returncode == 1, js.stderr
    progs = {p["name"]: p for p in json.loads(js.stdout)["programs"]}
    assert BAD_ERROR in progs["bad"]["log"].splitlines()
    assert "log" not in progs["good"] and "log" not in progs["also_good"]


def _still_loaded(ids: set[int], names: set[str]) -> set[int]:
    """Of *ids*, the programs named one of *names* still loaded after the kernel's delay."""
    ours = set()
    for prog_id in ids:
        try:
            with k.prog_get_fd_by_id(prog_id) as fd:
                if k.prog_info(fd).name in names:
                    ours.add(prog_id)
        except k.KernelError:
            continue  # gone already
    return wait_unloaded(ours)


def test_log_of_an_unknown_program_is_one_error(mixed_obj: Path) -> None:
    before = set(k.prog_ids())
    proc = cli("verify", str(mixed_obj), "--log", "NOPE")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"error: {mixed_obj}: no program 'NOPE' to print the log of; programs: bad, good, "
        "also_good; fix: --log NAME with one of them, or --log alone for every program\n"
    )
    # refused before anything was loaded: none of the object's programs appeared and stayed
    # (other xdist workers load and unload programs meanwhile, so only this object's count)
    assert not _still_loaded(set(k.prog_ids()) - before, {"bad", "good", "also_good"})
    near = cli("verify", str(mixed_obj), "--log", "goood")
    assert near.returncode == 2 and "did you mean 'good'?" in near.stderr



def test_optional_sections_are_skipped_unless_asked_for(compile_c: Callable[..., Path]) -> None:
    """A '?' program is listed as skipped (exit 0: not a failure); --optional loads it."""
    path = compile_c((C_DIR / "ld_optional.c").read_text(), "ld_optional")
    out, err = io.StringIO(), io.StringIO()
    assert run_verify(path, out=out, err=err) == 0, err.getvalue()
    rows = {line.split()[0]: line for line in out.getvalue().splitlines()[2:4]}
    assert "skipped (?)" in rows["optional_prog"] and "loaded" in rows["always"]
    assert "1 program(s) in '?' sections not loaded (libbpf's marker); --optional loads them" \
        in out.getvalue()
    out = io.StringIO()
    assert run_verify(path, out=out, err=err, optional=True, as_json=True) == 0
    doc = json.loads(out.getvalue())
    assert {p["name"]: p["loaded"] for p in doc["programs"]} == {"optional_prog": True,
                                                                 "always": True}
