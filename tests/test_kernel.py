"""Tests for pytest_ebpf.kernel.bpf against the running kernel (root or CAP_BPF+CAP_SYS_ADMIN
needed).

Programs are hand-assembled with the tiny helpers below; bpftool is used only to cross-check.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_ebpf.kernel import bpf as k
from pytest_ebpf.kernel.bpf import (
    BPF_ATTACH_TYPE,
    BPF_MAP_TYPE,
    BPF_PROG_TYPE,
    Fd,
    KernelError,
    parse_verifier_log,
)

_AVAILABLE, _WHY = k.bpf_available()
needs_bpf = pytest.mark.skipif(not _AVAILABLE, reason=f"bpf() unusable here: {_WHY}")
needs_bpftool = pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed")

XDP = BPF_PROG_TYPE["xdp"]
SOCKET_FILTER = BPF_PROG_TYPE["socket_filter"]
XDP_PASS = 2


# --- a test-only assembler --------------------------------------------------------------------


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def mov64_imm(dst: int, imm: int) -> bytes:
    return insn(0xB7, dst, imm=imm)


def mov64_reg(dst: int, src: int) -> bytes:
    return insn(0xBF, dst, src)


def add64_imm(dst: int, imm: int) -> bytes:
    return insn(0x07, dst, imm=imm)


def stx_dw(dst: int, off: int, src: int) -> bytes:
    return insn(0x7B, dst, src, off)


def st_w(dst: int, off: int, imm: int) -> bytes:
    return insn(0x62, dst, off=off, imm=imm)


def st_dw(dst: int, off: int, imm: int) -> bytes:
    return insn(0x7A, dst, off=off, imm=imm)


def ldx_dw(dst: int, src: int, off: int) -> bytes:
    return insn(0x79, dst, src, off)


def ldx_w(dst: int, src: int, off: int) -> bytes:
    return insn(0x61, dst, src, off)


def jne_imm(dst: int, imm: int, off: int) -> bytes:
    return insn(0x55, dst, off=off, imm=imm)


def call_helper(helper: int) -> bytes:
    return insn(0x85, imm=helper)


def call_local(rel: int) -> bytes:
    return insn(0x85, src=k.BPF_PSEUDO_CALL, imm=rel)


def ld_map_fd(dst: int, fd: int) -> bytes:
    return insn(0x18, dst, k.BPF_PSEUDO_MAP_FD, imm=fd) + insn(0)


def exit_() -> bytes:
    return insn(0x95)


RETURN_PASS = mov64_imm(0, XDP_PASS) + exit_()


def load_ok(prog_type: int, insns: bytes, **kw: object) -> Fd:
    out = k.prog_load(prog_type, insns, "GPL", **kw)  # type: ignore[arg-type]
    assert out.fd is not None, out.log
    assert out.errno == 0
    return out.fd


def bpftool_json(*args: str) -> object:
    res = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def packet(n: int = 64) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


# --- pure parts -------------------------------------------------------------------------------


def test_enum_numbers_match_uapi() -> None:
    assert BPF_PROG_TYPE["socket_filter"] == 1
    assert BPF_PROG_TYPE["xdp"] == 6
    assert BPF_PROG_TYPE["lwt_in"] == 10
    assert BPF_PROG_TYPE["tracing"] == 26
    assert BPF_PROG_TYPE["netfilter"] == 32
    assert BPF_MAP_TYPE["hash"] == 1
    assert BPF_MAP_TYPE["percpu_array"] == 6
    assert BPF_MAP_TYPE["cgroup_storage"] == 19
    assert BPF_MAP_TYPE["ringbuf"] == 27
    assert BPF_MAP_TYPE["arena"] == 33
    assert BPF_ATTACH_TYPE["cgroup_inet_ingress"] == 0
    assert BPF_ATTACH_TYPE["trace_fentry"] == 24
    assert BPF_ATTACH_TYPE["xdp"] == 37
    assert BPF_ATTACH_TYPE["netfilter"] == 45
    assert BPF_ATTACH_TYPE["trace_kprobe_session"] == 56
    assert BPF_ATTACH_TYPE["trace_uprobe_session"] == 57
    assert k.BPF_ANY == 0 and k.BPF_NOEXIST == 1 and k.BPF_EXIST == 2


def test_kernel_error_message() -> None:
    err = KernelError("BPF_PROG_LOAD", errno.EPERM)
    assert str(err) == (
        "BPF_PROG_LOAD failed: EPERM (Operation not permitted); "
        "run as root or grant CAP_BPF/CAP_SYS_ADMIN"
    )
    assert err.errno == errno.EPERM and err.command == "BPF_PROG_LOAD" and err.log == ""
    err = KernelError("BPF_BTF_LOAD", errno.EINVAL, log="magic: 0xeb9f\nInvalid kind:31\n")
    assert "\n" not in str(err)
    assert str(err).endswith("log: Invalid kind:31")
    assert isinstance(err, k.EbpfError)


def test_parse_success_log() -> None:
    log = (
        "verification time 12 usec\nstack depth 32+0+16\n"
        "processed 8 insns (limit 1000000) max_states_per_insn 0 total_states 0 "
        "peak_states 0 mark_read 0\n"
    )
    s = parse_verifier_log(log)
    assert s.processed_insns == 8
    assert s.stack_depth == (32, 0, 16)
    assert s.error_line is None
    assert s.insn_lines == []


def test_parse_failure_log() -> None:
    log = (
        "func#0 @0\n0: R1=ctx() R10=fp0\n"
        "12: (85) call bpf_map_lookup_elem#1\n"
        "13: (79) r0 = *(u64 *)(r0 +0)        ; R0=scalar()\n"
        "R0 invalid mem access 'map_value_or_null'\n"
        "processed 14 insns (limit 1000000) max_states_per_insn 0 total_states 1\n"
    )
    s = parse_verifier_log(log)
    assert s.error_line == "R0 invalid mem access 'map_value_or_null'"
    assert s.processed_insns == 14
    assert s.stack_depth == ()
    assert s.insn_lines == [
        (12, "(85) call bpf_map_lookup_elem#1"),
        (13, "(79) r0 = *(u64 *)(r0 +0)        ; R0=scalar()"),
    ]
    assert parse_verifier_log(log, failed=False).error_line is None


def test_parse_combined_stack_and_no_stats() -> None:
    log = (
        "combined stack size of 3 calls is 544. Too large\n\n"
        "verification time 5 usec\nstack depth 256+256+32\nprocessed 9 insns (limit 1000000)\n"
    )
    s = parse_verifier_log(log)
    assert s.error_line == "combined stack size of 3 calls is 544. Too large"
    assert s.stack_depth == (256, 256, 32)
    # An early rejection has no statistics at all: the last line decides.
    s = parse_verifier_log("back-edge from insn 3 to 1\n")
    assert s.processed_insns is None
    assert s.error_line == "back-edge from insn 3 to 1"
    assert parse_verifier_log("").error_line is None


def test_possible_cpus_and_value_sizes() -> None:
    n = k.possible_cpus()
    assert n >= 1
    assert os.cpu_count() is None or n >= 1
    assert k.map_value_size(BPF_MAP_TYPE["array"], 5) == 5
    assert k.map_value_size(BPF_MAP_TYPE["percpu_array"], 5) == 8 * n
    assert k.map_value_size(BPF_MAP_TYPE["lru_percpu_hash"], 16) == 16 * n
    assert k.percpu_values(b"abcd\0\0\0\0efgh\0\0\0\0", 4) == [b"abcd", b"efgh"]


def test_fd_ownership() -> None:
    r, w = os.pipe()
    os.close(w)
    fd = Fd(r)
    assert fd.fileno() == r and int(fd) == r
    with fd:
        pass
    assert fd.closed and repr(fd) == "Fd(closed)"
    fd.close()  # idempotent
    with pytest.raises(ValueError):
        fd.fileno()
    r, w = os.pipe()
    os.close(w)
    fd = Fd(r)
    del fd
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(r)


# --- against the kernel -----------------------------------------------------------------------


@needs_bpf
def test_bpf_available() -> None:
    assert k.bpf_available() == (True, "ok")


@needs_bpf
def test_xdp_pass_returns_packet_unchanged() -> None:
    with load_ok(XDP, RETURN_PASS, name="xdp_pass") as fd:
        data = packet(64)
        res = k.prog_test_run(fd, data)
        assert res.retval == XDP_PASS
        assert res.data_out == data
        assert res.ctx_out is None
        assert res.duration_ns >= 0
        res = k.prog_test_run(fd.fileno(), data, repeat=100)
        assert res.retval == XDP_PASS


@needs_bpf
def test_test_run_output_too_small_raises() -> None:
    with load_ok(XDP, RETURN_PASS) as fd, pytest.raises(KernelError) as exc:
        k.prog_test_run(fd, packet(64), data_size_out=10)
    assert exc.value.errno == errno.ENOSPC
    assert "data_out needs 64 bytes" in str(exc.value)


@needs_bpf
def test_test_run_unsupported_type_names_enotsupp() -> None:
    fd = load_ok(BPF_PROG_TYPE["kprobe"], mov64_imm(0, 0) + exit_())
    with fd, pytest.raises(KernelError) as exc:
        k.prog_test_run(fd, packet())
    assert exc.value.errno == 524
    assert str(exc.value).startswith("BPF_PROG_TEST_RUN failed: ENOTSUPP (Operation not supported")


@needs_bpf
def test_socket_filter_and_sched_cls_read_skb_len() -> None:
    # r0 = ((struct __sk_buff *)r1)->len
    prog = ldx_w(0, 1, 0) + exit_()
    with load_ok(SOCKET_FILTER, prog, name="sf_len") as fd:
        for n in (14, 60, 300):
            res = k.prog_test_run(fd, packet(n))
            # Kernel quirk: socket filters see the skb after the Ethernet header was pulled, and
            # the 14 header bytes come back zeroed in data_out.
            assert res.retval == n - 14
            assert res.data_out[14:] == packet(n)[14:]
    with load_ok(BPF_PROG_TYPE["sched_cls"], prog, name="cls_len") as fd:
        for n in (14, 60, 300):
            res = k.prog_test_run(fd, packet(n))
            assert res.retval == n
            assert res.data_out == packet(n)


@needs_bpf
def test_program_reads_map_value() -> None:
    with k.map_create(BPF_MAP_TYPE["array"], 4, 8, 4, name="vals") as m:
        prog = (
            ld_map_fd(1, m.fileno())
            + st_w(10, -4, 0)
            + mov64_reg(2, 10)
            + add64_imm(2, -4)
            + call_helper(1)  # bpf_map_lookup_elem
            + jne_imm(0, 0, 2)
            + mov64_imm(0, 0)
            + exit_()
            + ldx_dw(0, 0, 0)
            + exit_()
        )
        with load_ok(SOCKET_FILTER, prog, name="read_map") as p:
            key0 = struct.pack("<I", 0)
            assert k.prog_test_run(p, packet()).retval == 0
            for value in (7, 12345, 0xDEADBEEF):
                k.map_update(m, key0, struct.pack("<Q", value))
                assert k.prog_test_run(p, packet()).retval == value
            info = k.prog_info(p)
            assert info.map_ids == (k.map_info(m).id,)
            assert info.verified_insns > 0


@needs_bpf
def test_rejected_stack_write_returns_log() -> None:
    prog = stx_dw(10, -520, 1) + mov64_imm(0, 0) + exit_()
    out = k.prog_load(XDP, prog, "GPL")
    assert out.fd is None and not out.ok
    assert out.errno == errno.EACCES
    assert "invalid write to stack" in out.log or "invalid stack off" in out.log
    s = parse_verifier_log(out.log)
    assert s.error_line is not None
    assert "stack" in s.error_line and "520" in s.error_line
    assert s.processed_insns is not None
    assert s.insn_lines[0][0] == 0
    assert out.summary() == s


@needs_bpf
def test_rejected_uninitialised_register() -> None:
    out = k.prog_load(XDP, mov64_reg(0, 2) + exit_(), "GPL")
    assert out.fd is None and out.errno == errno.EACCES
    assert parse_verifier_log(out.log).error_line == "R2 !read_ok"


@needs_bpf
def test_rejection_without_requested_log_still_reports_it() -> None:
    out = k.prog_load(XDP, mov64_reg(0, 2) + exit_(), "GPL", log_level=0)
    assert out.fd is None and "R2 !read_ok" in out.log


@needs_bpf
def test_bpf_to_bpf_call_stack_depths() -> None:
    prog = (
        stx_dw(10, -8, 1)  # 0: main spills r1: 8 bytes of stack
        + call_local(1)  # 1: call insn 3
        + exit_()  # 2
        + st_dw(10, -16, 0)  # 3: callee: 16 bytes of stack
        + mov64_imm(0, XDP_PASS)  # 4
        + exit_()  # 5
    )
    out = k.prog_load(XDP, prog, "GPL")
    assert out.fd is not None, out.log
    with out.fd:
        s = parse_verifier_log(out.log)
        assert s.stack_depth == (8, 16)
        assert s.error_line is None
        assert k.prog_test_run(out.fd, packet()).retval == XDP_PASS


@needs_bpf
def test_combined_stack_too_large() -> None:
    prog = (
        st_dw(10, -256, 0)
        + call_local(1)
        + exit_()
        + st_dw(10, -288, 0)
        + mov64_imm(0, XDP_PASS)
        + exit_()
    )
    out = k.prog_load(XDP, prog, "GPL")
    assert out.fd is None and out.errno == errno.EACCES
    line = parse_verifier_log(out.log).error_line
    assert line is not None and line.startswith("combined stack size of 2 calls is 544")


@needs_bpf
def test_log_buffer_grows() -> None:
    # A verbose (level 2) log of a rejected program is far longer than 128 bytes.
    prog = stx_dw(10, -8, 1) + call_local(1) + exit_() + mov64_reg(0, 3) + exit_()
    out = k.prog_load(XDP, prog, "GPL", log_level=2 | 4, log_size=128)
    assert out.fd is None
    assert len(out.log) > 128
    assert parse_verifier_log(out.log).processed_insns is not None
    ok = k.prog_load(XDP, RETURN_PASS, "GPL", log_level=2 | 4, log_size=16)
    assert ok.fd is not None
    ok.fd.close()
    assert "processed 2 insns" in ok.log


@needs_bpf
def test_log_capped_at_max_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_ebpf.kernel import progs as kernel_progs

    monkeypatch.setattr(kernel_progs, "MAX_LOG_SIZE", 256)
    prog = stx_dw(10, -8, 1) + call_local(1) + exit_() + mov64_reg(0, 3) + exit_()
    out = k.prog_load(XDP, prog, "GPL", log_level=2 | 4, log_size=128)
    # The verifier verdict comes from a statistics-only reload; the log is the truncated tail.
    assert out.fd is None and out.errno == errno.EACCES
    assert out.log.startswith("[verifier log truncated to its last 256 bytes]")
    assert parse_verifier_log(out.log).processed_insns is not None
    ok = k.prog_load(XDP, RETURN_PASS, "GPL", log_level=2 | 4, log_size=128)
    assert ok.fd is not None
    ok.fd.close()


def _unprivileged_python() -> str:
    for exe in (sys.executable, "/usr/bin/python3"):
        try:
            probe = subprocess.run([exe, "-c", "pass"], user=65534, capture_output=True)
        except OSError:  # not executable by nobody (e.g. a venv under /root)
            continue
        if probe.returncode == 0:
            return exe
    pytest.skip("no Python interpreter the nobody user may execute")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_unprivileged_process_is_told_why() -> None:
    code = (
        "import struct\n"
        "from pytest_ebpf.kernel import bpf as k\n"
        "print(k.bpf_available()[1])\n"
        "try:\n"
        "    k.prog_load(6, struct.pack('<BBhi', 0x95, 0, 0, 0), 'GPL')\n"
        "except k.KernelError as e:\n"
        "    print(e)\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    res = subprocess.run(
        [_unprivileged_python(), "-c", code],
        user=65534,
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env={"PYTHONPATH": root, "PATH": os.environ.get("PATH", "")},
    )
    why, err = res.stdout.splitlines()
    assert why.startswith("bpf() denied (EPERM)")
    assert err == (
        "BPF_PROG_LOAD failed: EPERM (Operation not permitted); "
        "run as root or grant CAP_BPF/CAP_SYS_ADMIN"
    )


@needs_bpf
def test_insns_must_be_whole_instructions() -> None:
    with pytest.raises(ValueError):
        k.prog_load(XDP, b"\x95\x00\x00", "GPL")


@needs_bpf
@needs_bpftool
def test_prog_info_matches_bpftool() -> None:
    with load_ok(XDP, RETURN_PASS, name="info_check") as fd:
        info = k.prog_info(fd)
        assert info.type == XDP and info.name == "info_check"
        assert info.verified_insns == 2
        assert info.xlated_len == 16
        assert info.gpl_compatible
        shown = bpftool_json("prog", "show", "id", str(info.id))
        assert isinstance(shown, dict)
        assert shown["id"] == info.id
        assert shown["type"] == "xdp"
        assert shown["tag"] == info.tag
        assert shown["name"] == "info_check"
        with k.prog_get_fd_by_id(info.id) as again:
            assert k.prog_info(again).id == info.id


@needs_bpf
@needs_bpftool
def test_hash_map_operations() -> None:
    with k.map_create(BPF_MAP_TYPE["hash"], 4, 8, 16, name="h") as m:
        info = k.map_info(m)
        assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == (
            BPF_MAP_TYPE["hash"], 4, 8, 16, "h",
        )  # fmt: skip
        assert list(k.map_keys(m, 4)) == []
        entries = {struct.pack("<I", i): struct.pack("<Q", i * i) for i in range(5)}
        for key, value in entries.items():
            k.map_update(m, key, value, k.BPF_NOEXIST)
        assert sorted(k.map_keys(m, 4)) == sorted(entries)
        for key, value in entries.items():
            assert k.map_lookup(m, key, 8) == value
        assert k.map_lookup(m, struct.pack("<I", 99), 8) is None
        with pytest.raises(KernelError) as exc:
            k.map_update(m, struct.pack("<I", 1), bytes(8), k.BPF_NOEXIST)
        assert exc.value.errno == errno.EEXIST
        assert exc.value.command == "BPF_MAP_UPDATE_ELEM"
        with pytest.raises(KernelError) as exc:
            k.map_update(m, struct.pack("<I", 77), bytes(8), k.BPF_EXIST)
        assert exc.value.errno == errno.ENOENT
        dumped = bpftool_json("map", "dump", "id", str(info.id))
        assert isinstance(dumped, list) and len(dumped) == 5
        assert k.map_delete(m, struct.pack("<I", 3)) is True
        assert k.map_delete(m, struct.pack("<I", 3)) is False
        assert len(list(k.map_keys(m, 4))) == 4
        with k.map_get_fd_by_id(info.id) as again:
            assert k.map_info(again).id == info.id
        k.map_freeze(m)
        with pytest.raises(KernelError) as exc:
            k.map_update(m, struct.pack("<I", 1), bytes(8))
        assert exc.value.errno == errno.EPERM
        assert "frozen" in str(exc.value)


@needs_bpf
def test_array_map_keys_are_all_indices() -> None:
    with k.map_create(BPF_MAP_TYPE["array"], 4, 4, 3) as m:
        assert [struct.unpack("<I", key)[0] for key in k.map_keys(m, 4)] == [0, 1, 2]
        assert k.map_lookup(m, struct.pack("<I", 1), 4) == bytes(4)
        assert k.map_lookup(m, struct.pack("<I", 3), 4) is None


@needs_bpf
def test_percpu_array_values() -> None:
    array = BPF_MAP_TYPE["percpu_array"]
    ncpu = k.possible_cpus()
    size = k.map_value_size(array, 4)
    with k.map_create(array, 4, 4, 2) as m:
        key = struct.pack("<I", 1)
        blob = b"".join(struct.pack("<I", 100 + cpu) + bytes(4) for cpu in range(ncpu))
        k.map_update(m, key, blob)
        got = k.map_lookup(m, key, size)
        assert got is not None and len(got) == 8 * ncpu
        assert [struct.unpack("<I", v)[0] for v in k.percpu_values(got, 4)] == [
            100 + cpu for cpu in range(ncpu)
        ]


@needs_bpf
def test_map_create_failure_raises() -> None:
    with pytest.raises(KernelError) as exc:
        k.map_create(BPF_MAP_TYPE["array"], 4, 0, 1)
    assert exc.value.errno == errno.EINVAL
    assert str(exc.value).startswith("BPF_MAP_CREATE failed: EINVAL (Invalid argument)")


@pytest.fixture
def bpffs_dir() -> Iterator[Path]:
    root = Path("/sys/fs/bpf")
    if not os.path.ismount(root):
        subprocess.run(["mount", "-t", "bpf", "bpf", str(root)], check=True)
    path = root / f"pytest-ebpf-test-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


@needs_bpf
def test_pin_and_get(bpffs_dir: Path) -> None:
    fd = load_ok(XDP, RETURN_PASS, name="pinned")
    m = k.map_create(BPF_MAP_TYPE["array"], 4, 4, 1)
    with fd, m:
        k.obj_pin(fd, bpffs_dir / "prog")
        k.obj_pin(m, str(bpffs_dir / "map"))
        prog_id, map_id = k.prog_info(fd).id, k.map_info(m).id
    # The pins keep both objects alive after every fd is closed.
    with k.obj_get(bpffs_dir / "prog") as again:
        assert k.prog_info(again).id == prog_id
        assert k.prog_test_run(again, packet()).retval == XDP_PASS
    with k.obj_get(bpffs_dir / "map") as again:
        assert k.map_info(again).id == map_id
    with pytest.raises(KernelError) as exc:
        k.obj_get(bpffs_dir / "missing")
    assert exc.value.errno == errno.ENOENT and "missing" in str(exc.value)


def _wait_gone(ids: object, wanted: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if wanted not in ids():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


@needs_bpf
def test_closed_objects_leave_no_ids() -> None:
    m = k.map_create(BPF_MAP_TYPE["hash"], 4, 4, 1)
    fd = load_ok(XDP, RETURN_PASS)
    prog_id, map_id = k.prog_info(fd).id, k.map_info(m).id
    assert prog_id in k.prog_ids() and map_id in k.map_ids()
    fd.close()
    m.close()
    assert _wait_gone(k.prog_ids, prog_id)
    assert _wait_gone(k.map_ids, map_id)
    with pytest.raises(KernelError) as exc:
        k.prog_get_fd_by_id(prog_id)
    assert exc.value.errno == errno.ENOENT


# --- BTF --------------------------------------------------------------------------------------


def btf_blob(kind: int = 1) -> bytes:
    """One type: ``int``, 4 bytes, signed, 32 bits (``kind`` lets a test corrupt it)."""
    strings = b"\0int\0"
    types = struct.pack("<III", 1, kind << 24, 4) + struct.pack("<I", (1 << 24) | 32)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


@needs_bpf
def test_btf_load_and_use_for_map() -> None:
    with k.btf_load(btf_blob()) as btf:
        assert btf.fileno() >= 0
        with k.map_create(
            BPF_MAP_TYPE["array"], 4, 4, 1, btf_fd=btf, btf_key_type_id=1, btf_value_type_id=1
        ) as m:
            assert k.map_info(m).btf_id > 0


@needs_bpf
def test_btf_load_corrupt_raises_with_log() -> None:
    with pytest.raises(KernelError) as exc:
        k.btf_load(btf_blob(kind=31))
    err = exc.value
    assert err.command == "BPF_BTF_LOAD"
    assert err.errno == errno.EINVAL
    assert err.log.strip()
    assert "kind" in err.log.lower()
    assert "\n" not in str(err)
