"""Internals of :mod:`pytest_ebpf.kernel.bpf`: the raw ``bpf()`` call, :class:`KernelError`,
:class:`Fd` and small buffer helpers shared by the modules of :mod:`pytest_ebpf.kernel`."""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
from typing import Union

from pytest_ebpf.errors import EbpfError
from pytest_ebpf.kernel.layout import BPF_OBJ_NAME_LEN, CMD_NAMES

FdLike = Union["Fd", int]
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

MAX_LOG_SIZE = 16 << 20  # largest verifier/BTF log buffer prog_load/btf_load grow to
MIN_LOG_SIZE = 128  # the kernel rejects smaller log buffers with EINVAL
ENOTSUPP = 524  # kernel-internal errno that bpf() leaks, e.g. test run of a kprobe program

# --- the system call --------------------------------------------------------------------------

NR_BPF = {
    "x86_64": 321,
    "amd64": 321,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "i386": 357,
    "i686": 357,
    "armv7l": 386,
    "armv6l": 386,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
}.get(platform.machine())


def _load_syscall() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if NR_BPF is None or platform.system() != "Linux":
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):  # pragma: no cover - not glibc/musl
        return None
    fn.restype = ctypes.c_long
    fn.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_ulong)
    return fn


syscall_fn = _load_syscall()
byref = ctypes.byref
sizeof = ctypes.sizeof
addressof = ctypes.addressof
get_errno = ctypes.get_errno
new_buf = ctypes.create_string_buffer


def bpf_call(cmd: int, attr: ctypes.Structure) -> int:
    """Run one bpf() command; return its result (>= 0) or ``-errno``."""
    if syscall_fn is None:
        return -_errno.ENOSYS
    ret: int = syscall_fn(NR_BPF, cmd, byref(attr), sizeof(attr))
    return ret if ret >= 0 else -get_errno()


# --- errors and file descriptors --------------------------------------------------------------


_ELEM_COMMANDS = frozenset(("BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM", "BPF_MAP_LOOKUP_ELEM"))


class KernelError(EbpfError):
    """A ``bpf()`` command failed.

    ``errno`` is the error number, ``command`` the command name (``"BPF_PROG_LOAD"``), ``log`` the
    verifier or BTF log when the kernel wrote one ("" otherwise). ``str(err)`` is one line.
    """

    def __init__(self, command: str, errno: int, log: str = "", detail: str = "") -> None:
        self.command = command
        self.errno = errno
        self.log = log
        if errno == ENOTSUPP:
            name, text = "ENOTSUPP", "Operation not supported by this program or map type"
        else:
            name, text = _errno.errorcode.get(errno, f"errno {errno}"), os.strerror(errno)
        parts = [f"{command} failed: {name} ({text})"]
        if errno == _errno.EPERM:
            if command in _ELEM_COMMANDS:
                parts.append("the map is frozen or read-only for this fd")
            elif not detail:  # a detail names the capability (permission_message)
                parts.append("run as root or grant CAP_BPF/CAP_SYS_ADMIN")
        if detail:
            parts.append(detail)
        last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "")
        if last:
            parts.append(f"log: {last}")
        super().__init__("; ".join(parts))


def fail(cmd: int, err: int, log: str = "", detail: str = "") -> KernelError:
    return KernelError(CMD_NAMES[cmd], err, log, detail)


class Fd:
    """Owns one kernel file descriptor; closes it on :meth:`close`, on ``with`` exit, or (last
    resort) when garbage collected."""

    __slots__ = ("__weakref__", "_fd")

    def __init__(self, fd: int) -> None:
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        self._fd = fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("I/O operation on closed Fd")
        return self._fd

    def __int__(self) -> int:
        return self.fileno()

    def detach(self) -> int:
        """Give up ownership: return the number, which the caller must now close."""
        fd = self.fileno()
        self._fd = -1
        return fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Fd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:  # noqa: SIM105 - contextlib may already be gone at interpreter shutdown
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown or fd already gone
            pass

    def __repr__(self) -> str:
        return f"Fd({self._fd})" if self._fd >= 0 else "Fd(closed)"


def fdnum(fd: FdLike) -> int:
    return fd if type(fd) is int else fd.fileno()  # type: ignore[union-attr]


def obj_name(name: str) -> bytes:
    """The kernel accepts [A-Za-z0-9_.] and at most 15 bytes; map anything else to '_'."""
    cleaned = "".join(c if (c.isascii() and (c.isalnum() or c in "_.")) else "_" for c in name)
    return cleaned.encode()[: BPF_OBJ_NAME_LEN - 1]


def ptr(buf: ctypes.Array[ctypes.c_char] | None) -> int:
    return addressof(buf) if buf is not None else 0


def in_buf(data: bytes) -> ctypes.Array[ctypes.c_char] | None:
    return new_buf(data, len(data)) if data else None


def log_text(buf: ctypes.Array[ctypes.c_char] | None) -> str:
    return buf.value.decode("utf-8", "replace") if buf is not None else ""


# --- capabilities: which one a permission error is about ------------------------------------

CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 12, 21, 38, 39
_CAP_NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_PERFMON: "CAP_PERFMON", CAP_BPF: "CAP_BPF"}
# kernel/bpf/syscall.c: is_net_admin_prog_type() and is_perfmon_prog_type()
NET_ADMIN_TYPES = frozenset((
    "sched_cls", "sched_act", "xdp", "lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local", "sk_skb",
    "sk_msg", "flow_dissector", "cgroup_device", "cgroup_sock", "cgroup_sock_addr",
    "cgroup_sockopt", "cgroup_sysctl", "sock_ops", "ext", "netfilter",
))  # fmt: skip
PERFMON_TYPES = frozenset((
    "kprobe", "tracepoint", "perf_event", "raw_tracepoint", "raw_tracepoint_writable",
    "tracing", "lsm", "struct_ops", "ext",
))  # fmt: skip
_DISPLAY = {"xdp": "XDP", "sched_cls": "TC (sched_cls)", "sched_act": "TC action (sched_act)",
            "lsm": "LSM"}


def effective_caps(status: str = "/proc/self/status") -> int | None:
    """The effective capability set (``CapEff`` of /proc/self/status), None when unreadable."""
    try:
        with open(status) as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def caps_needed(prog_type: str) -> list[int]:
    """The capabilities the kernel checks to load a *prog_type* program (each one is also
    granted by CAP_SYS_ADMIN)."""
    needed = [CAP_BPF]
    if prog_type in NET_ADMIN_TYPES:
        needed.append(CAP_NET_ADMIN)
    if prog_type in PERFMON_TYPES:
        needed.append(CAP_PERFMON)
    return needed


def type_phrase(prog_type: str) -> str:
    """``an XDP program``, ``a kprobe program``."""
    shown = _DISPLAY.get(prog_type, prog_type)
    article = "an" if shown[:1] in tuple("aeiouXL") else "a"
    return f"{article} {shown} program"


def has_admin(caps: int | None = None) -> bool:
    """Does this process have CAP_SYS_ADMIN (every capability a load can need)?"""
    caps = effective_caps() if caps is None else caps
    return caps is not None and bool(caps >> CAP_SYS_ADMIN & 1)


def permission_message(prog_type: str, caps: int | None = None) -> str:
    """Why loading a *prog_type* program was refused with EPERM: the capabilities it needs and
    the ones this process lacks (from its effective set)."""
    caps = effective_caps() if caps is None else caps
    needed = caps_needed(prog_type)
    text = (f"permission denied: loading {type_phrase(prog_type)} needs "
            f"{' and '.join(_CAP_NAMES[c] for c in needed)}")
    if caps is None:
        return text + " (or CAP_SYS_ADMIN); fix: run as root"
    if caps >> CAP_SYS_ADMIN & 1:
        lacking: list[int] = []
    else:
        lacking = [c for c in needed if not caps >> c & 1]
    if lacking:
        names = " and ".join(_CAP_NAMES[c] for c in lacking)
        return f"{text}; this process lacks {names} (fix: run as root or grant {names})"
    return (f"{text}; this process has them, so something else refused it (kernel lockdown, "
            "an LSM such as SELinux or AppArmor, or a user namespace)")
