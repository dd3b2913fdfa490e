"""lock-ebpf in the running kernel: the verifier's verdict, and XDP decisions on test packets."""

import socket
import struct
import subprocess

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from pytest_ebpf.analysis.stack import program_stack

pytestmark = pytest.mark.ebpf_privileged

XDP_DROP, XDP_PASS = 1, 2
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def ipv4(src: str, dst: str = "10.0.0.9") -> Ether:
    return Ether(src=MAC_A, dst=MAC_B) / IP(src=src, dst=dst) / UDP(sport=1234, dport=53)


def ipv6() -> Ether:
    return Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fd00::1", dst="fd00::2") / UDP()


def arp() -> Ether:
    return Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst="10.0.0.9")


@pytest.fixture
def blocked(ebpf_loaded):
    """10.0.0.1 in BLOCKLIST (key: the address bytes as in the packet) for one test."""
    blocklist = ebpf_loaded.maps["BLOCKLIST"]
    key = socket.inet_aton("10.0.0.1")
    blocklist.update(key, struct.pack("=I", 1))
    yield "10.0.0.1"
    blocklist.delete(key)


def test_every_program_passes_the_verifier(ebpf_loaded):
    for name in ("lock", "lock_exec", "lock_exec_btf"):
        result = ebpf_loaded.results[name]
        assert result.loaded, result.error
        assert result.verified_insns and result.verified_insns > 0


def test_blocked_source_is_dropped(ebpf_run, blocked):
    assert ebpf_run("lock", data=ipv4(blocked)).retval == XDP_DROP
    assert ebpf_run("lock", data=ipv4("10.0.0.2")).retval == XDP_PASS


@pytest.mark.parametrize("packet", [ipv6(), arp(), bytes(ipv4("10.0.0.1"))[:20]],
                         ids=["ipv6", "arp", "truncated-ipv4"])
def test_other_traffic_passes(ebpf_run, blocked, packet):
    assert ebpf_run("lock", data=packet).retval == XDP_PASS


def test_verifier_stack_depth_matches_static_analysis(ebpf_loaded, ebpf_object):
    prog = ebpf_object.program("lock")
    static = program_stack(ebpf_object, prog)
    verifier = ebpf_loaded.results["lock"].stack_depth
    assert list(verifier) == [static.frames[f.name] for f in prog.functions]


def test_exec_events_reach_user_space(ebpf_loaded):
    """lock_exec_btf, attached to the kernel's sched_process_exec, reports the pid of a
    process we start in the EXECS ring buffer (and nothing once detached)."""
    execs = ebpf_loaded.maps["EXECS"]
    execs.records()  # whatever came before
    with ebpf_loaded.attached("lock_exec_btf"):
        child = subprocess.Popen(["/bin/true"])
        child.wait()
    later = subprocess.Popen(["/bin/true"])
    later.wait()
    pids = [struct.unpack("=I", record)[0] for record in execs.records()]
    assert child.pid in pids
    assert later.pid not in pids
