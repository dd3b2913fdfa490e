"""Read an object file safely: regular files only, never blocking, never more than a bound.

An object path comes from the user (a command line, a build, an ini file), so it may name a
FIFO (``open`` would wait for a writer forever), a device such as ``/dev/zero`` (endless), a
directory, or a huge (possibly sparse) file that would be read whole into memory. Each of these
ends in one :class:`~pytest_ebpf.errors.ObjectError`:

* the path is ``stat``-ed first and anything but a regular file is refused without opening it;
* it is opened with ``O_NONBLOCK`` (a file swapped for a FIFO after the ``stat`` cannot block
  the ``open``), and the opened descriptor is checked again with ``fstat``;
* a file larger than the bound is refused before a byte is read, and reading stops one byte
  past the bound when the file grows meanwhile.

The bound is :data:`DEFAULT_MAX_OBJECT_SIZE` unless the caller passes one or the environment
variable :data:`MAX_OBJECT_SIZE_ENV` sets one (:func:`max_object_size`).
"""

from __future__ import annotations

import os
import re
import stat

from pytest_ebpf.errors import ObjectError

__all__ = [
    "DEFAULT_MAX_OBJECT_SIZE",
    "MAX_OBJECT_SIZE_ENV",
    "max_object_size",
    "parse_size",
    "read_object_file",
]

DEFAULT_MAX_OBJECT_SIZE = 256 * 1024 * 1024
"""Largest object file read by default (256 MiB; real eBPF objects are kilobytes to a few MiB)."""
MAX_OBJECT_SIZE_ENV = "PYTEST_EBPF_MAX_OBJECT_SIZE"
"""Environment variable that sets the bound (bytes, or with a ``K``/``M``/``G`` suffix)."""

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"\s*(\d+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_CHUNK = 1 << 20


def parse_size(text: str) -> int:
    """``"1048576"``, ``"1024K"``, ``"256M"``, ``"256MiB"``, ``"1G"`` -> bytes (> 0).

    Raises :class:`ValueError` with a one-line message for anything else."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"bad object size {text!r}: expected bytes, e.g. 268435456 or 256M")
    value = int(match.group(1)) * _UNITS[match.group(2).lower()]
    if value <= 0:
        raise ValueError(f"bad object size {text!r}: must be more than 0")
    return value


def max_object_size(value: int | str | None = None) -> int:
    """The bound in bytes: *value* when given, else :data:`MAX_OBJECT_SIZE_ENV`, else
    :data:`DEFAULT_MAX_OBJECT_SIZE`. Raises :class:`ObjectError` for a bad setting."""
    source = "max_size"
    if value is None:
        env = os.environ.get(MAX_OBJECT_SIZE_ENV)
        if env is None or not env.strip():
            return DEFAULT_MAX_OBJECT_SIZE
        value, source = env, MAX_OBJECT_SIZE_ENV
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ObjectError(f"{source}: object size bound must be more than 0, not {value}")
        return value
    try:
        return parse_size(str(value))
    except ValueError as exc:
        raise ObjectError(f"{source}: {exc}") from exc


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _check(st: os.stat_result, limit: int, label: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ObjectError(f"{_kind(st.st_mode)}, not an eBPF object file", label)
    if st.st_size > limit:
        raise ObjectError(_too_big(st.st_size, limit), label)


def _too_big(size: int, limit: int) -> str:
    return (
        f"file is {size} bytes, over the object size limit of {limit} bytes (raise it with "
        f"--max-object-size or {MAX_OBJECT_SIZE_ENV})"
    )


def read_object_file(path: str | os.PathLike[str], max_size: int | str | None = None) -> bytes:
    """The bytes of the regular file at *path*, at most *max_size* of them
    (:func:`max_object_size`); :class:`ObjectError` for anything else, without blocking."""
    label = os.fspath(path)
    limit = max_object_size(max_size)
    try:
        _check(os.stat(path), limit, label)
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
        flags |= getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
        try:
            _check(os.fstat(fd), limit, label)
            chunks: list[bytes] = []
            total = 0
            while total <= limit:
                chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ObjectError(f"cannot read file: {exc.strerror or exc}", label) from exc
    if total > limit:
        raise ObjectError(_too_big(total, limit), label)
    return b"".join(chunks)
