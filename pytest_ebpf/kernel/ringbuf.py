"""Reading a BPF ring buffer from user space, as libbpf's ``ring_buffer__consume`` and Aya's
``RingBuf::next`` do: through the map's memory, no syscall per record.

The kernel's layout (``kernel/bpf/ringbuf.c``), offsets in the map's mmap space:

============ ======================== ==================================================
offset       size                     what
============ ======================== ==================================================
0            one page (read-write)    the consumer position (u64), written by the reader
page         one page (read-only)     the producer position (u64), written by the kernel
2 * page     2 * ``max_entries``      the data, mapped twice in a row so that a record
                                      that wraps around reads as one piece
============ ======================== ==================================================

Each record starts with an 8-byte header: ``len`` (u32: bit 31 BUSY while the producer still
writes it, bit 30 DISCARD when it was discarded) and ``pg_off`` (u32); the record's data follows,
and the next header is at the next multiple of 8.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

from pytest_ebpf.errors import EbpfError

__all__ = ["RingBufError", "RingBufRecords", "drain"]

_BUSY = 1 << 31
_DISCARD = 1 << 30
_HEADER = 8
_POS = struct.Struct("=Q")
_LEN = struct.Struct("=I")


class RingBufError(EbpfError):
    """The ring buffer cannot be read; the message names the map."""


@dataclass(frozen=True)
class RingBufRecords:
    """What one :func:`drain` read."""

    records: tuple[bytes, ...]
    """The committed records, oldest first (discarded ones left out)."""
    discarded: int
    """Records the program reserved and then discarded."""


def drain(fd: int, max_entries: int, name: str = "ring buffer") -> RingBufRecords:
    """Consume every committed record of the ring buffer map *fd* (``max_entries``: its size in
    bytes); the consumer position moves past them, so the next call returns only newer ones. A
    record the producer is still writing (BUSY) stops the read there."""
    page = mmap.PAGESIZE
    if max_entries <= 0 or max_entries & (max_entries - 1) or max_entries % page:
        raise RingBufError(f"{name}: size {max_entries} is not a power-of-2 multiple of the page "
                           f"size ({page})")
    mask = max_entries - 1
    try:
        consumer = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                             offset=0)
    except OSError as exc:
        raise RingBufError(f"{name}: cannot map its consumer page: {exc.strerror}") from exc
    try:
        try:
            producer = mmap.mmap(fd, page + 2 * max_entries, mmap.MAP_SHARED, mmap.PROT_READ,
                                 offset=page)
        except OSError as exc:
            raise RingBufError(f"{name}: cannot map its data: {exc.strerror}") from exc
        try:
            (cons,) = _POS.unpack_from(consumer, 0)
            (prod,) = _POS.unpack_from(producer, 0)
            records: list[bytes] = []
            discarded = 0
            while cons < prod:
                at = page + (cons & mask)
                (word,) = _LEN.unpack_from(producer, at)
                if word & _BUSY:
                    break
                length = word & ~(_BUSY | _DISCARD)
                if word & _DISCARD:
                    discarded += 1
                else:
                    records.append(bytes(producer[at + _HEADER:at + _HEADER + length]))
                cons += (length + _HEADER + 7) & ~7
            _POS.pack_into(consumer, 0, cons)
            return RingBufRecords(tuple(records), discarded)
        finally:
            producer.close()
    finally:
        consumer.close()
