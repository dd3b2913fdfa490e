"""Static verdicts on lock-ebpf: what the verifier would object to, found without root."""

from pytest_ebpf import (
    assert_btf,
    assert_helpers,
    assert_license,
    assert_max_instructions,
    assert_no_indirect_calls,
    assert_no_undefined_calls,
    assert_rules,
    assert_sections,
    assert_stack_usage,
)


def test_sections(ebpf_object):
    assert_sections(ebpf_object, ["lock", "lock_exec", "lock_exec_btf"], exact=True)


def test_stack_fits_the_verifier(ebpf_object):
    assert_stack_usage(ebpf_object, limit=512)


def test_no_indirect_or_undefined_calls(ebpf_object):
    assert_no_indirect_calls(ebpf_object)
    assert_no_undefined_calls(ebpf_object)


def test_btf_and_license(ebpf_object):
    assert_btf(ebpf_object)
    assert_license(ebpf_object, "Dual MIT/GPL")


def test_small_enough_for_unprivileged_loaders(ebpf_object):
    assert_max_instructions(ebpf_object, limit=4096)


def test_only_the_helpers_we_mean(ebpf_object):
    assert_helpers(ebpf_object, programs=["lock", "lock_exec"], allowed=["bpf_map_lookup_elem"])
    assert_helpers(ebpf_object, programs="lock_exec_btf",
                   allowed=["bpf_get_current_pid_tgid", "bpf_ringbuf_output"])


def test_loads_on_the_kernels_we_ship_to(ebpf_object):
    """Every rule, judged the way Debian 12's 6.1 and the 6.12 backport judge."""
    for kernel in ("6.1", "6.12"):
        assert_rules(ebpf_object, kernel=kernel)
