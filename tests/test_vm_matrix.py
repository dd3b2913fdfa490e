"""Privileged tests on other kernels, in VMs (``--ebpf-kernel=6.1,6.12,host``), and
``pytest-ebpf verify --kernel``.

The truth is the kernels' own: each VM test records ``os.uname().release`` from inside, which
must be the release of the Debian package the image cache resolved; the verdicts near the stack
limit are the verifiers' (6.1 rounds frames to 32 and rejects ``xdp_40_456`` with its
"combined stack size" line; 6.12 and the host round to 16 and load it). The failure modes run
for real too: qemu missing from PATH, a kernel that cannot be fetched, a VM stopped at its
timeout; each fails that kernel's items with one line and the host's items still pass.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.analysis.rules import rule_ids
from pytest_ebpf.vm.images import fetch

C_DIR = Path(__file__).parent / "c"
CompileC = Callable[..., Path]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the host's items load programs")

USER_TESTS = """
import os
import pytest


@pytest.mark.ebpf_privileged
def test_near_the_limit(ebpf_loaded, ebpf_kernel, record_property):
    record_property("release", os.uname().release)
    result = ebpf_loaded.results["xdp_40_456"]
    if ebpf_kernel == "6.1":
        assert not result.loaded
        assert "combined stack size of 2 calls is 544" in result.error
    else:
        assert result.loaded, result.error


@pytest.mark.ebpf_privileged
def test_runs_in_the_kernel(ebpf_run, ebpf_kernel):
    if ebpf_kernel != "6.1":
        assert ebpf_run("xdp_40_456", data=bytes(64)).retval == 2


@pytest.mark.ebpf_privileged
def test_fails_inside(ebpf_kernel):
    assert ebpf_kernel != "6.12", "this assertion failed inside the VM"


def test_static_only(ebpf_object):
    assert ebpf_object.programs
"""
ALL_RULES = ",".join(rule_ids())


@pytest.fixture(scope="module")
def releases() -> dict[str, str]:
    """The kernels' releases as the image cache resolved them from Debian's packages."""
    return {"6.1": fetch("6.1").release, "6.12": fetch("6.12").release,
            "host": platform.release()}


@pytest.fixture
def project(pytester: pytest.Pytester, compile_c: CompileC) -> Path:
    obj = compile_c((C_DIR / "prof_stack.c").read_text(), "prof_stack")
    pytester.makepyfile(test_k=USER_TESTS)
    return obj


def _run(pytester: pytest.Pytester, obj: Path, *args: str) -> tuple[pytest.RunResult, Path]:
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        f"--ebpf-object={obj}", "--ebpf-vm=auto", "--ebpf-checks=yes",
        f"--ebpf-skip-rules={ALL_RULES}", f"--junitxml={xml}", "-rA", *args)
    return result, xml


def _cases(xml: Path) -> dict[str, ET.Element]:
    root = ET.parse(xml).getroot()
    return {f"{c.get('classname')}::{c.get('name')}": c for c in root.iter("testcase")}


def _property(case: ET.Element, name: str) -> str | None:
    for prop in case.iter("property"):
        if prop.get("name") == name:
            return prop.get("value")
    return None


def test_privileged_items_run_on_each_named_kernel(pytester: pytest.Pytester, project: Path,
                                                   releases: dict[str, str]) -> None:
    result, xml = _run(pytester, project, "--ebpf-kernel=6.1,6.12,host")
    out = result.stdout.str()
    # the user's privileged tests: one item per kernel, each in its kernel
    cases = _cases(xml)
    for kernel in ("6.1", "6.12", "host"):
        case = cases[f"test_k::test_near_the_limit[{kernel}]"]
        assert _property(case, "release") == releases[kernel], kernel
    assert "test_k::test_static_only" in cases  # not privileged: once, on the host
    assert not any(k.startswith("test_k::test_static_only[") for k in cases)
    # the loads checks: the verifiers' verdicts near the stack limit
    assert f"PASSED {project.name}::xdp_40_456::loads[host]" in out
    assert f"PASSED {project.name}::xdp_40_456::loads[6.12]" in out
    assert f"FAILED {project.name}::xdp_40_456::loads[6.1]" in out
    assert "combined stack size of 2 calls is 544. Too large" in out
    # a failure inside the VM comes back with the guest's assertion
    assert "FAILED test_k.py::test_fails_inside[6.12]" in out
    assert "this assertion failed inside the VM" in out
    result.assert_outcomes(passed=len([o for o in out.splitlines() if o.startswith("PASSED")]),
                           failed=len([o for o in out.splitlines() if o.startswith("FAILED")]))
    # one boot per kernel, and the summary says which kernel each was
    assert f"kernel 6.1 ({releases['6.1']}, Debian " in out
    assert f"kernel 6.12 ({releases['6.12']}, Debian " in out
    assert out.count("booted once") == 2
    assert "loaded@6.1" in out and "loaded@6.12" in out


def test_under_xdist_each_kernel_boots_once(pytester: pytest.Pytester, project: Path,
                                            releases: dict[str, str]) -> None:
    result, xml = _run(pytester, project, "--ebpf-kernel=6.12,host", "-n", "2")
    out = result.stdout.str()
    assert out.count("booted once") == 1, out
    cases = _cases(xml)
    assert _property(cases["test_k::test_near_the_limit[6.12]"], "release") == \
        releases["6.12"]
    assert "FAILED test_k.py::test_fails_inside[6.12]" in out
    assert f"PASSED {project.name}::xdp_40_456::loads[6.12]" in out


def test_without_qemu_the_kernels_items_fail_with_the_fix(
        pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("busybox",):  # everything the VMs need but qemu
        (bare / tool).symlink_to(f"/bin/{tool}")
    monkeypatch.setenv("PATH", str(bare))
    result, _ = _run(pytester, project, "--ebpf-kernel=6.1,host")
    out = result.stdout.str()
    assert "qemu-system-x86_64 is not on PATH" in out
    assert "fix: apt-get install qemu-system-x86" in out
    assert "FAILED test_k.py::test_near_the_limit[6.1]" in out
    assert "PASSED test_k.py::test_near_the_limit[host]" in out
    assert f"PASSED {project.name}::xdp_40_456::loads[host]" in out
    assert "Traceback" not in out


def test_a_kernel_that_cannot_be_fetched_fails_its_items(
        pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.setenv("PYTEST_EBPF_KERNEL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PYTEST_EBPF_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    monkeypatch.setenv("PYTEST_EBPF_DEBIAN_SECURITY_MIRROR", "http://127.0.0.1:9/security")
    result, _ = _run(pytester, project, "--ebpf-kernel=6.12,host")
    out = result.stdout.str()
    mine = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "PASSED"))
            and ("test_k.py" in ln or "xdp_40_456" in ln)]
    assert mine and all(("[6.12]" in ln) == ln.startswith("FAILED") for ln in mine), mine
    assert "kernel 6.12:" in out and "127.0.0.1:9" in out
    assert "PASSED test_k.py::test_near_the_limit[host]" in out
    assert "Traceback" not in out


def test_a_vm_past_its_timeout_is_stopped_and_says_so(pytester: pytest.Pytester,
                                                      project: Path) -> None:
    result, _ = _run(pytester, project, "--ebpf-kernel=6.12,host", "--ebpf-vm-timeout=1")
    out = result.stdout.str()
    assert "the VM did not finish within 1 s and was stopped" in out
    assert "fix: raise --ebpf-vm-timeout" in out
    assert "FAILED test_k.py::test_near_the_limit[6.12]" in out
    assert "PASSED test_k.py::test_near_the_limit[host]" in out
    leftover = subprocess.run(["pgrep", "-f", f"pytest_ebpf.job={pytester.path}"],
                              capture_output=True, text=True)
    assert leftover.stdout == ""


def test_named_kernels_without_an_image_are_profiles_only(pytester: pytest.Pytester,
                                                          project: Path) -> None:
    result, _ = _run(pytester, project, "--ebpf-kernel=5.15,host", "-k", "static")
    out = result.stdout.str()
    assert "5.15: profile only (no VM image for it; VM kernels: 6.1, 6.12)" in out
    assert "loads[5.15]" not in out


def test_vm_options_are_checked(pytester: pytest.Pytester, project: Path) -> None:
    result, _ = _run(pytester, project, "--ebpf-kernel=6.12", "--ebpf-vm-timeout=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--ebpf-vm-timeout=soon: give a number of seconds above 0" in result.stderr.str()
    result, _ = _run(pytester, project, "--ebpf-vm=maybe")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "use one of auto, no" in result.stderr.str()


# ---------------------------------------------------------------------------------------------
# pytest-ebpf verify --kernel
# ---------------------------------------------------------------------------------------------


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_ebpf.cli.main", "verify", *args],
                          capture_output=True, text=True, timeout=900)


def test_verify_prints_a_program_by_kernel_matrix(compile_c: CompileC,
                                                  releases: dict[str, str]) -> None:
    obj = compile_c((C_DIR / "prof_stack.c").read_text(), "prof_stack")
    matrix = _verify(str(obj), "--kernel", "6.1,6.12,host", "--json")
    assert matrix.returncode == 1, matrix.stderr  # some programs are rejected
    doc = json.loads(matrix.stdout)
    by_kernel = {d["kernel"]: d for d in doc["kernels"]}
    assert list(by_kernel) == ["6.1", "6.12", "host"]
    for kernel, release in releases.items():
        assert by_kernel[kernel]["release"] == release
    plain = json.loads(_verify(str(obj), "--json").stdout)
    host = by_kernel["host"]
    assert [(p["name"], p["loaded"]) for p in host["programs"]] == \
        [(p["name"], p["loaded"]) for p in plain["programs"]]
    verdict = {k: {p["name"]: p for p in d["programs"]} for k, d in by_kernel.items()}
    assert not verdict["6.1"]["xdp_40_456"]["loaded"]
    assert verdict["6.1"]["xdp_40_456"]["error"] == \
        "combined stack size of 2 calls is 544. Too large"
    assert verdict["6.12"]["xdp_40_456"]["loaded"]
    # text: one row per program, one column per kernel, the decisive lines after
    text = _verify(str(obj), "--kernel", "6.1,6.12")
    lines = text.stdout.splitlines()
    assert lines[0].endswith(f"kernels 6.1 ({releases['6.1']}), 6.12 ({releases['6.12']})")
    assert lines[1].split() == ["program", "6.1", "6.12"]
    assert any(ln.startswith("xdp_40_456") and "REJECTED" in ln and "loaded" in ln
               for ln in lines)
    assert "xdp_40_456 on 6.1: combined stack size of 2 calls is 544. Too large" in lines


def test_verify_with_one_vm_kernel_keeps_the_verify_json_shape(
        compile_c: CompileC, releases: dict[str, str]) -> None:
    obj = compile_c((C_DIR / "prof_stack.c").read_text(), "prof_stack")
    one = json.loads(_verify(str(obj), "--kernel", "6.12", "--json").stdout)
    plain = json.loads(_verify(str(obj), "--json").stdout)
    assert set(plain) <= set(one)
    assert one["kernel"] == "6.12" and one["release"] == releases["6.12"]
    assert set(one["programs"][0]) == set(plain["programs"][0])


def test_verify_names_unknown_kernels() -> None:
    bad = _verify("/nonexistent.o", "--kernel", "5.10,host")
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("error: --kernel 5.10,host: no VM image for 5.10; fix: name "
                                  "host and/or 6.1, 6.12")


def test_verify_names_a_kernel_that_gave_no_verdicts(compile_c: CompileC,
                                                     tmp_path: Path) -> None:
    obj = compile_c((C_DIR / "prof_stack.c").read_text(), "prof_stack")
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "busybox").symlink_to("/bin/busybox")  # everything the VMs need but qemu
    proc = subprocess.run([sys.executable, "-m", "pytest_ebpf.cli.main", "verify", str(obj),
                           "--kernel", "6.12,host"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PATH": str(bare)})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["program", "6.12", "host"]
    assert ("6.12: no verdicts: qemu-system-x86_64 is not on PATH, and kernels other than the "
            "host run in qemu VMs; fix: apt-get install qemu-system-x86") in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
