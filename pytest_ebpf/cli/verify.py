"""``pytest-ebpf verify OBJECT``: load every program into the running kernel and report.

Each program gets its own verdict, the kernel's answer for it: a program the kernel accepts is
shown as loaded even when another program of the object is rejected (see
:mod:`pytest_ebpf.kernel.bpftool`). ``--log`` also prints the verifier log of every program, or
of the one named.

Exit status: 0 when every program loaded (``?`` sections are skipped unless ``--optional``), 1
when the verifier rejected some, 2 when the object
cannot be read, a program named for ``--log`` does not exist, or nothing can be loaded on this
machine (not root, no CAP_BPF...), 128+N when
stopped by signal N (SIGTERM, SIGHUP: it cleans up first, like Ctrl-C). Nothing stays loaded or
pinned afterwards; pin directories left by killed runs (``kill -9``) are removed at the start,
and foreign entries in bpffs are reported on stderr, never followed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from pytest_ebpf.errors import EbpfError, ObjectError
from pytest_ebpf.kernel.loader import LoadResult, load_all, load_program, nearest
from pytest_ebpf.kernel.pins import Terminated, install_signal_cleanup, remove_stale_pin_dirs

__all__ = ["run_verify", "verdict_word"]


def _depth(result: LoadResult) -> str:
    if not result.stack_depth:
        return "-"
    total = sum(result.stack_depth)
    text = "+".join(str(d) for d in result.stack_depth)
    return text if len(result.stack_depth) == 1 else f"{text}={total}"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        out.write("  ".join(cells).rstrip() + "\n")


def verdict_word(loaded: bool, cause: str | None) -> str:
    """``loaded``, ``skipped (?)``, ``REJECTED`` (by the verifier) or ``NOT LOADED`` (before
    it: a permission, a missing target...), as the table and the logs' headers say it."""
    if loaded:
        return "loaded"
    if cause == "optional":
        return "skipped (?)"
    return "REJECTED" if (cause or "verifier") == "verifier" else "NOT LOADED"


def _verdict(result: LoadResult) -> str:
    return verdict_word(result.loaded, result.cause)


def _write_logs(results: list[LoadResult], out: TextIO) -> None:
    """Each program's verifier log after a header line naming it and its verdict."""
    for r in results:
        out.write(f"\n--- verifier log of {r.program} ({r.section}): {_verdict(r)} ---\n")
        text = r.log or f"(no verifier log: {r.why})"
        out.write(text if text.endswith("\n") else f"{text}\n")


def run_verify(
    path: str | os.PathLike[str],
    as_json: bool = False,
    loader: str = "auto",
    out: TextIO | None = None,
    err: TextIO | None = None,
    pretty: bool = False,
    log: bool | str = False,
    optional: bool = False,
) -> int:
    """Load every program of the object at *path*, print the verdicts, unload; exit status.
    Programs of ``?`` sections are listed as skipped (not a failure); *optional* loads them
    too, each alone.

    JSON is one line; *pretty* indents it. *log*: True adds every program's verifier log (after
    the table; in JSON, a ``log`` field), a program name only that program's."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    from pytest_ebpf.kernel.bpf import bpf_available
    from pytest_ebpf.obj.load import load_object

    label = os.fspath(path)
    try:
        obj = load_object(path)
    except ObjectError as exc:
        reason = exc.reason if exc.path else str(exc)
        err.write(f"error: {label}: {reason}\n")
        return 2
    if isinstance(log, str) and log not in obj.program_names:
        names = ", ".join(obj.program_names) or "none"
        err.write(f"error: {label}: no program {log!r} to print the log of; programs: {names}"
                  f"{nearest(log, obj.program_names)}; fix: --log NAME with one of them, or "
                  "--log alone for every program\n")  # fmt: skip
        return 2
    ok, why = bpf_available()
    if not ok:
        why = why.split("; run as root", 1)[0]  # the fix is named once, below
        err.write(
            f"error: cannot load eBPF programs here: {why}; fix: run as root or grant CAP_BPF\n"
        )
        return 2
    install_signal_cleanup()
    try:
        for message in remove_stale_pin_dirs():
            err.write(f"warning: {message}\n")
        with load_all(obj, loader=loader) as loaded:
            results = list(loaded.results.values())
            chosen, reason = loaded.loader, loaded.reason
        if optional:  # the '?' programs on request, each alone
            for i, r in enumerate(results):
                if r.cause == "optional":
                    with load_program(obj, r.program, loader=loader) as alone:
                        results[i] = alone.results[r.program]
    except Terminated as exc:
        err.write(f"error: {label}: {exc}; nothing is left loaded or pinned\n")
        return 128 + exc.signum
    except (EbpfError, OSError) as exc:
        err.write(f"error: {label}: {exc}\n")
        return 2

    shown = [r for r in results if log is True or r.program == log]
    if as_json:
        doc: dict[str, Any] = {
            "path": label,
            "loader": chosen,
            "programs": [
                {
                    "name": r.program,
                    "section": r.section,
                    "loaded": r.loaded,
                    "error": r.error,
                    "cause": None if r.loaded else (r.cause or "verifier"),
                    "stack_depth": list(r.stack_depth),
                    "processed_insns": r.processed_insns,
                    "verified_insns": r.verified_insns,
                    **({"log": r.log} if r in shown else {}),
                }
                for r in results
            ],
        }
        out.write(json.dumps(doc, indent=2 if pretty else None) + "\n")
    else:
        out.write(f"{label}: {len(results)} programs, loader {reason}\n")
        rows = [["program", "verdict", "processed", "stack depth", "verified", "error"]]
        for r in results:
            by_verifier = (r.cause or "verifier") == "verifier"
            rows.append([
                r.program,
                _verdict(r),
                _num(r.processed_insns),
                _depth(r),
                _num(r.verified_insns),
                (r.error if by_verifier else r.why) or "",
            ])  # fmt: skip
        if results:
            _table(rows, out)
        failed = [r for r in results if r.failed]
        skipped = len(results) - len(failed) - sum(r.loaded for r in results)
        if skipped:
            out.write(f"{skipped} program(s) in '?' sections not loaded (libbpf's marker); "
                      "--optional loads them\n")
        if failed:
            verb = ("rejected" if all((r.cause or "verifier") == "verifier" for r in failed)
                    else "not loaded")
            out.write(f"{len(failed)} of {len(results)} programs {verb}\n")
        else:
            out.write(f"all {len(results) - skipped} programs loaded\n")
        _write_logs(shown, out)
    return 1 if any(r.failed for r in results) else 0
