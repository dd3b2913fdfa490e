"""Budgets: written in Cargo.toml metadata or the ini/option; every bad spelling is one error
that names where it was written and the valid form."""

from __future__ import annotations

import pytest

from pytest_ebpf.analysis.budgets import BudgetError, budgets_from_metadata, parse_budget_text


def test_text_and_metadata_merge_the_option_winning_per_figure() -> None:
    cargo = budgets_from_metadata({"stack": 384, "instructions": "4000",
                                   "programs": {"lock": {"stack": 128}}}, "Cargo.toml")
    text = parse_budget_text("instructions=100, lock.processed_insns=5", "--ebpf-budget")
    merged = cargo.merged(text)
    lock = merged.for_program("lock")
    assert {f: (b.limit, b.source) for f, b in lock.items()} == {
        "stack": (128, "Cargo.toml"), "instructions": (100, "--ebpf-budget"),
        "processed_insns": (5, "--ebpf-budget")}
    assert merged.for_program("other")["stack"].limit == 384
    assert "lock.stack <= 128 (from Cargo.toml)" in merged.lines()


@pytest.mark.parametrize(("text", "message"), [
    ("stack", "'stack' is not FIGURE=LIMIT or PROGRAM.FIGURE=LIMIT"),
    ("stak=5", "unknown figure 'stak'; budgets limit stack, instructions, processed_insns"),
    ("stack=-1", "-1 must be positive"),
    ("stack=lots", "'lots' is not a whole number"),
])
def test_bad_text_names_the_part_and_the_form(text: str, message: str) -> None:
    with pytest.raises(BudgetError, match=r"^--ebpf-budget") as info:
        parse_budget_text(text, "--ebpf-budget")
    assert message in str(info.value)


def test_bad_metadata_names_the_file_and_the_key() -> None:
    with pytest.raises(BudgetError, match=r"Cargo.toml \[package.metadata.pytest-ebpf\] stack: "
                                          r"True is not a whole number"):
        budgets_from_metadata({"stack": True}, "Cargo.toml")
    with pytest.raises(BudgetError, match=r"\[package.metadata.pytest-ebpf.programs.lock\]: "
                                          r"expected a table"):
        budgets_from_metadata({"programs": {"lock": 3}}, "Cargo.toml")


def test_a_bad_budget_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    obj = pytester.path / "empty.o"
    obj.write_bytes(b"")
    result = pytester.runpytest_subprocess(f"--ebpf-object={obj}", "--ebpf-budget=stack",
                                           "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ebpf-budget=stack: 'stack' is not FIGURE=LIMIT or "
                                 "PROGRAM.FIGURE=LIMIT*fix: write budgets as FIGURE = LIMIT*"])
