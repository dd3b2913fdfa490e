"""``pytest-ebpf inspect OBJECT [--json] [--stack-frame 32|16]``: what an object holds.

Programs (section, kernel program type, instructions, combined stack depth and its chain),
maps, and the findings of :mod:`pytest_ebpf.analysis.checks` and
:mod:`pytest_ebpf.analysis.stack`. Exit status 0 when the object could be read (findings do
not change it), 2 with one ``error: PATH: REASON`` line on stderr when it could not.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from pytest_ebpf.analysis.checks import (
    Finding,
    all_findings,
    callees,
    helpers_used,
    kfuncs_used,
    missing_func_info,
)
from pytest_ebpf.analysis.stack import ProgramStack, StackProblem, program_stack, stack_problems
from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.helpers import helper_name
from pytest_ebpf.obj.load import gc_paused, load_object
from pytest_ebpf.obj.model import EbpfObject, Program

__all__ = ["inspect_data", "render_table", "run_inspect"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _finding_json(f: Finding) -> dict[str, Any]:
    return {
        "check": f.check,
        "program": f.program,
        "function": f.function,
        "insn": f.insn.index if f.insn is not None else None,
        "message": f.message,
        "fix": f.fix,
    }


def _problem_json(p: StackProblem) -> dict[str, Any]:
    return {
        "check": f"stack_{p.kind}",
        "program": p.program,
        "function": p.function,
        "insn": p.insn.index if p.insn is not None else None,
        "message": p.message,
        "chain": list(p.chain),
        "total": p.total,
    }


def _program_json(
    obj: EbpfObject,
    prog: Program,
    ps: ProgramStack,
    problems: list[StackProblem],
    func_info: dict[str, list[Finding]],
) -> dict[str, Any]:
    indirect = [
        {"function": fn.name, "insn": c.insn.index}
        for fn in prog.functions
        for c in fn.calls
        if c.kind == "callx"
    ]
    helpers = helpers_used(prog)
    findings = [_finding_json(f) for f in all_findings(obj, prog, func_info.get(prog.name, []))]
    findings += [_problem_json(p) for p in problems]
    return {
        "name": prog.name,
        "section": prog.section,
        "type": prog.kind.prog_type,
        "expected_attach_type": prog.kind.expected_attach_type,
        "attach_target": prog.kind.attach_target,
        "instructions": prog.instructions,
        "functions": [fn.name for fn in prog.functions],
        "stack": {
            "total": ps.total,
            "chain": list(ps.chain),
            "chain_frames": list(ps.chain_frames),
            "frames": dict(ps.frames),
            "frame_round": ps.frame_round,
            "max_frames": ps.max_frames,
            "tail_call_depth": ps.tail_call_depth,
            "recursion": list(ps.recursion),
        },
        "helpers": list(helpers),
        "helper_names": [helper_name(h) for h in helpers],
        "kfuncs": list(kfuncs_used(prog)),
        "indirect_calls": indirect,
        "calls": list(callees(prog)),
        "findings": findings,
    }


def inspect_data(obj: EbpfObject, stack_frame: int = 32) -> dict[str, Any]:
    """The ``--json`` document for *obj*."""
    programs = []
    by_program: dict[str, list[Finding]] = {}
    for f in missing_func_info(obj):
        by_program.setdefault(f.program, []).append(f)
    for prog in obj.programs:
        ps = program_stack(obj, prog, stack_frame)
        problems = stack_problems(obj, prog, stack_frame, stack=ps)
        programs.append(_program_json(obj, prog, ps, problems, by_program))
    return {
        "path": obj.path,
        "endianness": obj.byteorder,
        "license": obj.license,
        "kernel_version": obj.kernel_version,
        "btf": {
            "present": obj.btf is not None,
            "ext": obj.btf_ext is not None,
            "types": len(obj.btf.types) - 1 if obj.btf is not None else 0,
        },
        "maps": [
            {
                "name": m.name,
                "section": m.section,
                "type": m.type,
                "key_size": m.key_size,
                "value_size": m.value_size,
                "max_entries": m.max_entries,
                "flags": m.flags,
                "source": m.source,
            }
            for m in obj.maps
        ],
        "programs": programs,
        "problems": list(obj.problems),
    }


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")


def render_table(data: dict[str, Any], out: TextIO) -> None:
    """The human-readable report of :func:`inspect_data`'s document."""
    btf = data["btf"]
    btf_text = (
        f"BTF ({btf['types']} types{', .BTF.ext' if btf['ext'] else ''})"
        if btf["present"]
        else "no BTF"
    )
    out.write(
        f"{data['path']}: {data['endianness']}-endian, license {data['license']!r}, {btf_text}\n"
    )
    out.write("\nprograms:\n")
    if data["programs"]:
        rows = [["name", "section", "type", "insns", "stack", "chain"]]
        for p in data["programs"]:
            st = p["stack"]
            chain = " -> ".join(
                f"{n}({b})" for n, b in zip(st["chain"], st["chain_frames"])
            )
            rows.append(
                [p["name"], p["section"], p["type"], str(p["instructions"]),
                 str(st["total"]), chain]
            )
        _table(rows, out)
    else:
        out.write("  (none)\n")
    out.write("\nmaps:\n")
    if data["maps"]:
        rows = [["name", "type", "key", "value", "max_entries", "section"]]
        for m in data["maps"]:
            rows.append(
                [m["name"], m["type"], str(m["key_size"]), str(m["value_size"]),
                 str(m["max_entries"]), m["section"]]
            )
        _table(rows, out)
    else:
        out.write("  (none)\n")
    findings = [f for p in data["programs"] for f in p["findings"]]
    out.write(f"\nfindings: {len(findings) or 'none'}\n")
    for f in findings:
        out.write(f"  [{f['check']}] {f['message']}\n")
        if f.get("fix"):
            out.write(f"      fix: {f['fix']}\n")
    for problem in data["problems"]:
        out.write(f"  [object] {problem}\n")


def run_inspect(
    path: str,
    as_json: bool = False,
    stack_frame: int = 32,
    out: TextIO | None = None,
    err: TextIO | None = None,
    pretty: bool = False,
    max_size: int | str | None = None,
) -> int:
    """Print what the object at *path* holds; 0 on success, 2 when it cannot be read.

    JSON is one line (fast to write and to pipe into ``jq``); *pretty* indents it. *max_size*
    bounds the file (see :func:`~pytest_ebpf.obj.load.load_object`). Only
    :class:`~pytest_ebpf.errors.ObjectError` is the input's fault; any other exception is a bug
    and stays a traceback."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        obj = load_object(path, max_size=max_size)
    except ObjectError as exc:
        err.write(f"error: {path}: {_one_line(exc.reason)}\n")
        return 2
    with gc_paused():
        data = inspect_data(obj, stack_frame)
    data["path"] = path
    if as_json:
        out.write(json.dumps(data, indent=2 if pretty else None) + "\n")
    else:
        render_table(data, out)
    return 0
