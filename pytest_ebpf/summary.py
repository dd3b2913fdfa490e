"""The session's report: a table at the end of the run, ``--ebpf-report`` JSON, and the baseline
``--ebpf-save-baseline`` writes (the same document, :data:`SCHEMA` 1, read by
:mod:`pytest_ebpf.analysis.baseline` and ``pytest-ebpf compare``).

Static figures are computed where the summary is written (the controller under xdist, from the
same object); what the kernel said comes from the ``loads`` items' reports (their
``user_properties``), so it crosses from xdist workers as every report does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_ebpf.analysis.report import table_lines
from pytest_ebpf.session import OUTCOME_KEY, PROPERTY, report_doc
from pytest_ebpf.settings import SETTINGS_KEY

if TYPE_CHECKING:
    pass

TABLE_ROWS = 50


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def table(doc: dict[str, Any]) -> list[str]:
    """The terminal table: one row per program."""
    kernels = [k["name"] for k in doc["kernels"]]
    labels = {k["name"]: k["label"].replace(" (host)", "") for k in doc["kernels"]}
    loaded_on = list(dict.fromkeys(k for p in doc["programs"] for k in p["load"])) or ["host"]
    if loaded_on == ["host"]:
        load_head = ["loaded", "processed"]
    else:  # one pair per kernel the programs were loaded into (VMs)
        load_head = [f"{what}@{k}" for k in loaded_on for what in ("loaded", "processed")]
    head = ["program", "section", "type", "insns",
            *(f"stack@{labels[k]}" for k in kernels), "chain", "BTF", "helpers", *load_head]
    rows = [head]
    for p in doc["programs"][:TABLE_ROWS]:
        first = p["stack"][kernels[0]]
        chain = " -> ".join(f"{n}({b})" for n, b in zip(first["chain"], first["frames"]))
        stacks = [f"{p['stack'][k]['total']}{'' if p['stack_ok'][k] else '!'}"
                  for k in kernels]
        helpers = ", ".join(h.removeprefix("bpf_") for h in p["helpers"][:3])
        if len(p["helpers"]) > 3:
            helpers += f" +{len(p['helpers']) - 3}"
        rows.append([p["name"], p["section"], p["type"], str(p["instructions"]), *stacks,
                     chain, "yes" if p["btf"] else "NO", helpers or "-",
                     *(str(cell) for k in loaded_on
                       for cell in (p["load"].get(k, {}).get("verdict", "-"),
                                    p["load"].get(k, {}).get("processed_insns") or "-"))])
    lines = table_lines(rows)
    if len(doc["programs"]) > TABLE_ROWS:
        lines.append(f"... and {len(doc['programs']) - TABLE_ROWS} more programs "
                     "(--ebpf-report PATH has them all)")
    if not all(ok for p in doc["programs"] for ok in p["stack_ok"].values()):
        lines.append("! = over that kernel's stack limits")
    refused = [f"{p['name']} on {k}" for p in doc["programs"]
               for k, v in p["verdicts"].items() if v == "rejected"]
    if refused:
        lines.append(f"static rules predict a rejection: {', '.join(refused)}")
    return lines


class SessionReport:
    """The plugin object that gathers the ``loads`` verdicts and writes the summary."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.loads: dict[str, dict[str, dict[str, Any]]] = {}

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep what each ``loads`` item recorded (on the controller too, under xdist)."""
        if report.when != "call":
            return
        props = {k[len(PROPERTY):]: v for k, v in report.user_properties
                 if isinstance(k, str) and k.startswith(PROPERTY)}
        if "verdict" not in props:
            return
        kernel = str(props.get("kernel", "host"))
        self.loads.setdefault(str(props["program"]), {})[kernel] = {
            "verdict": props["verdict"],
            "processed_insns": props.get("processed_insns"),
            "verified_insns": props.get("verified_insns"),
        }

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The table, and the JSON files asked for."""
        config = self.config
        if getattr(config, "workerinput", None) is not None or SETTINGS_KEY not in config.stash:
            return
        settings = config.stash[SETTINGS_KEY]
        if not settings.active:
            return
        from pytest_ebpf.build.cargo import BuildFailure
        from pytest_ebpf.errors import ObjectError
        from pytest_ebpf.obj.load import load_object

        outcome = config.stash.get(OUTCOME_KEY, None)
        if outcome is None or isinstance(outcome, BuildFailure):
            return
        try:
            obj = load_object(outcome.path, max_size=settings.max_object_size)
        except ObjectError:
            return  # the object's own items (or tests) report it
        doc = report_doc(config, obj, self.loads)
        tr = terminalreporter
        tr.section("eBPF programs")
        for line in table(doc):
            tr.line(line)
        for path, what in ((settings.report, "report"), (settings.save_baseline, "baseline")):
            if path is not None:
                try:
                    _write(path, doc)
                except OSError as exc:
                    tr.line(f"cannot write the {what} {path}: {exc.strerror}; fix: choose a "
                            "writable path", red=True)
                    continue
                tr.line(f"eBPF {what} written to {path}")
