"""lock-ebpf in the running kernel: the verifier's verdict, and XDP decisions on test packets."""

import socket
import struct

import pytest

from pytest_ebpf.analysis.stack import program_stack

pytestmark = pytest.mark.ebpf_privileged

XDP_DROP, XDP_PASS = 1, 2
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ethernet(ethertype: int, payload: bytes) -> bytes:
    return MAC_B + MAC_A + struct.pack("!H", ethertype) + payload


def ipv4(src: str, dst: str = "10.0.0.9") -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
    return ethernet(0x0800, header + struct.pack("!HHHH", 1234, 53, 8, 0))


def ipv6() -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, 8, 17, 64,
                         socket.inet_pton(socket.AF_INET6, "fd00::1"),
                         socket.inet_pton(socket.AF_INET6, "fd00::2"))
    return ethernet(0x86DD, header + bytes(8))


def arp() -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MAC_A,
                       socket.inet_aton("10.0.0.1"), bytes(6), socket.inet_aton("10.0.0.9"))
    return ethernet(0x0806, body)


@pytest.fixture
def blocked(ebpf_loaded):
    """10.0.0.1 in BLOCKLIST (key: the address bytes as in the packet) for one test."""
    blocklist = ebpf_loaded.maps["BLOCKLIST"]
    key = socket.inet_aton("10.0.0.1")
    blocklist.update(key, struct.pack("=I", 1))
    yield "10.0.0.1"
    blocklist.delete(key)


def test_both_programs_pass_the_verifier(ebpf_loaded):
    for name in ("lock", "lock_exec"):
        result = ebpf_loaded.results[name]
        assert result.loaded, result.error
        assert result.verified_insns and result.verified_insns > 0


def test_blocked_source_is_dropped(ebpf_run, blocked):
    assert ebpf_run("lock", data=ipv4(blocked)).retval == XDP_DROP
    assert ebpf_run("lock", data=ipv4("10.0.0.2")).retval == XDP_PASS


@pytest.mark.parametrize("packet", [ipv6(), arp(), ipv4("10.0.0.1")[:20]],
                         ids=["ipv6", "arp", "truncated-ipv4"])
def test_other_traffic_passes(ebpf_run, blocked, packet):
    assert ebpf_run("lock", data=packet).retval == XDP_PASS


def test_verifier_stack_depth_matches_static_analysis(ebpf_loaded, ebpf_object):
    prog = ebpf_object.program("lock")
    static = program_stack(ebpf_object, prog)
    verifier = ebpf_loaded.results["lock"].stack_depth
    assert list(verifier) == [static.frames[f.name] for f in prog.functions]
