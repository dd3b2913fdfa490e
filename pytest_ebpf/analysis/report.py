"""Render assertion failures: summary first, worst case first, capped, the remedy last."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pytest_ebpf.errors import EbpfError

MAX_CASES = 5
MAX_LINES = 60


def table_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    """*rows* (the header first) as aligned text lines, two spaces between columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


class EbpfAssertionError(EbpfError, AssertionError):
    """An assertion helper failed; ``str(err)`` is the rendered report."""

    def __init__(self, report: Report) -> None:
        self.report = report
        super().__init__(report.render())


@dataclass(frozen=True)
class Case:
    """One failing program (or function): a headline, detail lines and its own fix."""

    headline: str
    severity: int
    """Larger is worse; cases are listed worst first."""
    details: tuple[str, ...] = ()
    fix: str = ""


@dataclass(frozen=True)
class Report:
    check: str
    summary: str
    cases: tuple[Case, ...] = field(default_factory=tuple)
    remedy: str = ""

    def render(self) -> str:
        ordered = sorted(self.cases, key=lambda c: -c.severity)
        lines = [f"{self.check}: {self.summary}"]
        for case in ordered[:MAX_CASES]:
            lines.append("")
            lines.append(case.headline)
            lines += [f"    {d}" for d in case.details]
            if case.fix:
                lines.append(f"    fix: {case.fix}")
        if len(ordered) > MAX_CASES:
            lines.append(f"... and {len(ordered) - MAX_CASES} more")
        if len(lines) > MAX_LINES:
            lines = [*lines[: MAX_LINES - 1], f"... ({len(lines) - MAX_LINES + 1} lines cut)"]
        if self.remedy:
            lines += ["", f"remedy: {self.remedy}"]
        return "\n".join(lines)


def fail(check: str, summary: str, cases: Sequence[Case], remedy: str = "") -> None:
    """Raise the rendered report (pytest shows the message without a traceback of ours)."""
    __tracebackhide__ = True
    raise EbpfAssertionError(Report(check, summary, tuple(cases), remedy))
