"""``pytest-ebpf compare OLD NEW [--threshold SPEC] [--json]``: what grew between two reports.

The command form of :mod:`pytest_ebpf.analysis.baseline`, for CI jobs that keep the report of
the main branch as an artifact (as ``veristat -C`` is used). Exit status 0 when no figure grew
past its threshold, 1 when one did, 2 with one ``error: PATH: REASON`` line on stderr when a
file is not a readable report.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import TextIO

from pytest_ebpf.analysis.baseline import (
    BaselineError,
    Threshold,
    compare,
    load_report,
    render,
)

__all__ = ["run_compare"]


def run_compare(
    old: str,
    new: str,
    thresholds: Mapping[str, Threshold] | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Compare the reports at *old* and *new*; 0, 1 (something grew past its threshold) or 2.

    *thresholds* are :func:`~pytest_ebpf.analysis.baseline.parse_thresholds`' result (the
    command line parses them, so a bad spec is a usage error before any file is read)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        old_doc = load_report(old)
        new_doc = load_report(new)
    except BaselineError as exc:
        err.write(f"error: {exc.path}: {' '.join(exc.reason.split())}\n")
        return 2
    comparison = compare(old_doc, new_doc, thresholds)
    if as_json:
        out.write(json.dumps(comparison.as_json()) + "\n")
    else:
        out.write("\n".join(render(comparison)) + "\n")
    return 1 if comparison.exceeded else 0
