"""Tests of baselines: pytest_ebpf.analysis.baseline and ``pytest-ebpf compare``.

Reports are built here as dicts in the shape the plugin's ``--ebpf-report`` writes, and written
to files where a file is what is compared; nothing is mocked.
"""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from pytest_ebpf.analysis.baseline import (
    DEFAULT_THRESHOLDS,
    MAX_REPORT_SIZE,
    BaselineError,
    Change,
    Threshold,
    check_report,
    compare,
    figures,
    load_report,
    parse_thresholds,
    render,
    threshold_for,
)
from pytest_ebpf.cli.compare import run_compare
from pytest_ebpf.cli.main import main
from pytest_ebpf.errors import EbpfError

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / ".venv/bin/pytest-ebpf"


def _report(*programs: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": 1,
        "tool": "pytest-ebpf",
        "object": "target/bpfel-unknown-none/release/lock",
        "kernels": [{"name": "host", "release": "6.18.0-1-amd64", "source": "default"},
                    {"name": "6.1", "release": "6.1", "source": "option"}],
        "programs": list(programs),
    }


def _prog(name: str, insns: int, stack: dict[str, int] | None = None,
          processed: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "name": name, "section": "xdp", "type": "xdp", "instructions": insns, "btf": True,
        "helpers": ["bpf_map_lookup_elem"],
        "stack": {k: {"total": v, "chain": [name], "frames": [v]}
                  for k, v in (stack or {}).items()},
        "load": {k: {"verdict": "loaded", "processed_insns": v, "verified_insns": v // 2}
                 for k, v in (processed or {}).items()},
        "findings": [],
    }


LOCK = _prog("lock", 120, {"host": 48, "6.1": 64}, {"host": 200})


def _write(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _change(old: dict[str, Any], new: dict[str, Any], program: str, figure: str,
            thresholds: str = "") -> Change:
    comparison = compare(old, new, parse_thresholds(thresholds))
    (change,) = [c for c in comparison.changes if (c.program, c.figure) == (program, figure)]
    return change


# --- figures ---------------------------------------------------------------------------------


def test_figures_of_a_report() -> None:
    assert figures(_report(LOCK)) == {"lock": {
        "instructions": 120, "stack[host]": 48, "stack[6.1]": 64, "processed_insns[host]": 200,
    }}


def test_figures_only_where_present() -> None:
    bare = _prog("bare", 10)
    del bare["load"]
    rejected = _prog("rejected", 30, {"host": 8})
    rejected["load"] = {"host": {"verdict": "rejected"}, "6.1": {}}
    assert figures(_report(bare, rejected)) == {
        "bare": {"instructions": 10},
        "rejected": {"instructions": 30, "stack[host]": 8},
    }
    assert figures(_report()) == {}


# --- thresholds ------------------------------------------------------------------------------


def test_parse_thresholds() -> None:
    assert parse_thresholds("instructions=10%,stack=32,processed_insns=5%") == {
        "instructions": Threshold(10, percent=True),
        "stack": Threshold(32),
        "processed_insns": Threshold(5, percent=True),
    }
    assert parse_thresholds(" stack[6.1] = 0 , processed_insns[host]=2.5% ") == {
        "stack[6.1]": Threshold(0),
        "processed_insns[host]": Threshold(Fraction(5, 2), percent=True),
    }
    assert parse_thresholds("") == {}
    assert parse_thresholds("  ") == {}


def test_defaults() -> None:
    assert dict(DEFAULT_THRESHOLDS) == {
        "instructions": Threshold(10, percent=True),
        "stack": Threshold(0),
        "processed_insns": Threshold(10, percent=True),
    }
    assert [str(t) for t in DEFAULT_THRESHOLDS.values()] == ["10%", "0", "10%"]
    assert str(Threshold(Fraction(5, 2), percent=True)) == "2.5%"


@pytest.mark.parametrize(("text", "names"), [
    ("stak=5", "unknown figure 'stak'"),
    ("stack", "no '='"),
    ("stack=", "bad value ''"),
    ("stack=-1", "bad value '-1'"),
    ("stack=1.5", "bad value '1.5'"),
    ("stack=ten", "bad value 'ten'"),
    ("instructions=inf%", "bad value 'inf%'"),
    ("stack[]=1", "unknown figure 'stack[]'"),
    ("instructions[host]=1", "take no [KERNEL]"),
    ("stack=1,stack=2", "stack is given twice"),
    ("stack=1,,instructions=2%", "an empty entry"),
])
def test_parse_thresholds_refuses(text: str, names: str) -> None:
    with pytest.raises(ValueError, match="bad threshold") as info:
        parse_thresholds(text)
    message = str(info.value)
    assert names in message
    assert "\n" not in message
    assert "FIGURE=N or FIGURE=N%" in message  # the valid form
    assert "instructions=10%,stack=32" in message  # and an example of it


def test_threshold_lookup_full_key_wins_over_family() -> None:
    given = parse_thresholds("stack=32,stack[6.1]=0")
    assert threshold_for("stack[6.1]", given) == Threshold(0)
    assert threshold_for("stack[host]", given) == Threshold(32)
    assert threshold_for("processed_insns[host]", given) == Threshold(10, percent=True)
    assert threshold_for("instructions", {}) == Threshold(10, percent=True)


# --- growth against thresholds ---------------------------------------------------------------


@pytest.mark.parametrize(("new", "exceeded"), [(132, False), (133, True), (119, False),
                                                (120, False), (131, False)])
def test_percent_threshold(new: int, exceeded: bool) -> None:
    """120 -> 132 is exactly 10%, which passes: growth must be strictly past the threshold
    (exact arithmetic: 12 * 100 / 120 in floats is 10.000000000000002)."""
    change = _change(_report(LOCK), _report(_prog("lock", new)), "lock", "instructions")
    assert change.exceeded is exceeded
    assert change.delta == new - 120
    assert change.percent == pytest.approx((new - 120) * 100 / 120)


def test_percent_threshold_with_a_fraction() -> None:
    old = _report(_prog("p", 1000))
    assert not _change(old, _report(_prog("p", 1003)), "p", "instructions",
                       "instructions=0.3%").exceeded
    assert _change(old, _report(_prog("p", 1004)), "p", "instructions",
                   "instructions=0.3%").exceeded


@pytest.mark.parametrize(("new", "exceeded"), [(48, False), (56, True), (40, False)])
def test_stack_default_fails_any_growth(new: int, exceeded: bool) -> None:
    change = _change(_report(LOCK), _report(_prog("lock", 120, {"host": new})), "lock",
                     "stack[host]")
    assert change.exceeded is exceeded
    assert change.threshold == Threshold(0)


@pytest.mark.parametrize(("new", "exceeded"), [(80, False), (81, True), (79, False)])
def test_absolute_threshold(new: int, exceeded: bool) -> None:
    change = _change(_report(LOCK), _report(_prog("lock", 120, {"host": new})), "lock",
                     "stack[host]", "stack=32")
    assert (change.old, change.new, change.delta) == (48, new, new - 48)
    assert change.exceeded is exceeded


def test_growth_from_zero() -> None:
    old = _report(_prog("p", 10, {"host": 0}))
    new = _report(_prog("p", 10, {"host": 8}))
    assert _change(old, new, "p", "stack[host]").exceeded
    assert _change(old, new, "p", "stack[host]", "stack=50%").exceeded  # any % of 0 is past
    assert not _change(old, new, "p", "stack[host]", "stack=8").exceeded
    assert _change(old, new, "p", "stack[host]").percent is None


def test_shrinking_never_fails() -> None:
    new = _report(_prog("lock", 10, {"host": 0, "6.1": 0}, {"host": 1}))
    comparison = compare(_report(LOCK), new, parse_thresholds(
        "instructions=0,stack=0,processed_insns=0"))
    assert not comparison.exceeded
    assert all(c.delta is not None and c.delta < 0 for c in comparison.changes)


def test_full_key_threshold_used_in_compare() -> None:
    new = _report(_prog("lock", 120, {"host": 60, "6.1": 76}, {"host": 200}))
    comparison = compare(_report(LOCK), new, parse_thresholds("stack=16,stack[6.1]=8"))
    assert [(c.figure, c.delta) for c in comparison.exceeded] == [("stack[6.1]", 12)]


def test_worst_first() -> None:
    old = _report(_prog("a", 100, {"host": 0}), _prog("b", 100), _prog("c", 100))
    new = _report(_prog("a", 100, {"host": 16}), _prog("b", 150), _prog("c", 120))
    worst = compare(old, new).exceeded
    assert [(c.program, c.figure) for c in worst] == [
        ("a", "stack[host]"), ("b", "instructions"), ("c", "instructions")]


# --- programs and kernels on one side only ---------------------------------------------------


def test_added_and_removed_programs_do_not_fail() -> None:
    old = _report(LOCK, _prog("gone", 50, {"host": 512}))
    new = _report(LOCK, _prog("fresh", 4000, {"host": 512}))
    comparison = compare(old, new)
    assert comparison.added == ("fresh",)
    assert comparison.removed == ("gone",)
    assert not comparison.exceeded
    fresh = [c for c in comparison.changes if c.program == "fresh"]
    assert [(c.figure, c.old, c.new, c.delta) for c in fresh] == [
        ("instructions", None, 4000, None), ("stack[host]", None, 512, None)]
    gone = [c for c in comparison.changes if c.program == "gone"]
    assert [(c.figure, c.old, c.new) for c in gone] == [
        ("instructions", 50, None), ("stack[host]", 512, None)]


def test_kernel_in_one_side_only() -> None:
    old = _report(_prog("lock", 120, {"host": 48}, {"host": 200}))
    new = _report(_prog("lock", 120, {"host": 48, "6.1": 400}, {"6.1": 9000}))
    by_figure = {c.figure: c for c in compare(old, new).changes}
    assert list(by_figure) == ["instructions", "stack[host]", "stack[6.1]",
                               "processed_insns[6.1]", "processed_insns[host]"]
    assert (by_figure["stack[6.1]"].old, by_figure["stack[6.1]"].new) == (None, 400)
    assert (by_figure["processed_insns[host]"].old,
            by_figure["processed_insns[host]"].new) == (200, None)
    assert not any(c.exceeded for c in by_figure.values())


# --- rendering -------------------------------------------------------------------------------


def test_render_table() -> None:
    old = _report(LOCK, _prog("gone", 5))
    new = _report(_prog("lock", 132, {"host": 56, "6.1": 64}, {"host": 260}), _prog("new", 7))
    lines = render(compare(old, new))
    assert lines[0].split() == ["program", "figure", "old", "new", "diff"]
    assert lines[1].split() == ["!", "lock", "processed_insns[host]", "200", "260", "+60",
                                "(+30.0%)", "past", "10%"]  # worst first
    assert lines[2].split() == ["!", "lock", "stack[host]", "48", "56", "+8", "(+16.7%)",
                                "past", "0"]
    assert lines[3].split() == ["lock", "instructions", "120", "132", "+12", "(+10.0%)"]
    assert lines[4].split() == ["lock", "stack[6.1]", "64", "64", "+0", "(+0.0%)"]
    assert lines[5].split() == ["new", "instructions", "-", "7", "added"]
    assert lines[6].split() == ["gone", "instructions", "5", "-", "removed"]
    assert lines[-2] == ("2 figure(s) grew past their threshold; programs added: new; "
                         "programs removed: gone")
    assert lines[-1] == "thresholds: instructions=10%,stack=0,processed_insns=10%"
    changed = render(compare(old, new), only_changed=True)
    assert not any("stack[6.1]" in line for line in changed)
    assert len(changed) == len(lines) - 1


def test_render_thresholds_used_and_nothing_to_compare() -> None:
    lines = render(compare(_report(), _report(), parse_thresholds("stack[6.1]=64")))
    assert lines == ["(no figures to compare)", "", "0 figure(s) grew past their threshold",
                     "thresholds: instructions=10%,stack=0,stack[6.1]=64,processed_insns=10%"]


# --- bad reports -----------------------------------------------------------------------------


def _load_error(path: Path) -> BaselineError:
    with pytest.raises(BaselineError) as info:
        load_report(path)
    err = info.value
    assert isinstance(err, EbpfError)
    assert err.path == str(path)
    assert str(err) == f"{path}: {err.reason}"
    assert "\n" not in str(err)
    return err


def test_load_report(tmp_path: Path) -> None:
    doc = _report(LOCK)
    assert load_report(_write(tmp_path / "r.json", doc)) == doc


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "not JSON"),
    (b'{"schema": 1,', "not JSON"),
    (b"\xff\xfe\x00garbage", "not JSON"),
    ([1, 2], "has no 'schema' field"),
    ({"programs": []}, "has no 'schema' field"),
    ({"schema": 2, "programs": []}, "report schema 2 is not the one"),
    ({"schema": 1}, "'programs' is not a list"),
    ({"schema": 1, "programs": [{"instructions": 3}]}, "programs[0] has no name"),
    ({"schema": 1, "programs": [{"name": "p", "instructions": "3"}]},
     "programs[0].instructions is not an integer"),
    ({"schema": 1, "programs": [{"name": "p", "stack": {"host": {"total": True}}}]},
     "programs[0].stack['host'].total is not an integer"),
    ({"schema": 1, "programs": [{"name": "p", "load": [1]}]},
     "programs[0].load is not an object keyed by kernel"),
    ({"schema": 1, "programs": [{"name": "p"}, {"name": "p"}]},
     "programs[1] repeats the program name 'p'"),
])
def test_bad_report_files(tmp_path: Path, content: object, reason: str) -> None:
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _write(path, content)
    err = _load_error(path)
    assert reason in err.reason
    assert "--ebpf-save-baseline PATH" in err.reason  # the fix


def test_not_json_is_raised_from_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("{not json")
    err = _load_error(path)
    assert isinstance(err.__cause__, json.JSONDecodeError)


def test_unreadable_files(tmp_path: Path) -> None:
    missing = _load_error(tmp_path / "missing.json")
    assert missing.reason == ("cannot read the report (No such file or directory); save one "
                              "with `pytest --ebpf-save-baseline PATH`")
    assert isinstance(missing.__cause__, FileNotFoundError)
    assert "not a regular file" in _load_error(tmp_path).reason  # a directory
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "not a regular file" in _load_error(fifo).reason  # refused, without blocking


def test_too_big(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.truncate(MAX_REPORT_SIZE + 1)  # sparse: no disk used
    assert "too big for a report" in _load_error(path).reason


def test_compare_checks_the_documents() -> None:
    with pytest.raises(BaselineError, match=r"^the old report: not a pytest-ebpf report"):
        compare({"programs": []}, _report())
    with pytest.raises(BaselineError, match=r"^the new report: report schema 0"):
        compare(_report(), {"schema": 0})
    assert check_report(_report(LOCK)) == _report(LOCK)


# --- the command -----------------------------------------------------------------------------


@pytest.fixture
def reports(tmp_path: Path) -> dict[str, Path]:
    grown = copy.deepcopy(LOCK)
    grown["stack"]["6.1"]["total"] = 96
    return {
        "old": _write(tmp_path / "old.json", _report(LOCK)),
        "same": _write(tmp_path / "same.json", _report(LOCK)),
        "grown": _write(tmp_path / "grown.json", _report(grown)),
        "bad": _write(tmp_path / "bad.json", {"schema": 7}),
    }


def test_run_compare(reports: dict[str, Path]) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_compare(str(reports["old"]), str(reports["same"]), out=out, err=err) == 0
    assert "0 figure(s) grew past their threshold" in out.getvalue()
    assert err.getvalue() == ""
    out = io.StringIO()
    assert run_compare(str(reports["old"]), str(reports["grown"]), out=out, err=err) == 1
    assert out.getvalue().splitlines()[1].split()[:6] == ["!", "lock", "stack[6.1]", "64",
                                                          "96", "+32"]
    out = io.StringIO()
    code = run_compare(str(reports["old"]), str(reports["grown"]),
                       parse_thresholds("stack=32"), out=out, err=err)
    assert code == 0


def test_main_compare(reports: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(reports["old"]), str(reports["grown"]), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["exceeded"] == 1
    assert data["thresholds"] == {"instructions": "10%", "stack": "0", "processed_insns": "10%"}
    (grew,) = [c for c in data["changes"] if c["exceeded"]]
    assert grew == {"program": "lock", "figure": "stack[6.1]", "old": 64, "new": 96,
                    "delta": 32, "percent": 50.0, "threshold": "0", "exceeded": True}
    assert main(["compare", str(reports["old"]), str(reports["grown"]),
                 "--threshold", "stack=50%"]) == 0
    assert main(["compare", str(reports["old"]), str(reports["bad"])]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"error: {reports['bad']}: report schema 7 is not the one this "
                            "pytest-ebpf reads (1); save one with `pytest "
                            "--ebpf-save-baseline PATH` with this version\n")


def test_main_bad_threshold_is_a_usage_error(reports: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["compare", str(reports["old"]), str(reports["same"]), "--threshold", "stak=1"])
    assert info.value.code == 2
    assert "argument --threshold: bad threshold 'stak=1': unknown figure 'stak'" in (
        capsys.readouterr().err)


def _console(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE), "compare", *args], capture_output=True, text=True,
                          check=False, cwd=ROOT)


def test_console_script(reports: dict[str, Path], tmp_path: Path) -> None:
    same = _console(str(reports["old"]), str(reports["same"]))
    assert (same.returncode, same.stderr) == (0, "")
    assert same.stdout.splitlines()[-2] == "0 figure(s) grew past their threshold"
    grown = _console(str(reports["old"]), str(reports["grown"]))
    assert grown.returncode == 1
    assert grown.stdout.splitlines()[1].startswith("!  lock")
    assert "1 figure(s) grew past their threshold" in grown.stdout
    as_json = _console(str(reports["old"]), str(reports["grown"]), "--json",
                       "--threshold", "stack[6.1]=32")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["exceeded"] == 0
    missing = tmp_path / "nope.json"
    gone = _console(str(missing), str(reports["same"]))
    assert (gone.returncode, gone.stdout) == (2, "")
    assert gone.stderr == (f"error: {missing}: cannot read the report (No such file or "
                           "directory); save one with `pytest --ebpf-save-baseline PATH`\n")
    usage = _console(str(reports["old"]), str(reports["same"]), "--threshold", "stack=1.5")
    assert usage.returncode == 2
    assert "bad value '1.5'" in usage.stderr
