"""What a user of pytest-ebpf checks about the build of lock-ebpf."""

import subprocess


def test_object_is_a_btf_carrying_ebpf_object(ebpf_build):
    kind = subprocess.run(["file", "-b", ebpf_build.object_path], capture_output=True,
                          text=True, check=True).stdout
    assert kind.startswith("ELF 64-bit LSB relocatable, eBPF")
    assert ebpf_build.target == "bpfel-unknown-none"


def test_programs_and_sections(ebpf_object):
    sections = {p.name: p.section for p in ebpf_object.programs}
    assert sections == {"lock": "xdp", "lock_exec": "tracepoint/sched/sched_process_exec",
                        "lock_exec_btf": "tp_btf/sched_process_exec"}
    assert {m.name for m in ebpf_object.maps} == {"BLOCKLIST", "EXEC_COUNT", "EXECS"}
    assert ebpf_object.license == "Dual MIT/GPL"
