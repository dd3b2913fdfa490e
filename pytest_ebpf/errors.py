"""The plugin's exception types.

``ObjectError`` is the one error raised for an eBPF object that cannot be read: every parser
(ELF, BTF, BTF.ext, instructions, maps) raises it, ``from`` the underlying cause.
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
