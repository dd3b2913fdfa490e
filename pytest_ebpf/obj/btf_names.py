"""Type ids by name in a large BTF blob (the kernel's ``vmlinux``: 100k+ types), without
parsing it.

Resolving an attach target, a kfunc or a typed ksym needs one id per name. Parsing all of
vmlinux's types into :class:`~pytest_ebpf.obj.btf.BtfType` objects takes seconds, and ten
times that in a VM under TCG; this index walks the type records once with the record sizes of
:data:`~pytest_ebpf.obj.btf._KINDS` (every field of every kind is one 32-bit word), keeps each
id's name offset and kind, and answers a lookup with two C-speed scans: the name in the string
section, then its offset among the ids.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.btf import _KINDS, _parse_header

#: Words that follow the 3-word ``btf_type`` record, per kind: (fixed, per vlen).
_WORDS: dict[int, tuple[int, int]] = {
    num: (len(layout.extra), len(layout.per_vlen)) for num, layout in _KINDS.items()
}
_KIND_NUMBERS: dict[str, int] = {layout.name: num for num, layout in _KINDS.items()}


@dataclass(frozen=True)
class BtfNames:
    """Each type id's name offset and kind number (id 0 is ``void``)."""

    strings: bytes
    name_offs: array[int]
    kinds: bytes

    def find_id(self, name: str, kind: str) -> int | None:
        """The lowest id of a *kind* type named *name*, or ``None``."""
        want = _KIND_NUMBERS[kind]
        needle = b"\0" + name.encode() + b"\0"
        best: int | None = None
        at = self.strings.find(needle)
        while at >= 0:
            offset, start = at + 1, 0
            while True:
                try:
                    idx = self.name_offs.index(offset, start)
                except ValueError:
                    break
                if self.kinds[idx] == want:
                    best = idx if best is None else min(best, idx)
                    break
                start = idx + 1
            at = self.strings.find(needle, at + 1)
        return best


def btf_names(data: bytes, byteorder: str) -> BtfNames:
    """The name index of a ``.BTF`` blob; :class:`ObjectError` when it is malformed."""
    prefix, header = _parse_header(data, byteorder)
    base = header.hdr_len
    strings = data[base + header.str_off: base + header.str_off + header.str_len]
    raw = data[base + header.type_off: base + header.type_off + header.type_len]
    if len(raw) % 4:
        raise ObjectError(f"BTF type section of {len(raw)} bytes is not whole 32-bit words")
    native = (prefix == "<") == (sys.byteorder == "little")
    words: array[int] = array("I")
    words.frombytes(raw)
    if not native:
        words.byteswap()
    name_offs: array[int] = array("I", [0])
    kinds = bytearray([0])
    pos, end = 0, len(words)
    while pos < end:
        if pos + 3 > end:
            raise ObjectError(f"BTF type {len(kinds)}: record truncated")
        info = words[pos + 1]
        kind = (info >> 24) & 0x1F
        sizes = _WORDS.get(kind)
        if sizes is None:
            raise ObjectError(f"BTF type {len(kinds)}: unknown kind {kind}")
        name_offs.append(words[pos])
        kinds.append(kind)
        pos += 3 + sizes[0] + sizes[1] * (info & 0xFFFF)
    if pos != end:
        raise ObjectError(f"BTF type {len(kinds) - 1}: records run past the type section")
    return BtfNames(strings, name_offs, bytes(kinds))
