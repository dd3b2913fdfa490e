"""The assertion helpers on real clang objects: right verdicts, and messages a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf import (
    EbpfAssertionError,
    assert_helpers,
    assert_license,
    assert_max_instructions,
    assert_no_indirect_calls,
    assert_no_undefined_calls,
    assert_sections,
    assert_stack_usage,
    load_object,
)
from pytest_ebpf.obj.model import EbpfObject

pytestmark = pytest.mark.slow

DEEP = r"""
#define SEC(n) __attribute__((section(n), used))
static long (*bpf_probe_read_kernel)(void *dst, unsigned int size, const void *src) = (void *)113;

static __attribute__((noinline)) int leaf(int x) {
    volatile char buf[300];
    bpf_probe_read_kernel((void *)buf, sizeof(buf), (void *)(long)x);
    return buf[x & 255];
}

static __attribute__((noinline)) int middle(int x) {
    volatile char buf[200];
    buf[x & 127] = (char)x;
    return leaf(x + 1) + buf[3];
}

SEC("xdp") int deep(void *ctx) {
    volatile char buf[100];
    buf[1] = 1;
    return middle((int)(long)ctx) + buf[1];
}

SEC("tp/syscalls/sys_enter_openat") int shallow(void *ctx) { return 0; }

char LICENSE[] SEC("license") = "MIT";
"""

CALLS = r"""
#define SEC(n) __attribute__((section(n), used))
extern int ext_fn(int);
static long (*bpf_trace_printk)(const char *fmt, unsigned int size, ...) = (void *)6;

SEC("xdp") int indirect(void *ctx) {
    asm volatile("r1 = 0; callx r1" ::: "r0", "r1", "r2", "r3", "r4", "r5");
    return 2;
}
SEC("xdp") int undef(void *ctx) { return ext_fn(1) ? 1 : 2; }
SEC("kprobe/do_sys_open") int printer(void *ctx) {
    char fmt[] = "hi";
    bpf_trace_printk(fmt, sizeof(fmt));
    return 0;
}
char LICENSE[] SEC("license") = "MIT";
"""


@pytest.fixture(scope="module")
def deep(compile_c: Callable[..., Path]) -> EbpfObject:
    return load_object(compile_c(DEEP, "deep"))


@pytest.fixture(scope="module")
def calls(compile_c: Callable[..., Path]) -> EbpfObject:
    return load_object(compile_c(CALLS, "calls"))


def test_stack_over_limit_names_chain_instruction_source_and_fix(deep: EbpfObject) -> None:
    with pytest.raises(EbpfAssertionError) as info:
        assert_stack_usage(deep)
    text = str(info.value)
    lines = text.splitlines()
    assert lines[0].startswith("assert_stack_usage: 1 program(s) over the 512-byte stack on ")
    assert lines[2].startswith("deep (xdp): ") and "limit 512" in lines[2]
    assert "chain: deep (104 B) -> middle (200 B) -> leaf (304 B)" in text or \
        ("chain: deep (" in text and "-> middle (" in text and "-> leaf (" in text)
    assert "insn " in text and " of leaf (.text+" in text
    assert "at " in text and "deep-" in text and "buf" in text  # file:line: source text
    assert "fix: move the 304-byte buffer in `leaf` to a per-CPU array map" in text
    assert lines[-1].startswith("remedy: ")
    assert "shallow" not in text


def test_stack_limit_and_program_selection(deep: EbpfObject) -> None:
    assert_stack_usage(deep, programs="shallow")
    assert_stack_usage(deep.program("shallow"))
    assert_stack_usage(deep, limit=4096)


def test_indirect_call_reported_with_instruction(calls: EbpfObject) -> None:
    with pytest.raises(EbpfAssertionError) as info:
        assert_no_indirect_calls(calls)
    text = str(info.value)
    assert text.startswith("assert_no_indirect_calls: 1 indirect call(s)")
    assert "indirect:" in text and "callx r1" in text
    assert "fix: " in text
    assert_no_indirect_calls(calls, programs=["undef", "printer"])


def test_undefined_call_reported(calls: EbpfObject) -> None:
    with pytest.raises(EbpfAssertionError) as info:
        assert_no_undefined_calls(calls)
    assert "ext_fn" in str(info.value)
    assert_no_undefined_calls(calls, programs="indirect")


def test_gpl_only_helper_under_mit_license(calls: EbpfObject) -> None:
    with pytest.raises(EbpfAssertionError) as info:
        assert_license(calls)
    assert "bpf_trace_printk" in str(info.value) and "'MIT'" in str(info.value)
    with pytest.raises(EbpfAssertionError, match="license is 'MIT', expected 'GPL'"):
        assert_license(calls, "GPL", gpl_compatible=False)


def test_helpers_allowed_set(calls: EbpfObject) -> None:
    with pytest.raises(EbpfAssertionError, match=r"printer .* calls bpf_trace_printk"):
        assert_helpers(calls, allowed=["bpf_map_lookup_elem"])
    assert_helpers(calls, allowed=[6])


def test_max_instructions(deep: EbpfObject) -> None:
    with pytest.raises(EbpfAssertionError, match=r"deep \(xdp\): \d+ instructions, limit 5"):
        assert_max_instructions(deep, limit=5)
    assert_max_instructions(deep)


def test_sections(deep: EbpfObject) -> None:
    assert_sections(deep, ["deep", "tp/syscalls/sys_enter_openat"], exact=True)
    with pytest.raises(EbpfAssertionError) as info:
        assert_sections(deep, ["deep", "kprobe/x"], exact=True)
    text = str(info.value)
    assert "missing: kprobe/x" in text and "unexpected program: shallow" in text
    assert "remedy: the object has: deep (xdp), shallow (tp/syscalls/sys_enter_openat)" in text


def test_unknown_program_name_lists_the_available_ones(deep: EbpfObject) -> None:
    with pytest.raises(LookupError, match="deep"):
        assert_stack_usage(deep, programs="nope")


def test_failure_in_a_user_test_reads_well(pytester: pytest.Pytester,
                                           compile_c: Callable[..., Path]) -> None:
    obj = compile_c(DEEP, "deep")
    pytester.makepyfile(test_user="""
from pytest_ebpf import assert_stack_usage

def test_stack(ebpf_object):
    assert_stack_usage(ebpf_object)
""")
    result = pytester.runpytest(f"--ebpf-object={obj}")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert_stack_usage: 1 program(s) over the 512-byte stack*"])
    assert "assertions.py" not in result.stdout.str()
