"""Internals of :mod:`pytest_ebpf.kernel`: the raw ``bpf()`` call, :class:`KernelError`, :class:`Fd`
and small buffer helpers shared by the ``kernel_*`` modules."""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
from typing import Union

from pytest_ebpf.errors import EbpfError
from pytest_ebpf.kernel_abi import BPF_OBJ_NAME_LEN, CMD_NAMES

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
            else:
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
