"""Programs with a kernel BTF target on a kernel with trampolines (Debian's 6.12, in a VM):
this host refuses fentry, fexit, fmod_ret and lsm before verification, and says so; the VM's
kernel loads them through the native loader, attaches them (``ebpf_loaded.attached``) and runs
fentry/fexit through ``ebpf_run``, whose test run calls ``bpf_fentry_test1(1)``: the values the
programs stored are the kernel's (the argument 1, the return value 2)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.analysis.rules import rule_ids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the host's items load programs")

C_DIR = Path(__file__).parent / "c"
CompileC = Callable[..., Path]

USER_TESTS = """
import pytest

pytestmark = pytest.mark.ebpf_privileged


def test_all_load(ebpf_loaded):
    for name in ("on_entry", "on_exit", "keep_return", "on_open"):
        assert ebpf_loaded.results[name].loaded, ebpf_loaded.results[name].error


def test_fentry_and_fexit_run(ebpf_loaded, ebpf_run):
    seen = ebpf_loaded.maps["seen"]
    with ebpf_loaded.attached("on_entry"), ebpf_loaded.attached("on_exit"):
        assert ebpf_run("on_entry").retval == 0
    assert seen.value(0) == 1  # bpf_fentry_test1's argument
    assert seen.value(1) == 2  # and its return value


def test_detached_programs_do_not_run(ebpf_loaded, ebpf_run):
    seen = ebpf_loaded.maps["seen"]
    seen.update(0, 0)
    ebpf_run("on_entry")
    assert seen.value(0) == 0
"""


def test_tracing_programs_load_attach_and_run_in_a_vm(pytester: pytest.Pytester,
                                                      compile_c: CompileC) -> None:
    obj = compile_c((C_DIR / "vm_tracing.c").read_text(), "vm_tracing")
    pytester.makepyfile(test_t=USER_TESTS)
    result = pytester.runpytest_subprocess(
        f"--ebpf-object={obj}", "--ebpf-kernel=6.12,host", "--ebpf-vm=auto",
        "--ebpf-checks=yes", f"--ebpf-skip-rules={','.join(rule_ids())}",
        "--ebpf-loader=native", "-rA")
    out = result.stdout.str()
    for test in ("test_all_load", "test_fentry_and_fexit_run", "test_detached_programs_do_not_run"):
        assert f"PASSED test_t.py::{test}[6.12]" in out, out[-4000:]
    for prog in ("on_entry", "on_exit", "keep_return", "on_open"):
        assert f"PASSED {obj.name}::{prog}::loads[6.12]" in out
        # the host has no trampolines: not loaded, and never called a verifier rejection
        assert f"FAILED {obj.name}::{prog}::loads[host]" in out
    assert "the kernel refused to attach a trampoline" in out
    assert "was rejected by the verifier" not in out.split("eBPF kernels in VMs")[0]
