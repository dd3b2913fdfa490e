"""Kernel profiles: the static verdicts judged by each kernel's rules, checked against the
running kernel's verifier (the truth here) and against the measurements of Debian's 6.1 and
6.12 kernels quoted in the issue (proven in VMs by the kernel-matrix work).

``tests/c/prof_stack.c`` holds call chains at the 512-byte limit where kernels differ: 16-byte
frame rounding with the JIT (6.9), private stacks of tracing types on x86-64 (6.13), and a tail
call that turns private stacks off.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.analysis.assertions import assert_rules, assert_stack_usage
from pytest_ebpf.analysis.profiles import (
    CHANGES,
    NAMED,
    ProfileError,
    host_profile,
    named_profile,
    parse_kernels,
)
from pytest_ebpf.analysis.report import EbpfAssertionError
from pytest_ebpf.analysis.rules import RULES, judge, rule
from pytest_ebpf.kernel import bpf as k
from pytest_ebpf.kernel.loader import load_all
from pytest_ebpf.obj.load import load_object
from pytest_ebpf.obj.model import EbpfObject

C_DIR = Path(__file__).parent / "c"
CompileC = Callable[..., Path]
_AVAILABLE, _WHY = k.bpf_available()
needs_bpf = pytest.mark.skipif(not _AVAILABLE,
                               reason=f"loading eBPF programs needs root or CAP_BPF: {_WHY}")

PROGRAMS = ("xdp_40_456", "xdp_40_472", "xdp_304_304", "tp_304_304", "kprobe_304_304_tail")


@pytest.fixture(scope="module")
def prof_path(compile_c: CompileC) -> Path:
    return compile_c((C_DIR / "prof_stack.c").read_text(), "prof_stack")


@pytest.fixture(scope="module")
def prof(prof_path: Path) -> EbpfObject:
    return load_object(prof_path)


def _static(obj: EbpfObject, kernel: str) -> dict[str, bool]:
    """Program -> does the profile *kernel* predict that it loads?"""
    profile = parse_kernels(kernel)[0]
    return {v.program.name: not v.errors(profile) for v in judge(obj, [profile])}


# --- against the running kernel ---------------------------------------------------------------


@needs_bpf
def test_host_verdicts_agree_with_the_kernel_at_the_limit(prof: EbpfObject) -> None:
    """Both directions at 512 bytes: 48 + 464 = 512 loads, 48 + 480 = 528 does not; a
    tracepoint's 304-byte frames get private stacks (loads), an XDP program's do not, and a
    tail call turns them off. The kernel says so; the host profile must say the same."""
    predicted = _static(prof, "host")
    with load_all(prof, loader="native") as loaded:
        kernel = {name: r.loaded for name, r in loaded.results.items()}
        errors = {name: r.error or "" for name, r in loaded.results.items()}
        depths = {name: r.stack_depth for name, r in loaded.results.items()}
    assert set(kernel) == set(PROGRAMS)
    assert predicted == kernel, (predicted, kernel, errors)
    assert kernel == {"xdp_40_456": True, "xdp_40_472": False, "xdp_304_304": False,
                      "tp_304_304": True, "kprobe_304_304_tail": False}
    host = host_profile()
    for v in judge(prof, [host]):
        name = v.program.name
        # the verifier's own per-frame figures are the static frames
        assert tuple(depths[name]) == v.stacks["host"].chain_frames, name
        if not kernel[name]:
            finding = v.errors(host)[0]
            assert finding.check == "stack_combined_too_large"
            # the kernel's wording and numbers, word for word
            expected = re.search(r"combined stack size of \d+ calls is \d+\. Too large",
                                 errors[name])
            assert expected is not None and expected.group(0) in finding.message, (
                errors[name], finding.message)


@needs_bpf
def test_assert_stack_usage_follows_the_kernel(prof: EbpfObject) -> None:
    """The assertion helper says what the kernel says: no false alarm at exactly 512."""
    assert_stack_usage(prof, programs=["xdp_40_456", "tp_304_304"])
    with pytest.raises(EbpfAssertionError) as info:
        assert_stack_usage(prof, programs="xdp_40_472")
    assert "48 + 480 = 528 bytes (frames rounded to 16 with the JIT)" in str(info.value)
    with pytest.raises(EbpfAssertionError) as old:
        assert_stack_usage(prof, programs="xdp_40_456", kernel="6.1")
    assert "on 6.1" in str(old.value) and "64 + 480 = 544" in str(old.value)


# --- the named profiles: Debian's 6.1 and 6.12 as measured in VMs ------------------------------


def test_named_profiles_judge_by_their_kernels_rules(prof: EbpfObject) -> None:
    assert _static(prof, "6.1") == dict.fromkeys(PROGRAMS, False)
    assert _static(prof, "6.12") == {**dict.fromkeys(PROGRAMS, False), "xdp_40_456": True}
    assert _static(prof, "6.18") == {"xdp_40_456": True, "xdp_40_472": False,
                                     "xdp_304_304": False, "tp_304_304": True,
                                     "kprobe_304_304_tail": False}
    six_one = named_profile("6.1")
    [v] = [v for v in judge(prof, [six_one, named_profile("6.18")])
           if v.program.name == "xdp_40_456"]
    assert v.summary() == ("rejected on 6.1 (frames rounded to 32: 64 + 480 = 544 > 512); "
                           "loads on 6.18")
    assert v.stacks["6.1"].total == 544 and v.stacks["6.18"].total == 512


def test_private_stacks_need_the_jit_and_x86_64_or_a_new_arm64(prof: EbpfObject) -> None:
    tp = prof.program("tp_304_304")
    jit_off = host_profile(release="6.18.0", jit_file=Path("/dev/null"), arch="x86_64")
    assert not jit_off.jit and jit_off.frame_round == 32
    assert not jit_off.private_stack("tracepoint")
    arm_old = host_profile(release="6.16.1", jit_file=Path("/proc/self/stat"), arch="aarch64")
    arm_new = host_profile(release="6.17.0", jit_file=Path("/proc/self/stat"), arch="aarch64")
    assert not arm_old.private_stack("tracepoint") and arm_new.private_stack("tracepoint")
    assert named_profile("6.18").private_stack("tracing", "trace_fentry")
    assert not named_profile("6.18").private_stack("tracing", "trace_iter")
    assert not named_profile("6.18").private_stack("xdp")
    verdicts = judge(prof, [jit_off])
    assert [v.program.name for v in verdicts if not v.errors(jit_off)] == []
    assert next(v for v in verdicts if v.program is tp).stacks["host"].private == frozenset()


def test_the_rule_table() -> None:
    """Every version-dependent rule names its release and the commit that brought it."""
    for change in CHANGES:
        assert re.fullmatch(r"[0-9a-f]{12}", change.commit), change
        assert change.subject and change.rule and (4, 0) <= change.version <= (6, 18)
    assert named_profile("6.1").frame_round == 32 and named_profile("6.12").frame_round == 16
    assert named_profile("5.10").insn_limit == 1_000_000
    assert named_profile("5.10").last_helper == 155 and named_profile("6.6").last_helper == 211
    assert tuple(sorted(NAMED, key=lambda n: tuple(map(int, n.split("."))))) == NAMED
    assert {r.id for r in RULES} >= {"stack", "calls", "btf", "features", "budget"}
    with pytest.raises(KeyError, match="rules are stack"):
        rule("nope")


def test_bad_profile_names_are_one_clear_error() -> None:
    with pytest.raises(ProfileError, match=r"unknown kernel profile '7\.0'; use host or one of "
                                           r"5\.10, 5\.15, 6\.1, 6\.6, 6\.12, 6\.18"):
        parse_kernels("host,7.0")
    with pytest.raises(ProfileError, match="cannot read the kernel version"):
        host_profile(release="weird")
    assert [p.name for p in parse_kernels("6.1, host,6.1")] == ["6.1", "host"]
    assert parse_kernels("6.1", stack_frame=16)[0].frame_round == 16


# --- features by release -----------------------------------------------------------------------

V4 = """
#include "obj_bpf.h"
SEC("socket")
int signed_load(void *skb)
{
    volatile signed char c = 1;
    long wide = c; /* a sign-extending load with cpu v4 */
    return wide > 0;
}
static __noinline long step(u32 i, void *ctx) { return 0; }
SEC("socket")
int loops(void *skb)
{
    bpf_loop(4, step, 0, 0);
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_features_newer_than_the_kernel(compile_c: CompileC) -> None:
    obj = load_object(compile_c(V4, "features", "-mcpu=v4"))
    assert any(i.is_cpu_v4 for fn in obj.program("signed_load").functions for i in fn.insns)
    verdicts = {v.program.name: v for v in judge(obj, parse_kernels("6.1,6.6,5.15"))}
    sl = verdicts["signed_load"]
    assert [(f.check, f.kernel) for f in sl.findings] == [("cpu_v4_insn", "6.1"),
                                                          ("cpu_v4_insn", "5.15")]
    assert "since 6.6" in sl.findings[0].message and "-mcpu=v3" in sl.findings[0].fix
    lp = verdicts["loops"]
    assert [(f.check, f.kernel) for f in lp.findings] == [("helper_unavailable", "5.15")]
    assert "bpf_loop (helper 181)" in lp.findings[0].message
    assert_rules(obj, kernel="6.6")
    with pytest.raises(EbpfAssertionError, match="cpu v4 instruction"):
        assert_rules(obj, kernel="6.1", rules="features")


@needs_bpf
def test_features_the_host_has_load(compile_c: CompileC) -> None:
    obj = load_object(compile_c(V4, "features", "-mcpu=v4"))
    assert all(not v.errors(host_profile()) for v in judge(obj, [host_profile()]))
    with load_all(obj, loader="native") as loaded:
        assert all(r.loaded for r in loaded.results.values()), loaded.results


# --- inspect -----------------------------------------------------------------------------------


def _inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_ebpf.cli.main", "inspect", *args],
                          capture_output=True, text=True, check=False)


def test_inspect_per_kernel_and_strict(prof_path: Path) -> None:
    proc = _inspect(str(prof_path), "--kernel", "6.1,6.18")
    assert proc.returncode == 0, proc.stderr
    assert ("xdp_40_456: rejected on 6.1 (frames rounded to 32: 64 + 480 = 544 > 512); "
            "loads on 6.18") in proc.stdout
    doc = json.loads(_inspect(str(prof_path), "--kernel", "6.1,6.18", "--json").stdout)
    progs = {p["name"]: p for p in doc["programs"]}
    assert progs["tp_304_304"]["verdicts"] == {"6.1": "rejected", "6.18": "loads"}
    assert progs["tp_304_304"]["stacks"]["6.18"]["private"] == ["t304", "t304_inner"]
    assert progs["tp_304_304"]["stack"] == progs["tp_304_304"]["stacks"]["6.1"]
    one = json.loads(_inspect(str(prof_path), "--kernel", "6.12", "--json").stdout)
    assert [k["name"] for k in one["kernels"]] == ["6.12"]
    assert one["programs"][0]["stack"]["frame_round"] == 16
    strict = _inspect(str(prof_path), "--kernel", "6.12", "--strict")
    assert strict.returncode == 1
    bad = _inspect(str(prof_path), "--kernel", "7.0")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --kernel 7.0: unknown kernel")


def test_inspect_strict_passes_a_clean_object(compile_c: CompileC) -> None:
    clean = compile_c('#include "obj_bpf.h"\nSEC("socket") int ok(void *s) { return 0; }\n'
                      'char LICENSE[] SEC("license") = "GPL";\n', "clean")
    assert _inspect(str(clean), "--strict").returncode == 0
