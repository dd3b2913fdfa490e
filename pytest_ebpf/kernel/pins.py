"""Pin directories in the BPF filesystem, safe beside other users.

bpffs is usually mounted with mode 1777: any local user may create entries in it. So:

* each process pins under its own root, ``/sys/fs/bpf/pytest-ebpf-<pid>-<worker>-<token>``
  (``<token>``: 16 random hex digits), created fresh with mode 0700 (an existing entry of that
  name is refused, never reused) and marked with a ``%pytest-ebpf`` directory inside, which only
  its creator can make;
* pin names are escaped (:func:`pin_name`), so no program or map name leads out of that root;
* removal never follows a symlink: directories are opened with ``O_NOFOLLOW`` and emptied
  through their file descriptors (``unlinkat``/``rmdir`` with ``dir_fd``);
* stale roots (their process is gone: SIGKILL, a crash) are removed at the next start only when
  they are ours: a real directory owned by this user, with the marker. Anything else under our
  prefix is left alone and reported (:func:`remove_stale_pin_dirs` returns the warnings);
* this process's root is removed at exit, and SIGTERM/SIGHUP take the same path as Ctrl-C
  (:func:`install_signal_cleanup`).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import secrets
import signal
import stat
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from pytest_ebpf.errors import EbpfError

__all__ = [
    "BPFFS",
    "MARKER",
    "PIN_PREFIX",
    "PinDirWarning",
    "PinError",
    "Terminated",
    "ensure_bpffs",
    "install_signal_cleanup",
    "new_load_dir",
    "pin_name",
    "release_session_pin_dir",
    "remove_session_pin_dir",
    "remove_stale_pin_dirs",
    "remove_tree",
    "session_pin_dir",
    "stale_pin_dirs",
]

BPFFS = Path("/sys/fs/bpf")
PIN_PREFIX = "pytest-ebpf-"
MARKER = "%pytest-ebpf"  # no pin_name() result can be this: a "%" there is followed by hex
_ROOT_NAME = re.compile(r"^pytest-ebpf-(\d+)-(.+)-([0-9a-f]{16})$")
_PID = re.compile(r"^pytest-ebpf-(\d+)-")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PinError(EbpfError):
    """bpffs cannot be mounted, or a pin directory cannot be made safely."""


class PinDirWarning(UserWarning):
    """An entry under our prefix in bpffs that pytest-ebpf did not make (left alone)."""


# --- names --------------------------------------------------------------------------------------


def pin_name(name: str) -> str:
    """*name* as one safe path component: ``%``, ``/`` and ``.`` are %-escaped (bpffs refuses
    dots in names; so neither ``..`` nor the marker can be named), and an over-long name is
    cut and given a hash of the whole."""
    out = name.replace("%", "%25").replace("/", "%2F").replace(".", "%2E").replace("\0", "%00")
    if not out:
        out = "%00"
    if len(out.encode()) > 200:
        import hashlib

        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        out = out.encode()[:180].decode(errors="ignore") + "~" + digest
    return out


def _worker() -> str:
    return pin_name(os.environ.get("PYTEST_XDIST_WORKER", "main"))


# --- bpffs --------------------------------------------------------------------------------------


def ensure_bpffs() -> None:
    """Mount the BPF filesystem at /sys/fs/bpf when it is not mounted (needs root). The mount
    is made with mode 0700: only root may create entries in it."""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] == str(BPFFS) and parts[2] == "bpf":
                    return
    except OSError:
        return
    proc = subprocess.run(
        ["mount", "-t", "bpf", "-o", "mode=0700", "bpf", str(BPFFS)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise PinError(f"cannot mount bpffs at {BPFFS}: {proc.stderr.strip()}")


# --- this process's root ------------------------------------------------------------------------

_lock = threading.RLock()
_current: dict[int, Path] = {}  # pid -> root made by this process
_atexit_pids: set[int] = set()


def _is_ours(parent_fd: int, name: str) -> str | None:
    """None when *name* (under *parent_fd*) is a pin root this user made; else why not."""
    try:
        st = os.lstat(name, dir_fd=parent_fd)
    except FileNotFoundError:
        return "gone"
    if stat.S_ISLNK(st.st_mode):
        return "a symlink (not followed)"
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):o})"
    if not _ROOT_NAME.match(name):
        return "not named like a pytest-ebpf pin directory (no random token)"
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        return f"cannot be opened ({exc.strerror})"
    try:
        mst = os.lstat(MARKER, dir_fd=fd)
    except OSError:
        return f"has no {MARKER} marker: not made by pytest-ebpf"
    finally:
        os.close(fd)
    if not stat.S_ISDIR(mst.st_mode) or mst.st_uid != os.geteuid():
        return f"its {MARKER} marker is not ours"
    return None


def session_pin_dir() -> Path:
    """This process's private pin root, made on first use: fresh, mode 0700, with a random
    token in its name and the marker inside. A later call returns it while it exists; after it
    was removed, a new one (new token) is made."""
    pid = os.getpid()
    with _lock:
        path = _current.get(pid)
        if path is not None:
            with _open_dir(path.parent) as parent_fd:
                if _is_ours(parent_fd, path.name) is None:
                    return path
        ensure_bpffs()
        path = BPFFS / f"{PIN_PREFIX}{pid}-{_worker()}-{secrets.token_hex(8)}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise PinError(f"{path} already exists: pytest-ebpf never reuses a pin directory "
                           "it did not make (fix: remove it, and find out who made it)") from None
        except OSError as exc:
            raise PinError(f"cannot create the pin directory {path}: {exc.strerror} "
                           f"(fix: run as root, or mount bpffs at {BPFFS})") from None
        try:
            os.mkdir(path / MARKER, 0o700)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.rmdir(path)
            raise PinError(f"cannot mark the pin directory {path}: {exc.strerror}") from None
        _current[pid] = path
        if pid not in _atexit_pids:
            _atexit_pids.add(pid)
            atexit.register(remove_session_pin_dir)
        install_signal_cleanup()
        return path


_loads = itertools.count(1)


def new_load_dir() -> Path:
    """A fresh directory (mode 0700) for one load under :func:`session_pin_dir`."""
    root = session_pin_dir()
    while True:
        path = root / f"load{next(_loads)}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path


def remove_session_pin_dir() -> None:
    """Remove this process's pin root and everything in it (at exit, at session end)."""
    with _lock:
        path = _current.pop(os.getpid(), None)
        if path is not None:
            remove_tree(path)


def release_session_pin_dir() -> None:
    """Remove this process's pin root when nothing but the marker is left in it."""
    with _lock:
        path = _current.get(os.getpid())
        if path is None:
            return
        try:
            left = {e for e in os.listdir(path)} - {MARKER}
        except OSError:
            _current.pop(os.getpid(), None)
            return
        if not left:
            remove_session_pin_dir()


# --- removal without following symlinks ---------------------------------------------------------


@contextlib.contextmanager
def _open_dir(path: Path) -> Any:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _empty(fd: int) -> None:
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        with contextlib.suppress(FileNotFoundError):
            if is_dir:
                _remove_at(fd, name)
            else:
                os.unlink(name, dir_fd=fd)


def _remove_at(parent_fd: int, name: str) -> None:
    """Remove directory *name* of *parent_fd* and its contents; a symlink in its place is
    never followed (``O_NOFOLLOW`` fails with ELOOP/ENOTDIR)."""
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        _empty(fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def remove_tree(path: Path) -> None:
    """Remove the directory *path* and everything in it, never following a symlink inside it
    or in its place (its parent directories are resolved as usual)."""
    try:
        with _open_dir(path.parent) as parent_fd:
            _remove_at(parent_fd, path.name)
    except FileNotFoundError:
        pass


# --- stale roots of other runs ------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _scan(root: Path) -> tuple[list[str], list[str]]:
    """(names of our stale roots, warnings about foreign entries) under *root*."""
    stale: list[str] = []
    warnings: list[str] = []
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return stale, warnings
    try:
        for name in sorted(os.listdir(fd)):
            m = _PID.match(name)
            if m is None or _pid_alive(int(m.group(1))):
                continue
            why = _is_ours(fd, name)
            if why is None:
                stale.append(name)
            elif why != "gone":
                warnings.append(
                    f"{root / name}: {why}; pytest-ebpf did not make it and left it alone "
                    f"(if it is not yours, remove it by hand: rm -r {root / name})"
                )
    finally:
        os.close(fd)
    return stale, warnings


def stale_pin_dirs(root: Path | None = None) -> list[Path]:
    """Our pin roots whose process has exited (a crash, SIGKILL): nobody else removes them."""
    base = BPFFS if root is None else root
    return [base / name for name in _scan(base)[0]]


def remove_stale_pin_dirs(root: Path | None = None) -> list[str]:
    """Remove what :func:`stale_pin_dirs` finds; return one warning per foreign entry under our
    prefix (a symlink, a file, someone else's directory...), which is never followed nor
    removed. A failure to remove one is a warning too: this never raises for bad entries."""
    base = BPFFS if root is None else root
    stale, warnings = _scan(base)
    if not stale:
        return warnings
    try:
        with _open_dir(base) as fd:
            for name in stale:
                try:
                    if _is_ours(fd, name) is None:
                        _remove_at(fd, name)
                except OSError as exc:
                    warnings.append(f"{base / name}: could not remove this stale pin "
                                    f"directory: {exc.strerror}")
    except OSError as exc:
        warnings.append(f"{base}: cannot open: {exc.strerror}")
    return warnings


# --- SIGTERM and SIGHUP -------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that it takes Ctrl-C's path: every
    ``finally``, fixture teardown and ``atexit`` handler runs (pins removed, fds closed)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"{signal.Signals(signum).name} received: cleaning up and stopping")

    def __str__(self) -> str:
        return str(self.args[0])


_HANDLED = (signal.SIGTERM, signal.SIGHUP)


def install_signal_cleanup() -> None:
    """Turn SIGTERM and SIGHUP into :class:`Terminated`. A previous Python handler is called
    first (chained); an ignored signal (``nohup``) stays ignored. Only from the main thread
    (elsewhere Python cannot install handlers); once per signal."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _HANDLED:
        previous = signal.getsignal(sig)
        if previous == signal.SIG_IGN or getattr(previous, "_pytest_ebpf", False):
            continue
        signal.signal(sig, _make_handler(previous))


def _make_handler(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(signum, frame)
        raise Terminated(signum)

    handler._pytest_ebpf = True  # type: ignore[attr-defined]
    return handler
