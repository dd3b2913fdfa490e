"""Program commands of :mod:`pytest_ebpf.kernel.bpf`: load, BTF load, test run."""

from __future__ import annotations

import ctypes
import errno as _errno
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, cast

from pytest_ebpf.abi import ProgType
from pytest_ebpf.errors import EbpfError
from pytest_ebpf.kernel.layout import (
    BPF_CMD,
    BPF_LOG_LEVEL1,
    BPF_LOG_STATS,
    INSN_SIZE,
    BtfLoadAttr,
    ProgLoadAttr,
    RawTracepointOpenAttr,
    TestRunAttr,
)
from pytest_ebpf.kernel.objects import prog_info
from pytest_ebpf.kernel.sys import (
    CAP_BPF,
    CAP_SYS_ADMIN,
    ENOTSUPP,
    MAX_LOG_SIZE,
    MIN_LOG_SIZE,
    NR_BPF,
    Fd,
    FdLike,
    addressof,
    bpf_call,
    byref,
    effective_caps,
    fail,
    fdnum,
    get_errno,
    in_buf,
    log_text,
    new_buf,
    obj_name,
    permission_message,
    ptr,
    sizeof,
    syscall_fn,
    type_phrase,
)
from pytest_ebpf.kernel.verifier_log import VerifierSummary, parse_verifier_log

# --- programs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOutcome:
    """The result of :func:`prog_load`: ``fd`` is None when the verifier rejected the program,
    ``errno`` then says how (EACCES, EINVAL, E2BIG...); ``log`` is the full verifier log."""

    fd: Fd | None
    log: str
    errno: int

    @property
    def ok(self) -> bool:
        return self.fd is not None

    def summary(self) -> VerifierSummary:
        return parse_verifier_log(self.log, failed=self.fd is None)


def prog_load(
    prog_type: int,
    insns: bytes,
    license: str,
    name: str = "",
    expected_attach_type: int = 0,
    log_level: int = BPF_LOG_LEVEL1 | BPF_LOG_STATS,
    log_size: int = 1 << 20,
    btf_fd: FdLike | None = None,
    func_info: bytes = b"",
    func_info_rec_size: int = 8,
    line_info: bytes = b"",
    line_info_rec_size: int = 16,
    kern_version: int = 0,
    prog_flags: int = 0,
    attach_btf_id: int = 0,
    fd_array: Iterable[FdLike] | None = None,
    attach_prog_fd: FdLike | None = None,
) -> LoadOutcome:
    """Load a program. ``log_level`` bits: 1 (trace), 2 (verbose trace), 4 (statistics: the
    "stack depth" line). The log buffer starts at ``log_size`` and grows on ENOSPC up to
    :data:`MAX_LOG_SIZE`. A rejection by the verifier is returned, not raised; EPERM and
    failures without a log raise :class:`KernelError`."""
    if len(insns) % INSN_SIZE or not insns:
        raise ValueError(f"insns must be a non-empty multiple of 8 bytes, got {len(insns)}")
    cmd = BPF_CMD["PROG_LOAD"]
    insn_buf = new_buf(insns, len(insns))
    lic = new_buf(license.encode())
    finfo, linfo = in_buf(func_info), in_buf(line_info)
    fds = [fdnum(f) for f in fd_array] if fd_array is not None else []
    fd_arr = (ctypes.c_int * len(fds))(*fds) if fds else None
    template = ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(insns) // INSN_SIZE,
        insns=addressof(insn_buf),
        license=addressof(lic),
        kern_version=kern_version,
        prog_flags=prog_flags,
        prog_name=obj_name(name),
        expected_attach_type=expected_attach_type,
        attach_btf_id=attach_btf_id,
        fd_array=addressof(fd_arr) if fd_arr is not None else 0,
    )
    if btf_fd is not None:
        template.prog_btf_fd = fdnum(btf_fd)
        if func_info:
            template.func_info_rec_size = func_info_rec_size
            template.func_info = ptr(finfo)
            template.func_info_cnt = len(func_info) // func_info_rec_size
        if line_info:
            template.line_info_rec_size = line_info_rec_size
            template.line_info = ptr(linfo)
            template.line_info_cnt = len(line_info) // line_info_rec_size
    if attach_prog_fd is not None:
        template.attach_prog_fd = fdnum(attach_prog_fd)

    def attempt(level: int, size: int) -> tuple[int, str, int]:
        """One load; returns (fd or -errno, log, log_true_size)."""
        attr = ProgLoadAttr.from_buffer_copy(template)
        buf = new_buf(size) if level else None
        if buf is not None:
            attr.log_level, attr.log_size, attr.log_buf = level, size, addressof(buf)
        for _ in range(5):  # the kernel may ask to retry (EAGAIN) under memory pressure
            ret = bpf_call(cmd, attr)
            if ret != -_errno.EAGAIN:
                break
        return ret, log_text(buf), attr.log_true_size

    size = min(max(log_size, MIN_LOG_SIZE), MAX_LOG_SIZE)
    ret, log, true_size = attempt(log_level, size)
    while ret == -_errno.ENOSPC and log_level and (true_size > size or len(log) >= size - 2):
        if size >= MAX_LOG_SIZE:
            # The log (its tail, on kernels >= 6.4) is kept; redo the load with a statistics-only
            # log to learn whether the program itself is accepted.
            ret, stats_log, _ = attempt(BPF_LOG_STATS, 1 << 20)
            log = f"[verifier log truncated to its last {size} bytes]\n{log}"
            if ret == -_errno.ENOSPC:
                raise fail(cmd, _errno.ENOSPC, stats_log, "log buffer too small")
            break
        size = min(max(true_size, size * 4), MAX_LOG_SIZE)
        ret, log, true_size = attempt(log_level, size)
    if ret >= 0:
        return LoadOutcome(fd=Fd(ret), log=log, errno=0)
    err = -ret
    if not log_level and err in (_errno.EACCES, _errno.EINVAL):
        # No log was requested: load again with one so the caller learns why.
        return prog_load(
            prog_type, insns, license, name, expected_attach_type, BPF_LOG_LEVEL1, log_size,
            btf_fd, func_info, func_info_rec_size, line_info, line_info_rec_size, kern_version,
            prog_flags, attach_btf_id, fds or None, attach_prog_fd,
        )  # fmt: skip
    if err == _errno.EPERM:
        # Only CAP_BPF missing: the generic "grant CAP_BPF" says it. Else name what lacks.
        caps = effective_caps()
        has_bpf = caps is not None and bool(caps >> CAP_BPF & 1 or caps >> CAP_SYS_ADMIN & 1)
        known = ProgType.get(prog_type)
        type_name = None if known is None else known.label
        detail = permission_message(type_name, caps) if has_bpf and type_name else ""
        raise fail(cmd, err, log, detail)
    if not log.strip():
        raise fail(cmd, err, log)
    return LoadOutcome(fd=None, log=log, errno=err)


def btf_load(btf_blob: bytes, log_level: int = 1) -> Fd:
    """Load raw BTF (header + types + strings); KernelError carries the BTF log on failure."""
    cmd = BPF_CMD["BTF_LOAD"]
    blob = new_buf(btf_blob, len(btf_blob))
    size, level = 0, 0  # first try without a log, as most loads succeed
    while True:
        buf = new_buf(size) if level else None
        attr = BtfLoadAttr(btf=addressof(blob), btf_size=len(btf_blob))
        if buf is not None:
            attr.btf_log_buf, attr.btf_log_size, attr.btf_log_level = addressof(buf), size, level
        ret = bpf_call(cmd, attr)
        if ret >= 0:
            return Fd(ret)
        log = log_text(buf)
        if not level and log_level and -ret != _errno.EPERM:
            size, level = 64 << 10, log_level
            continue
        if -ret == _errno.ENOSPC and level and size < MAX_LOG_SIZE:
            size = min(max(attr.btf_log_true_size, size * 4), MAX_LOG_SIZE)
            continue
        detail = "log buffer too small" if -ret == _errno.ENOSPC and level else ""
        raise fail(cmd, -ret, log, detail)


class TestRunResult(NamedTuple):
    """What :func:`prog_test_run` returns. ``duration_ns`` is the kernel's mean per run."""

    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration_ns: int


TestRunResult.__test__ = False  # type: ignore[attr-defined]  # not a pytest test class

_TEST_RUN = BPF_CMD["PROG_TEST_RUN"]
_DATA_OUT_SLACK = 4096  # programs may grow packets (XDP head/tail adjust, skb change_tail)


def prog_test_run(
    prog_fd: FdLike,
    data_in: bytes = b"",
    ctx_in: bytes | None = None,
    repeat: int = 1,
    data_size_out: int | None = None,
    ctx_size_out: int = 0,
    flags: int = 0,
    cpu: int = 0,
) -> TestRunResult:
    """BPF_PROG_TEST_RUN. ``data_size_out`` defaults to ``len(data_in) + 4096`` (0 when there
    is no input). ``retval`` is the program's return value as the kernel's u32."""
    attr = TestRunAttr(prog_fd=prog_fd if type(prog_fd) is int else prog_fd.fileno())  # type: ignore[union-attr]
    n = len(data_in)
    if n:
        din = new_buf(data_in, n)
        attr.data_in = addressof(din)
        attr.data_size_in = n
    out_size = (n + _DATA_OUT_SLACK if n else 0) if data_size_out is None else data_size_out
    if out_size:
        dout = new_buf(out_size)
        attr.data_out = addressof(dout)
        attr.data_size_out = out_size
    if ctx_in is not None:
        cin = new_buf(ctx_in, len(ctx_in))
        attr.ctx_in = addressof(cin)
        attr.ctx_size_in = len(ctx_in)
    if ctx_size_out:
        cout = new_buf(ctx_size_out)
        attr.ctx_out = addressof(cout)
        attr.ctx_size_out = ctx_size_out
    if repeat != 1:
        attr.repeat = repeat
    if flags:
        attr.flags = flags
        attr.cpu = cpu
    ret = syscall_fn(NR_BPF, _TEST_RUN, byref(attr), sizeof(attr)) if syscall_fn else -1
    if ret < 0:
        err = get_errno() if syscall_fn else _errno.ENOSYS
        detail = ""
        if err == _errno.ENOSPC:
            detail = (
                f"output buffer too small: data_out needs {attr.data_size_out} bytes, "
                f"ctx_out {attr.ctx_size_out}; pass a larger data_size_out/ctx_size_out"
            )
        elif err in (ENOTSUPP, _errno.EOPNOTSUPP, _errno.EINVAL, _errno.EFAULT):
            detail = _test_run_detail(attr.prog_fd, err, n)
        raise fail(_TEST_RUN, err, detail=detail)
    return TestRunResult(
        attr.retval,
        cast(bytes, dout[: attr.data_size_out]) if out_size else b"",
        cast(bytes, cout[: attr.ctx_size_out]) if ctx_size_out else None,
        attr.duration,
    )


ETH_HLEN = 14
# Test runs that build an Ethernet frame from data_in (net/bpf/test_run.c: bpf_test_init()).
_PACKET_TYPES = frozenset((
    ProgType.XDP, ProgType.SCHED_CLS, ProgType.SCHED_ACT, ProgType.SOCKET_FILTER,
    ProgType.CGROUP_SKB, ProgType.LWT_IN, ProgType.LWT_OUT, ProgType.LWT_XMIT,
    ProgType.LWT_SEG6LOCAL, ProgType.FLOW_DISSECTOR,
))  # fmt: skip


def _prog_type(prog_fd: int) -> ProgType | None:
    try:
        return ProgType.get(prog_info(prog_fd).type)
    except (OSError, ValueError, EbpfError):  # the fd may be gone: keep the kernel error
        return None


def _test_run_detail(prog_fd: int, err: int, size: int) -> str:
    """The cause of a failed test run, in words, when it is a known one."""
    prog_type = _prog_type(prog_fd)
    if prog_type is None:
        return ""
    attach = ("attach it for real (ebpf_loaded.attached(NAME) for raw_tracepoint and tp_btf "
              "programs, then trigger the event), or test its logic in an XDP, TC, "
              "socket-filter or raw_tracepoint program")
    if err in (ENOTSUPP, _errno.EOPNOTSUPP):
        return (f"the kernel cannot test-run {type_phrase(prog_type.label)} (BPF_PROG_TEST_RUN has "
                f"no runner for this type); fix: {attach}")
    if prog_type == ProgType.TRACING and err == _errno.EFAULT:
        return ("the kernel test-runs only the fentry, fexit and fmod_ret kinds of tracing "
                f"programs (not tp_btf or iter); fix: {attach}")
    if prog_type in _PACKET_TYPES and size < ETH_HLEN:
        return (f"the packet is {size} byte{'' if size == 1 else 's'}, shorter than an Ethernet "
                f"header: a test run of {type_phrase(prog_type.label)} needs at least "
                f"ETH_HLEN = {ETH_HLEN} bytes of data")
    return ""


def raw_tracepoint_open(prog_fd: FdLike, name: str | None = None) -> Fd:
    """Attach a raw_tracepoint program to the tracepoint *name*, or a tp_btf program (``name``
    None) to the target it was loaded for; the link lives as long as the returned fd."""
    buf = new_buf(name.encode()) if name else None
    attr = RawTracepointOpenAttr(name=addressof(buf) if buf is not None else 0,
                                 prog_fd=fdnum(prog_fd))
    cmd = BPF_CMD["RAW_TRACEPOINT_OPEN"]
    ret = bpf_call(cmd, attr)
    if ret < 0:
        raise fail(cmd, -ret, detail=name or "its BTF target")
    return Fd(ret)
