"""Waiting on the kernel in tests: it frees programs asynchronously after their last fd closes."""

from __future__ import annotations

import time
from collections.abc import Iterable

from pytest_ebpf.kernel.bpf import prog_ids


def wait_unloaded(ids: Iterable[int], timeout: float = 2.0) -> set[int]:
    """Ids of *ids* still loaded after up to *timeout* seconds."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while True:
        left = wanted & set(prog_ids())
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
