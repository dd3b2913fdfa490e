"""The one finding type every static rule reports (:mod:`pytest_ebpf.analysis.rules`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pytest_ebpf.obj.isa import Insn

__all__ = ["Finding", "Severity"]

Severity = Literal["error", "note"]


@dataclass(frozen=True)
class Finding:
    """One problem found in a program, by one rule, for one kernel (or for every kernel)."""

    check: str
    """Stable id of what was found: ``indirect_call``, ``stack_combined_too_large``..."""
    program: str
    function: str
    """The function to look at."""
    insn: Insn | None
    """The offending instruction (section-relative slot in ``insn.index``), when there is one."""
    message: str
    fix: str = ""
    rule: str = ""
    """The registry rule that found it (:data:`pytest_ebpf.analysis.rules.RULES`)."""
    kernel: str | None = None
    """The kernel profile that judged (its label), for rules that depend on the kernel."""
    severity: Severity = "error"
    """``error``: the kernel (or the loader) refuses the program; ``note``: it loads, but not
    everywhere (e.g. only with privileges)."""
    chain: tuple[str, ...] = ()
    """The call chain concerned, entry first (stack findings)."""
    chain_frames: tuple[int, ...] = ()
    """Bytes per frame of :attr:`chain`."""
    total: int | None = None
    """The figure judged (combined bytes, instructions...)."""
    policy: bool = False
    """The project's policy (BTF kept, a budget), not the kernel's: such a finding fails the
    checks but does not predict a rejection."""
    reason: str = ""
    """The verdict's reason in a few words (``frames rounded to 32: 64 + 480 = 544 > 512``);
    empty: :attr:`message` without its ``program NAME:`` prefix."""

    def as_json(self) -> dict[str, Any]:
        """The finding as the JSON documents (inspect, the session report) carry it."""
        doc: dict[str, Any] = {
            "check": self.check,
            "rule": self.rule,
            "severity": self.severity,
            "kernel": self.kernel,
            "program": self.program,
            "function": self.function,
            "insn": self.insn.index if self.insn is not None else None,
            "message": self.message,
            "fix": self.fix,
        }
        if self.chain:
            doc["chain"] = list(self.chain)
        if self.total is not None:
            doc["total"] = self.total
        return doc

    @property
    def short(self) -> str:
        """:attr:`reason`, or the message without the program's name."""
        if self.reason:
            return self.reason
        prefix = f"program {self.program}: "
        return self.message[len(prefix):] if self.message.startswith(prefix) else self.message
