"""Compare two pytest-ebpf reports and say which figures grew past their threshold.

This is ``veristat -C`` for a pytest-ebpf project: a report saved on the main branch
(``--ebpf-save-baseline PATH``) is the baseline, and a change that makes a program bigger
(instructions), deeper (combined stack, per kernel profile) or harder for the verifier
(processed instructions, per kernel) fails once it grows past a threshold. Shrinking never
fails; a figure on one side only is listed, never failed: there is nothing to compare it with.
Pure data (no pytest), so the ``compare`` command and the plugin share it.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from pytest_ebpf.errors import EbpfError

__all__ = [
    "DEFAULT_THRESHOLDS", "FAMILIES", "SCHEMA", "BaselineError", "Change", "Comparison",
    "Threshold", "check_report", "compare", "figures", "load_report", "parse_thresholds",
    "render", "threshold_for",
]

SCHEMA = 1
"""The report schema this module reads (the document's ``"schema"``)."""
FAMILIES = ("instructions", "stack", "processed_insns")
"""Figure families, in table order; ``stack`` and ``processed_insns`` get a ``[kernel]``."""
MAX_REPORT_SIZE = 64 * 1024 * 1024
"""A report is kilobytes; anything past this bound is refused before it fills memory."""
FIX = "save one with `pytest --ebpf-save-baseline PATH`"
_FORM = (
    "the form is FIGURE=N or FIGURE=N%, comma-separated, FIGURE one of instructions, stack, "
    "processed_insns, or stack[KERNEL] / processed_insns[KERNEL] for one kernel profile "
    "(e.g. instructions=10%,stack=32,processed_insns[6.1]=5%)"
)
_KEY = re.compile(r"(instructions|stack|processed_insns)(?:\[([^\[\]=,%]+)\])?")
_VALUE = re.compile(r"(\d+)|(\d+(?:\.\d+)?)%")


class BaselineError(EbpfError):
    """A file or document that is not a pytest-ebpf report this version can compare.

    ``str(err)`` is one line, ``PATH: REASON``; ``reason`` ends with the fix."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


@dataclass(frozen=True)
class Threshold:
    """How much a figure may grow: ``value`` units, or ``value`` percent of the old figure.

    ``value`` is a :class:`~fractions.Fraction` (or an int) so that growth of exactly the
    threshold (120 -> 132 at 10%) is compared exactly and passes."""

    value: Fraction | int
    percent: bool = False

    def exceeded(self, old: int, new: int) -> bool:
        """Did *old* -> *new* grow strictly past this threshold? Any growth from 0 passes
        every percentage, so it counts as past one."""
        delta = new - old
        if delta <= 0:
            return False
        if not self.percent:
            return delta > self.value
        return old == 0 or delta * 100 > self.value * old

    def __str__(self) -> str:
        value = Fraction(self.value)
        text = str(value.numerator) if value.denominator == 1 else f"{float(value):g}"
        return f"{text}%" if self.percent else text


DEFAULT_THRESHOLDS: Mapping[str, Threshold] = MappingProxyType({
    "instructions": Threshold(10, percent=True),
    "stack": Threshold(0),  # bytes: the 512-byte stack is the scarcest budget, so any growth
    "processed_insns": Threshold(10, percent=True),
})


def parse_thresholds(text: str) -> dict[str, Threshold]:
    """``"instructions=10%,stack=32,stack[6.1]=0"`` -> the thresholds it names (the defaults
    are not included; :func:`compare` falls back to them). Blank text names none.

    Raises :class:`ValueError` naming the bad part and the valid form."""
    result: dict[str, Threshold] = {}
    if not text.strip():
        return result
    for part in text.split(","):
        if not part.strip():
            raise ValueError(f"bad thresholds {text!r}: an empty entry (a stray comma?); {_FORM}")
        key, sep, value = (s.strip() for s in part.partition("="))
        key_match = _KEY.fullmatch(key)
        value_match = _VALUE.fullmatch(value)
        if not sep or key_match is None or value_match is None:
            what = ("no '='" if not sep else f"unknown figure {key!r}" if key_match is None
                    else f"bad value {value!r}")
            raise ValueError(f"bad threshold {part.strip()!r}: {what}; {_FORM}")
        if key_match.group(1) == "instructions" and key_match.group(2) is not None:
            raise ValueError(f"bad threshold {part.strip()!r}: instructions are the same on "
                             f"every kernel, so they take no [KERNEL]; {_FORM}")
        if key in result:
            raise ValueError(f"bad threshold {part.strip()!r}: {key} is given twice; {_FORM}")
        absolute, percent = value_match.groups()
        result[key] = (Threshold(int(absolute)) if absolute is not None
                       else Threshold(Fraction(percent), percent=True))
    return result


def _family(key: str) -> str:
    return key.partition("[")[0]


def threshold_for(key: str, thresholds: Mapping[str, Threshold]) -> Threshold:
    """The threshold of figure *key*: its own entry, else its family's, else the default."""
    return thresholds.get(key) or thresholds.get(_family(key)) or DEFAULT_THRESHOLDS[_family(key)]


def _bad(where: str, what: str, path: str | None) -> BaselineError:
    return BaselineError(f"not a pytest-ebpf report: {where} {what}; {FIX}", path)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_report(doc: object, path: str | None = None) -> dict[str, Any]:
    """*doc* itself when it is a report of :data:`SCHEMA` whose figures can be read;
    :class:`BaselineError` naming *path* (or the document) and the fix otherwise."""
    if not isinstance(doc, dict) or "schema" not in doc:
        raise _bad("the document", "has no 'schema' field", path)
    if doc["schema"] != SCHEMA:
        raise BaselineError(f"report schema {doc['schema']!r} is not the one this pytest-ebpf "
                            f"reads ({SCHEMA}); {FIX} with this version", path)
    programs = doc.get("programs")
    if not isinstance(programs, list):
        raise _bad("'programs'", "is not a list", path)
    names: set[str] = set()
    for i, prog in enumerate(programs):
        where = f"programs[{i}]"
        if not isinstance(prog, dict) or not isinstance(prog.get("name"), str):
            raise _bad(where, "has no name", path)
        if prog["name"] in names:
            raise _bad(where, f"repeats the program name {prog['name']!r}", path)
        names.add(prog["name"])
        if "instructions" in prog and not _int(prog["instructions"]):
            raise _bad(f"{where}.instructions", "is not an integer", path)
        for section, field in (("stack", "total"), ("load", "processed_insns")):
            per_kernel = prog.get(section) or {}
            if not isinstance(per_kernel, dict):
                raise _bad(f"{where}.{section}", "is not an object keyed by kernel", path)
            for kernel, entry in per_kernel.items():
                if not isinstance(entry, dict) or (field in entry and not _int(entry[field])):
                    raise _bad(f"{where}.{section}[{kernel!r}].{field}", "is not an integer",
                               path)
    return doc


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check the report at *path* (a regular file, at most :data:`MAX_REPORT_SIZE`
    bytes, read without blocking on a FIFO or device); :class:`BaselineError` otherwise."""
    label = os.fspath(path)
    try:
        fd = os.open(label, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise BaselineError(f"not a regular file; {FIX}", label)
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(MAX_REPORT_SIZE + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise BaselineError(f"cannot read the report ({exc.strerror or exc}); {FIX}",
                            label) from exc
    if len(data) > MAX_REPORT_SIZE:
        raise BaselineError(f"over {MAX_REPORT_SIZE} bytes, too big for a report; {FIX}", label)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc
        raise BaselineError(f"not a pytest-ebpf report (not JSON: {reason}); {FIX}",
                            label) from exc
    return check_report(doc, label)


def figures(doc: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Program name -> figure key -> value: ``instructions``, ``stack[KERNEL]`` and
    ``processed_insns[KERNEL]``, each only where the report has it."""
    result: dict[str, dict[str, int]] = {}
    for prog in doc.get("programs", []):
        figs = result.setdefault(prog["name"], {})
        if "instructions" in prog:
            figs["instructions"] = prog["instructions"]
        for section, field, family in (("stack", "total", "stack"),
                                       ("load", "processed_insns", "processed_insns")):
            for kernel, entry in (prog.get(section) or {}).items():
                if field in entry:
                    figs[f"{family}[{kernel}]"] = entry[field]
    return result


@dataclass(frozen=True)
class Change:
    """One figure of one program, old against new (``None`` where a side lacks it)."""

    program: str
    figure: str
    old: int | None
    new: int | None
    threshold: Threshold

    @property
    def delta(self) -> int | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def percent(self) -> float | None:
        """Growth in percent of the old figure; ``None`` when one side lacks it or it was 0."""
        return None if self.delta is None or not self.old else self.delta * 100 / self.old

    @property
    def exceeded(self) -> bool:
        return (self.old is not None and self.new is not None
                and self.threshold.exceeded(self.old, self.new))


@dataclass(frozen=True)
class Comparison:
    """Every :class:`Change`, the programs only in the new (added) or old (removed) report,
    and the thresholds in force (defaults overridden by what the caller gave)."""

    changes: tuple[Change, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    thresholds: tuple[tuple[str, Threshold], ...]

    @property
    def exceeded(self) -> tuple[Change, ...]:
        """The changes past their threshold, worst first (growth from 0 counts as worst)."""
        past = [c for c in self.changes if c.exceeded]
        return tuple(sorted(past, key=lambda c: -(c.percent if c.percent is not None
                                                  else float("inf"))))

    def as_json(self) -> dict[str, Any]:
        """The ``compare --json`` document."""
        return {
            "exceeded": len(self.exceeded),
            "added": list(self.added),
            "removed": list(self.removed),
            "thresholds": {k: str(t) for k, t in self.thresholds},
            "changes": [
                {"program": c.program, "figure": c.figure, "old": c.old, "new": c.new,
                 "delta": c.delta, "percent": c.percent, "threshold": str(c.threshold),
                 "exceeded": c.exceeded}
                for c in self.changes
            ],
        }


def _order(key: str) -> int:
    return FAMILIES.index(_family(key))


def compare(old_doc: Mapping[str, Any], new_doc: Mapping[str, Any],
            thresholds: Mapping[str, Threshold] | None = None) -> Comparison:
    """Compare every figure of *old_doc* with *new_doc* (both checked with
    :func:`check_report`); *thresholds* override :data:`DEFAULT_THRESHOLDS`, a full figure key
    (``stack[6.1]``) over its family (``stack``)."""
    old = figures(check_report(old_doc, "the old report"))
    new = figures(check_report(new_doc, "the new report"))
    given = dict(thresholds or {})
    changes = []
    for program in [*new, *(p for p in old if p not in new)]:
        before, after = old.get(program, {}), new.get(program, {})
        keys = sorted([*after, *(k for k in before if k not in after)], key=_order)
        changes += [Change(program, k, before.get(k), after.get(k), threshold_for(k, given))
                    for k in keys]
    merged = {**DEFAULT_THRESHOLDS, **given}
    return Comparison(
        changes=tuple(changes),
        added=tuple(p for p in new if p not in old),
        removed=tuple(p for p in old if p not in new),
        thresholds=tuple(sorted(merged.items(), key=lambda kv: (_order(kv[0]), kv[0]))),
    )


def _diff(c: Change) -> str:
    if c.delta is None:
        return "added" if c.old is None else "removed"
    if c.percent is None:
        return f"{c.delta:+d}"
    return f"{c.delta:+d} ({c.percent:+.1f}%)"


def render(comparison: Comparison, only_changed: bool = False) -> list[str]:
    """The ``veristat -C``-like table: rows past their threshold first (marked ``!``, worst
    first), then the others in report order; *only_changed* drops rows that did not move.
    Then the summary and the thresholds used, so a reader can tell why a row failed."""
    past = comparison.exceeded
    rest = [c for c in comparison.changes
            if not c.exceeded and not (only_changed and c.delta == 0)]
    rows = [["", "program", "figure", "old", "new", "diff", ""]]
    for c in [*past, *rest]:
        rows.append(["!" if c.exceeded else "", c.program, c.figure,
                     "-" if c.old is None else str(c.old), "-" if c.new is None else str(c.new),
                     _diff(c), f"past {c.threshold}" if c.exceeded else ""])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {3, 4}
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows] if len(rows) > 1 else ["(no figures to compare)"]
    summary = f"{len(past)} figure(s) grew past their threshold"
    if comparison.added:
        summary += f"; programs added: {', '.join(comparison.added)}"
    if comparison.removed:
        summary += f"; programs removed: {', '.join(comparison.removed)}"
    used = ",".join(f"{k}={t}" for k, t in comparison.thresholds)
    return [*lines, "", summary, f"thresholds: {used}"]
