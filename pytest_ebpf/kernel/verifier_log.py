"""Pure helpers that read the kernel verifier's log.

The log ends with a statistics block the kernel prints whether or not verification succeeded::

    <error message, on failure>
    verification time 12 usec          (only with log_level & BPF_LOG_STATS)
    stack depth 32+0+16                (only with log_level & BPF_LOG_STATS, one entry per subprog)
    processed 8 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 ...

``parse_verifier_log`` extracts those figures, the decisive error line and the instruction lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["VerifierSummary", "parse_verifier_log"]

_PROCESSED = re.compile(r"^processed (\d+) insns\b")
_STACK_DEPTH = re.compile(r"^stack depth (\d+(?:\+\d+)*)\s*$")
_INSN = re.compile(r"^(\d+): (\([0-9a-f]{2}\) .*)$")
_STATS_PREFIXES = ("verification time ", "stack depth ")
# State dumps the kernel prints after its reason ("infinite loop detected at insn 3" is followed
# by "cur state: ..." and "old state: ..."): never the decisive line.
_AFTER_REASON = ("cur state: ", "old state: ")
# Lines that close a successful walk, never an error.
_SUCCESS_TAIL = re.compile(
    r"^(\d+: \([0-9a-f]{2}\) |from \d+ to \d+: |\d+: safe$|safe$|Func#\d+ .* is safe|Validating )"
)


@dataclass(frozen=True)
class VerifierSummary:
    """What a verifier log says.

    ``processed_insns``: the N of "processed N insns" (None when the line is absent).
    ``stack_depth``: per-subprogram stack depths from "stack depth A+B+..." (empty when absent;
    the kernel prints it only with ``log_level & BPF_LOG_STATS``).
    ``error_line``: the decisive line of a rejection, None when the log reads as a success.
    ``insn_lines``: ``(index, text)`` for every "N: (op) ..." line, in log order, e.g.
    ``(12, "(85) call bpf_map_lookup_elem#1")``.
    """

    processed_insns: int | None
    stack_depth: tuple[int, ...]
    error_line: str | None
    insn_lines: list[tuple[int, str]]


def parse_verifier_log(log: str, *, failed: bool | None = None) -> VerifierSummary:
    """Summarise a verifier log.

    ``failed`` says whether the load failed, when the caller knows: True always reports the last
    meaningful line as ``error_line``; False never does; None (the default) guesses from the log:
    a log whose last line before the statistics is an instruction or a pruning ("safe") line is a
    success.
    """
    lines = [line.rstrip() for line in log.replace("\x00", "").splitlines()]
    processed: int | None = None
    processed_at: int | None = None
    depth: tuple[int, ...] = ()
    insns: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = _PROCESSED.match(line)
        if m:
            processed = int(m.group(1))
            processed_at = i
            continue
        m = _STACK_DEPTH.match(line)
        if m:
            depth = tuple(int(part) for part in m.group(1).split("+"))
            continue
        m = _INSN.match(line)
        if m:
            insns.append((int(m.group(1)), m.group(2).strip()))

    error_line: str | None = None
    if failed is not False:
        end = processed_at if processed_at is not None else len(lines)
        candidate = None
        for line in reversed(lines[:end]):
            text = line.strip()
            if text and not text.startswith(_STATS_PREFIXES + _AFTER_REASON):
                candidate = text
                break
        if candidate is not None and (failed or not _SUCCESS_TAIL.match(candidate)):
            error_line = candidate
    return VerifierSummary(
        processed_insns=processed, stack_depth=depth, error_line=error_line, insn_lines=insns
    )
