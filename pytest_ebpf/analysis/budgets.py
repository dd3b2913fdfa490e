"""Budgets: a project's own limits per program, tighter than the kernel's.

Written in the eBPF crate's ``Cargo.toml``::

    [package.metadata.pytest-ebpf]
    stack = 384             # combined stack bytes, as the kernel adds them up
    instructions = 4000     # instructions in the object
    processed_insns = 200000  # instructions the verifier processes (when loaded)

    [package.metadata.pytest-ebpf.programs.lock]
    stack = 128

or in the ini (``ebpf_budget = stack=384, lock.stack=128``) or as ``--ebpf-budget``; the ini or
option wins per figure. Every figure remembers where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_ebpf.errors import EbpfError

__all__ = ["FIGURES", "Budget", "BudgetError", "Budgets", "budgets_from_metadata",
           "parse_budget_text"]

FIGURES = ("stack", "instructions", "processed_insns")
"""What a budget may limit."""


class BudgetError(EbpfError):
    """A budget is written wrongly; the message names where and the valid form."""


@dataclass(frozen=True)
class Budget:
    """One figure's limit and where it was written."""

    figure: str
    limit: int
    source: str


@dataclass(frozen=True)
class Budgets:
    """Every budget of a session: for all programs, and per program (which wins)."""

    default: dict[str, Budget] = field(default_factory=dict)
    programs: dict[str, dict[str, Budget]] = field(default_factory=dict)

    def for_program(self, name: str) -> dict[str, Budget]:
        """Figure -> budget for program *name*."""
        return {**self.default, **self.programs.get(name, {})}

    def merged(self, other: Budgets) -> Budgets:
        """These budgets with *other*'s figures replacing ours (other wins)."""
        programs = {k: dict(v) for k, v in self.programs.items()}
        for name, figures in other.programs.items():
            programs.setdefault(name, {}).update(figures)
        return Budgets({**self.default, **other.default}, programs)

    def lines(self) -> list[str]:
        """One line per budget for the report header."""
        out = [f"{b.figure} <= {b.limit} (from {b.source})" for b in self.default.values()]
        for name, figures in sorted(self.programs.items()):
            out += [f"{name}.{b.figure} <= {b.limit} (from {b.source})"
                    for b in figures.values()]
        return out


def _limit(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BudgetError(f"{where}: {value!r} is not a whole number of bytes or instructions")
    try:
        number = int(value)
    except ValueError as exc:
        raise BudgetError(f"{where}: {value!r} is not a whole number") from exc
    if number <= 0:
        raise BudgetError(f"{where}: {number} must be positive")
    return number


def _figure(name: str, where: str) -> str:
    if name not in FIGURES:
        raise BudgetError(f"{where}: unknown figure {name!r}; budgets limit "
                          f"{', '.join(FIGURES)}")
    return name


def budgets_from_metadata(table: Mapping[str, object], source: str) -> Budgets:
    """Budgets from ``[package.metadata.pytest-ebpf]`` (*source* names the file)."""
    default: dict[str, Budget] = {}
    programs: dict[str, dict[str, Budget]] = {}
    for key, value in table.items():
        where = f"{source} [package.metadata.pytest-ebpf] {key}"
        if key == "programs":
            if not isinstance(value, Mapping):
                raise BudgetError(f"{where}: expected a table of programs")
            for prog, figures in value.items():
                pwhere = f"{source} [package.metadata.pytest-ebpf.programs.{prog}]"
                if not isinstance(figures, Mapping):
                    raise BudgetError(f"{pwhere}: expected a table such as stack = 256")
                programs[str(prog)] = {
                    _figure(str(k), f"{pwhere} {k}"): Budget(
                        str(k), _limit(v, f"{pwhere} {k}"), source)
                    for k, v in figures.items()}
            continue
        default[_figure(key, where)] = Budget(key, _limit(value, where), source)
    return Budgets(default, programs)


def parse_budget_text(text: str, source: str) -> Budgets:
    """``stack=384, instructions=4000, lock.stack=128`` (the ini and option form)."""
    default: dict[str, Budget] = {}
    programs: dict[str, dict[str, Budget]] = {}
    for part in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise BudgetError(f"{source}: {part!r} is not FIGURE=LIMIT or PROGRAM.FIGURE=LIMIT "
                              "(e.g. stack=384, lock.instructions=4000)")
        key = key.strip()
        prog, dot, figure = key.rpartition(".")
        figure = _figure(figure if dot else key, f"{source}: {part!r}")
        budget = Budget(figure, _limit(value.strip(), f"{source}: {part!r}"), source)
        if dot:
            programs.setdefault(prog, {})[figure] = budget
        else:
            default[figure] = budget
    return Budgets(default, programs)
