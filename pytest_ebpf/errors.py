"""The plugin's exception types.

``ObjectError`` is the one error raised for an eBPF object that cannot be read: a path that is
not a regular file or is over the size bound (:mod:`pytest_ebpf.obj.file`), and anything
malformed that a parser (ELF, BTF, BTF.ext, instructions, maps) finds, ``from`` the underlying
cause. The parsers check what they read instead of catching ``struct.error``, ``IndexError``,
``KeyError`` and the like, so any exception other than ``ObjectError`` while reading an object
is a bug of pytest-ebpf, not the input's fault (``tests/test_fuzz.py`` holds them to this).
"""

from __future__ import annotations


class EbpfError(Exception):
    """Base class of every error pytest-ebpf raises on purpose."""


class ObjectError(EbpfError):
    """An eBPF object (or one of its sections) could not be read.

    ``str(err)`` is one line that names the problem; ``path`` is the file when known.
    """

    def __init__(self, reason: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)
