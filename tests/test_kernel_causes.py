"""The kernel tier names the real cause: a missing capability, an object libbpf cannot open, a
program type without a test run, a packet too short, an array key out of range, a mistyped
name. Each is provoked for real (a capability-limited process, the running kernel)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_ebpf import assert_helpers
from pytest_ebpf.kernel import bpf as k
from pytest_ebpf.kernel.bpf import KernelError, prog_test_run
from pytest_ebpf.kernel.loader import UnknownNameError, bpftool_path, load_all, load_program
from pytest_ebpf.obj.load import load_object

C_DIR = Path(__file__).parent / "c"
_AVAILABLE, _WHY = k.bpf_available()
needs_kernel = pytest.mark.skipif(not _AVAILABLE, reason=f"needs root or CAP_BPF: {_WHY}")
needs_bpftool = pytest.mark.skipif(bpftool_path() is None, reason="bpftool is not installed")
pytestmark = pytest.mark.slow

CAUSES = r"""
#include "obj_bpf.h"
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} STATS SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2);
    __type(key, u32);
    __type(value, u64);
} SEEN SEC(".maps");

SEC("xdp") int xdp_pass(void *ctx)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&STATS, &key);
    if (v)
        *v += 1;
    v = bpf_map_lookup_elem(&SEEN, &key);
    if (v)
        *v += 1;
    return 2;
}

SEC("kprobe/do_nothing") int probe(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "GPL";
"""

NO_NET_ADMIN = ("permission denied: loading an XDP program needs CAP_BPF and CAP_NET_ADMIN; "
                "this process lacks CAP_NET_ADMIN (fix: run as root or grant CAP_NET_ADMIN)")
NO_PERFMON = ("permission denied: loading a kprobe program needs CAP_BPF and CAP_PERFMON; "
              "this process lacks CAP_PERFMON (fix: run as root or grant CAP_PERFMON)")


@pytest.fixture(scope="module")
def causes_obj(compile_c: Callable[..., Path]) -> Path:
    path: Path = compile_c(CAUSES, "causes")
    os.chmod(path, 0o644)
    return path


def _without(caps: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """*args* as root, less CAP_SYS_ADMIN and *caps* (e.g. ``net_admin``): a process with
    CAP_BPF but not everything."""
    if os.geteuid() != 0:
        pytest.fail("this test drops capabilities from root and needs root")
    return subprocess.run(
        ["setpriv", "--inh-caps=-all", f"--bounding-set=-sys_admin,-{caps}", *args],
        capture_output=True, text=True, timeout=300, check=False, cwd=cwd,
    )  # fmt: skip


LOAD_SCRIPT = """
import json, sys
from pytest_ebpf.kernel.loader import load_all
from pytest_ebpf.obj.load import load_object
with load_all(load_object(sys.argv[1]), loader=sys.argv[2]) as lo:
    print(json.dumps({n: [r.loaded, r.cause, r.error, r.why] for n, r in lo.results.items()}))
"""


def _load_without(caps: str, obj: Path, loader: str) -> dict[str, Any]:
    proc = _without(caps, sys.executable, "-c", LOAD_SCRIPT, str(obj), loader)
    assert proc.returncode == 0, proc.stderr
    results: dict[str, Any] = json.loads(proc.stdout)
    return results


@needs_kernel
@pytest.mark.parametrize("loader", ["native", pytest.param("bpftool", marks=needs_bpftool)])
def test_missing_cap_net_admin_is_named(causes_obj: Path, loader: str) -> None:
    results = _load_without("net_admin", causes_obj, loader)
    loaded, cause, error, why = results["xdp_pass"]
    assert (loaded, cause, error, why) == (False, "permission", NO_NET_ADMIN, NO_NET_ADMIN)
    if loader == "native":  # libbpf stops at the first failure; natively the kprobe loads
        assert results["probe"][0] is True


@needs_kernel
def test_missing_cap_perfmon_is_named(causes_obj: Path) -> None:
    results = _load_without("perfmon", causes_obj, "native")
    assert results["probe"][:3] == [False, "permission", NO_PERFMON]
    assert results["xdp_pass"][0] is True


@needs_kernel
def test_plugin_says_permission_not_verifier(causes_obj: Path, pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_p="def test_run(ebpf_run):\n    ebpf_run('xdp_pass', bytes(64))\n")
    os.chmod(pytester.path, 0o755)
    proc = _without("net_admin", sys.executable, "-m", "pytest", f"--ebpf-object={causes_obj}",
                    "--ebpf-privileged=require", "-p", "no:cacheprovider", cwd=pytester.path)
    out = proc.stdout
    assert "1 failed" in out, out + proc.stderr
    assert (f"program xdp_pass (xdp) was not loaded (loader native): {NO_NET_ADMIN}") in out or \
        (f"program xdp_pass (xdp) was not loaded (loader bpftool): {NO_NET_ADMIN}") in out, out
    assert "rejected by the verifier" not in out


@needs_kernel
@needs_bpftool
def test_libbpf_open_failure_is_not_a_verifier_rejection(
        compile_c: Callable[..., Path], pytester: pytest.Pytester) -> None:
    obj = compile_c((C_DIR / "ld_wrapped.c").read_text(), "ld_wrapped")
    with load_all(load_object(obj), loader="bpftool") as loaded:
        res = loaded.results["wrapped_prog"]
        assert res.cause == "open"
        assert res.why == ("bpftool/libbpf could not open the object: "
                           "libbpf: map 'WRAPPED': unknown field '__0'.")
    pytester.makepyfile(test_w="def test_run(ebpf_run):\n    ebpf_run('wrapped_prog')\n")
    result = pytester.runpytest_subprocess(f"--ebpf-object={obj}", "--ebpf-loader=bpftool",
                                           "--ebpf-privileged=require")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*program wrapped_prog (socket) was not loaded (loader bpftool):"
                                 " bpftool/libbpf could not open the object: libbpf: map*"])
    assert "rejected by the verifier" not in result.stdout.str()
    proc = subprocess.run([sys.executable, "-m", "pytest_ebpf.cli.main", "verify", "--json",
                           "--loader", "bpftool", str(obj)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["programs"][0]["cause"] == "open"
    proc = subprocess.run([sys.executable, "-m", "pytest_ebpf.cli.main", "verify", "--loader",
                           "bpftool", str(obj)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 1
    assert "NOT LOADED" in proc.stdout and "REJECTED" not in proc.stdout
    assert "bpftool/libbpf could not open the object: libbpf: map 'WRAPPED'" in proc.stdout
    assert proc.stdout.endswith("1 of 1 programs not loaded\n")


@needs_kernel
def test_test_run_of_a_kprobe_names_the_type_and_alternatives(causes_obj: Path) -> None:
    with load_program(load_object(causes_obj), "probe") as loaded, \
            pytest.raises(KernelError) as info:
        prog_test_run(loaded.prog_fd("probe"), data_in=bytes(64))
    assert info.value.errno == 524
    assert str(info.value) == (
        "BPF_PROG_TEST_RUN failed: ENOTSUPP (Operation not supported by this program or map "
        "type); the kernel cannot test-run a kprobe program (BPF_PROG_TEST_RUN has no runner "
        "for this type); fix: attach it for real (ebpf_loaded.attached(NAME) for "
        "raw_tracepoint and tp_btf programs, then trigger the event), or test its logic in an "
        "XDP, TC, socket-filter or raw_tracepoint program")


@needs_kernel
def test_short_xdp_packet_names_the_minimum(causes_obj: Path) -> None:
    with load_program(load_object(causes_obj), "xdp_pass") as loaded:
        fd = loaded.prog_fd("xdp_pass")
        with pytest.raises(KernelError, match=r"EINVAL .*; the packet is 1 byte, shorter than "
                           r"an Ethernet header: a test run of an XDP program needs at least "
                           r"ETH_HLEN = 14 bytes of data$"):
            prog_test_run(fd, data_in=b"\x01")
        assert prog_test_run(fd, data_in=bytes(14)).retval == 2


@needs_kernel
def test_ebpf_run_failures_are_one_clear_line(causes_obj: Path,
                                              pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_r="""
def test_kprobe(ebpf_run):
    ebpf_run("probe", data=bytes(64))

def test_short(ebpf_run):
    ebpf_run("xdp_pass", data=b"x")

def test_mistyped(ebpf_run):
    ebpf_run("xdp_pas", data=bytes(64))
""")
    result = pytester.runpytest_subprocess(f"--ebpf-object={causes_obj}",
                                           "--ebpf-privileged=require")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*ebpf_run('probe'): BPF_PROG_TEST_RUN failed: ENOTSUPP*the kernel cannot test-run a "
        "kprobe program*attach it for real*",
    ])
    assert "needs at least ETH_HLEN = 14 bytes" in out
    assert "no program 'xdp_pas' in the object (programs: probe, xdp_pass); did you mean " \
           "'xdp_pass'?" in out
    assert "kernel_progs.py" not in out and "Traceback" not in out


@needs_kernel
def test_array_key_out_of_range_and_full_hash(causes_obj: Path) -> None:
    with load_all(load_object(causes_obj), loader="native") as loaded:
        stats = loaded.maps["STATS"]
        stats.update(3, 1)
        with pytest.raises(KernelError, match=r"E2BIG .*; key 9 is out of range: map STATS is "
                                              r"an array of 4 entries, so its keys are 0\.\.3$"):
            stats.update(9, 1)
        seen = loaded.maps["SEEN"]
        seen.update(1, 1)
        seen.update(2, 1)
        with pytest.raises(KernelError, match=r"map SEEN is full: it holds at most 2 entries"):
            seen.update(3, 1)


@needs_kernel
def test_mistyped_names_list_the_known_ones(causes_obj: Path) -> None:
    obj = load_object(causes_obj)
    with load_all(obj, loader="native") as loaded:
        with pytest.raises(KeyError) as info:
            loaded.maps["STAT"]
        assert isinstance(info.value, UnknownNameError)
        assert str(info.value) == ("no map 'STAT' in this load; maps: SEEN, STATS; "
                                   "did you mean 'STATS'?")
        with pytest.raises(KeyError, match=r"programs: probe, xdp_pass; did you mean "
                                           r"'xdp_pass'\?"):
            loaded.results["xdp_pas"]
        with pytest.raises(LookupError, match="did you mean 'STATS'"):
            loaded.map_fd("STATs")
        assert loaded.maps.get("STAT") is None and "STATS" in loaded.maps
    with pytest.raises(LookupError, match=r"did you mean 'xdp_pass'\?"):
        load_program(obj, "xdp_pas")


def test_assert_helpers_refuses_an_unknown_helper_name(causes_obj: Path) -> None:
    obj = load_object(causes_obj)
    with pytest.raises(ValueError, match=r"unknown helper 'bpf_map_lookup_elm'; did you mean "
                                         r"'bpf_map_lookup_elem'\?"):
        assert_helpers(obj, allowed=["bpf_map_lookup_elm"])
    assert_helpers(obj, allowed=["map_lookup_elem"])  # the short form is a known name
    assert_helpers(obj, allowed=["bpf_map_lookup_elem"])


@needs_kernel
def test_prog_load_eperm_names_the_capability(causes_obj: Path) -> None:
    """The raw bpf() wrapper too: KernelError says which capability, not "grant CAP_BPF"."""
    script = ("from pytest_ebpf.kernel import bpf as k\n"
              "insns = bytes.fromhex('b700000002000000' '9500000000000000')  # r0 = 2; exit\n"
              "try:\n"
              "    k.prog_load(k.BPF_PROG_TYPE['xdp'], insns, 'GPL')\n"
              "except k.KernelError as e:\n"
              "    print(e)\n")
    proc = _without("net_admin", sys.executable, "-c", script)
    assert proc.stdout.strip() == f"BPF_PROG_LOAD failed: EPERM (Operation not permitted); " \
                                  f"{NO_NET_ADMIN}", proc.stderr
