"""The privileged tier as a user meets it: gating, fixtures, and nothing left in the kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import pytest
from kernel_wait import wait_unloaded

from pytest_ebpf.kernel.loader import stale_pin_dirs

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.ebpf_privileged]

USES_KERNEL = """
import os, signal
import pytest

def test_loaded(ebpf_loaded):
    assert ebpf_loaded.results["lock"].loaded
    (ebpf_loaded.results["lock"].prog_id is not None) and open("ids.txt", "a").write(
        f"{ebpf_loaded.results['lock'].prog_id}\\n")

def test_fails_after_loading(ebpf_run):
    assert ebpf_run("lock", data=bytes(64)).retval == 99   # fails on purpose

def test_interrupt(ebpf_loaded):
    if os.environ.get("PE_INTERRUPT"):
        os.kill(os.getpid(), signal.SIGINT)
"""


@pytest.mark.parametrize("interrupt", [False, True], ids=["failing-test", "ctrl-c"])
def test_nothing_left_behind(pytester: pytest.Pytester,
                             example_object: Callable[[str], Path], interrupt: bool) -> None:
    obj = example_object("bpfel-unknown-none")
    pytester.makepyfile(test_k=USES_KERNEL)
    env = {**os.environ, "PE_INTERRUPT": "1" if interrupt else ""}
    proc = subprocess.run([sys.executable, "-m", "pytest", f"--ebpf-object={obj}",
                           "--ebpf-privileged=require", "-p", "no:cacheprovider"],
                          cwd=pytester.path, env=env, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout
    if interrupt:
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
        assert "KeyboardInterrupt" in out
    else:
        assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
        assert "1 failed" in out and "2 passed" in out
    ids = {int(x) for x in (pytester.path / "ids.txt").read_text().split()}
    assert ids, out
    assert not wait_unloaded(ids, timeout=3.0), "programs still loaded after the session"
    assert not stale_pin_dirs(), "pin directories left in /sys/fs/bpf"


def test_rejected_program_fails_with_the_verifier_reason(pytester: pytest.Pytester,
                                                         compile_c: Callable[..., Path]) -> None:
    source = r"""
#define SEC(n) __attribute__((section(n), used))
static unsigned int (*bpf_get_prandom_u32)(void) = (void *)7;
SEC("xdp") int bad(void *ctx) {
    int *p = (int *)(unsigned long)bpf_get_prandom_u32();   /* a scalar used as a pointer */
    return *p;
}
char LICENSE[] SEC("license") = "GPL";
"""
    obj = compile_c(source, "reject_scalar")
    pytester.makepyfile(test_r="""
from pytest_ebpf import assert_rejected

def test_run(ebpf_run):
    ebpf_run("bad", data=bytes(64))

def test_expected_rejection(ebpf_loaded):
    assert_rejected(ebpf_loaded.results["bad"], r"invalid mem access")
""")
    result = pytester.runpytest_subprocess(f"--ebpf-object={obj}", "--ebpf-privileged=require")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*program bad (xdp) was rejected by the verifier*",
                                 "*invalid mem access*"])


def test_disabled_privileged_tests_skip_with_the_reason(pytester: pytest.Pytester,
                                                        example_object: Callable[[str], Path]
                                                        ) -> None:
    pytester.makepyfile(test_p="""
import pytest

@pytest.mark.ebpf_privileged
def test_k():
    pass
""")
    result = pytester.runpytest(f"--ebpf-object={example_object('bpfel-unknown-none')}",
                                "--ebpf-privileged=no", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*privileged eBPF tests disabled by --ebpf-privileged=no*"])


def test_unprivileged_user_skips_or_fails_with_the_exact_reason(
        request: pytest.FixtureRequest, example_object: Callable[[str], Path]) -> None:
    """As user nobody: auto skips with the reason; require turns it into an error."""
    if os.geteuid() != 0:
        pytest.fail("this test switches to user nobody and needs root to do so")
    # outside pytest's 0700 temp tree, which nobody cannot enter
    base = Path(tempfile.mkdtemp(prefix="pe-nobody-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    tmp_path = base
    work = tmp_path / "w"
    work.mkdir()
    (work / "test_p.py").write_text(
        "import pytest\n\n@pytest.mark.ebpf_privileged\ndef test_k():\n    pass\n")
    obj = tmp_path / "lock.o"
    obj.write_bytes(example_object("bpfel-unknown-none").read_bytes())
    os.chmod(tmp_path, 0o777)
    os.chmod(work, 0o777)
    os.chmod(obj, 0o644)
    site = subprocess.run([sys.executable, "-c", "import pytest,os;print(os.path.dirname("
                           "os.path.dirname(pytest.__file__)))"], capture_output=True,
                          text=True, check=True).stdout.strip()
    # the user's privileged test and the three generated loads[host] checks (the static
    # generated checks pass without privileges)
    from pytest_ebpf.analysis.rules import RULES

    static = 3 * len([r for r in RULES if r.id != "budget"])  # 3 programs, one kernel
    for mode, expect in (("auto", f"{static} passed, 4 skipped"),
                         ("require", f"{static} passed, 4 errors")):
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "/usr/bin/python3", "-m", "pytest", f"--ebpf-object={obj}",
             f"--ebpf-privileged={mode}", "--ebpf-checks=yes", "-rs", "-p", "no:cacheprovider",
             str(work)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{site}", "HOME": str(work)},
            cwd=work, capture_output=True, text=True, timeout=120)
        assert expect in proc.stdout, proc.stdout + proc.stderr
        assert "run as root or grant CAP_BPF" in proc.stdout, proc.stdout


def test_run_takes_scapy_packets_and_names_bad_input(
        pytester: pytest.Pytester, example_object: Callable[[str], Path]) -> None:
    """``data=`` takes bytes or anything with ``__bytes__`` (a scapy packet); anything else is
    one clear failure naming the accepted forms."""
    obj = example_object("bpfel-unknown-none")
    pytester.makepyfile(test_scapy="""
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

def test_packet(ebpf_run):
    pkt = Ether() / IP(src="10.0.0.7", dst="10.0.0.9") / UDP()
    assert ebpf_run("lock", data=pkt).retval == 2  # XDP_PASS: not blocked
    assert ebpf_run("lock", data=bytearray(bytes(pkt))).retval == 2

def test_not_input(ebpf_run):
    ebpf_run("lock", data=12345)
""")
    result = pytester.runpytest_subprocess(f"--ebpf-object={obj}", "--ebpf-privileged=require",
                                           "-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*ebpf_run('lock', data=...): a int is not input; give bytes or an object with "
        "__bytes__ (e.g. a scapy packet: Ether()/IP()/UDP())*"])


def test_map_sizes_option(pytester: pytest.Pytester,
                          compile_c: Callable[..., Path]) -> None:
    """--ebpf-map-sizes sizes maps for ebpf_loaded and ebpf_load (a ring buffer of size 0 in
    the object); a malformed value is a usage error naming the form."""
    obj = compile_c((ROOT / "tests" / "c" / "ld_ringbuf.c").read_text(), "ld_ringbuf")
    pytester.makepyfile(test_rb="""
def test_loaded(ebpf_loaded):
    assert ebpf_loaded.results["emit"].loaded, ebpf_loaded.results["emit"].error
    assert ebpf_loaded.maps["events"].max_entries == 8192

def test_load(ebpf_load):
    assert ebpf_load("emit").results["emit"].loaded
""")
    ok = pytester.runpytest_subprocess(f"--ebpf-object={obj}", "--ebpf-map-sizes=events=8192",
                                       "--ebpf-privileged=require", "-p", "no:cacheprovider",
                                       timeout=300)
    ok.assert_outcomes(passed=2)
    bad = pytester.runpytest_subprocess(f"--ebpf-object={obj}", "--ebpf-map-sizes=events",
                                        "-p", "no:cacheprovider", timeout=300)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--ebpf-map-sizes=events: 'events' is not NAME=ENTRIES (a "
                              "positive number), e.g. EVENTS=4096*"])
