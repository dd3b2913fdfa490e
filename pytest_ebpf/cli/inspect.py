"""``pytest-ebpf inspect OBJECT [--kernel host,6.1] [--json] [--strict]``: what an object holds.

Programs (section, kernel program type, instructions, combined stack depth and its chain),
maps, and the findings of every rule of :mod:`pytest_ebpf.analysis.rules`, judged by each kernel
profile named. Exit status 0 when the object could be read (findings change it only with
``--strict``: 1), 2 with one ``error: PATH: REASON`` line on stderr when it could not.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from pytest_ebpf.analysis.checks import callees, helpers_used, kfuncs_used
from pytest_ebpf.analysis.profiles import (
    KernelProfile,
    ProfileError,
    choose_kernels,
)
from pytest_ebpf.analysis.report import table_lines
from pytest_ebpf.analysis.rules import ProgramVerdict, judge
from pytest_ebpf.analysis.stack import ProgramStack
from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.helpers import helper_name
from pytest_ebpf.obj.load import gc_paused, load_object
from pytest_ebpf.obj.model import EbpfObject

__all__ = ["inspect_data", "render_table", "run_inspect"]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def stack_json(ps: ProgramStack) -> dict[str, Any]:
    return {
        "total": ps.total,
        "chain": list(ps.chain),
        "chain_frames": list(ps.chain_frames),
        "frames": dict(ps.frames),
        "frame_round": ps.frame_round,
        "max_frames": ps.max_frames,
        "tail_call_depth": ps.tail_call_depth,
        "recursion": list(ps.recursion),
        "private": sorted(ps.private),
    }


def _program_json(v: ProgramVerdict) -> dict[str, Any]:
    prog = v.program
    indirect = [
        {"function": fn.name, "insn": c.insn.index}
        for fn in prog.functions
        for c in fn.calls
        if c.kind == "callx"
    ]
    helpers = helpers_used(prog)
    first = v.profiles[0]
    return {
        "name": prog.name,
        "section": prog.section,
        "type": prog.kind.prog_type,
        "expected_attach_type": prog.kind.expected_attach_type,
        "attach_target": prog.kind.attach_target,
        "instructions": prog.instructions,
        "functions": [fn.name for fn in prog.functions],
        "stack": stack_json(v.stacks[first.name]),
        "stacks": {p.name: stack_json(v.stacks[p.name]) for p in v.profiles},
        "verdicts": {p.name: "rejected" if v.errors(p) else "loads" for p in v.profiles},
        "summary": v.summary(),
        "helpers": list(helpers),
        "helper_names": [helper_name(h) for h in helpers],
        "kfuncs": list(kfuncs_used(prog)),
        "indirect_calls": indirect,
        "calls": list(callees(prog)),
        "findings": [f.as_json() for f in v.findings],
    }


def inspect_data(obj: EbpfObject, kernels: tuple[KernelProfile, ...]) -> dict[str, Any]:
    """The ``--json`` document for *obj* judged by *kernels* (the first one gives each
    program's ``stack``; ``stacks`` and ``verdicts`` have every kernel)."""
    programs = [_program_json(v) for v in judge(obj, kernels)]
    return {
        "path": obj.path,
        "endianness": obj.byteorder,
        "license": obj.license,
        "kernel_version": obj.kernel_version,
        "kernels": [p.as_json() for p in kernels],
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
        "data": [
            {
                "section": d.name,
                "kind": d.kind,
                "size": d.size,
                "variables": [{"name": v.name, "offset": v.offset, "size": v.size}
                              for v in d.symbols],
            }
            for d in obj.data_sections
        ],
        "programs": programs,
        "problems": list(obj.problems),
    }


def _table(rows: list[list[str]], out: TextIO) -> None:
    out.writelines(line + "\n" for line in table_lines(rows))


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
    kernels = data["kernels"]
    out.write("kernels: " + "; ".join(f"{k['label']} ({k['source']})" for k in kernels) + "\n")
    out.write("\nprograms:\n")
    if data["programs"]:
        names = [k["name"] for k in kernels]
        stack_cols = (["stack"] if len(kernels) == 1
                      else [f"stack@{k['label'].replace(' (host)', '')}" for k in kernels])
        rows = [["name", "section", "type", "insns", *stack_cols, "chain"]]
        for p in data["programs"]:
            st = p["stack"]
            chain = " -> ".join(
                f"{n}({b})" for n, b in zip(st["chain"], st["chain_frames"])
            )
            rows.append(
                [p["name"], p["section"], p["type"], str(p["instructions"]),
                 *(str(p["stacks"][n]["total"]) for n in names), chain]
            )
        _table(rows, out)
        if len(kernels) > 1:
            out.write("\nverdicts:\n")
            for p in data["programs"]:
                out.write(f"  {p['name']}: {p['summary']}\n")
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
    if data["data"]:
        out.write("\nglobal data (a map each when loaded, as Aya and libbpf make them):\n")
        rows = [["section", "kind", "size", "variables"]]
        for d in data["data"]:
            listed = ", ".join(v["name"] for v in d["variables"][:6])
            more = len(d["variables"]) - 6
            rows.append([d["section"], d["kind"], str(d["size"]),
                         (listed + (f" +{more}" if more > 0 else "")) or "-"])
        _table(rows, out)
    findings = [f for p in data["programs"] for f in p["findings"]]
    out.write(f"\nfindings: {len(findings) or 'none'}\n")
    for f in findings:
        on = f" [{f['kernel']}]" if f.get("kernel") and len(kernels) > 1 else ""
        note = " (note)" if f.get("severity") == "note" else ""
        out.write(f"  [{f['check']}]{on}{note} {f['message']}\n")
        if f.get("fix"):
            out.write(f"      fix: {f['fix']}\n")
    for problem in data["problems"]:
        out.write(f"  [object] {problem}\n")


def run_inspect(
    path: str,
    as_json: bool = False,
    kernels: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    pretty: bool = False,
    max_size: int | str | None = None,
    stack_frame: int | None = None,
    strict: bool = False,
) -> int:
    """Print what the object at *path* holds; 0 on success, 2 when it cannot be read (or a
    kernel profile is unknown), 1 with *strict* when a rule finds an error.

    *kernels*: ``host,6.1`` (default: the running kernel, else the oldest profile);
    *stack_frame* overrides every profile's frame rounding.

    JSON is one line (fast to write and to pipe into ``jq``); *pretty* indents it. *max_size*
    bounds the file (see :func:`~pytest_ebpf.obj.load.load_object`). Only
    :class:`~pytest_ebpf.errors.ObjectError` is the input's fault; any other exception is a bug
    and stays a traceback."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        profiles = choose_kernels(kernels, source="--kernel", stack_frame=stack_frame)
    except ProfileError as exc:
        err.write(f"error: --kernel {kernels}: {exc}\n")
        return 2
    try:
        obj = load_object(path, max_size=max_size)
    except ObjectError as exc:
        err.write(f"error: {path}: {_one_line(exc.reason)}\n")
        return 2
    with gc_paused():
        data = inspect_data(obj, profiles)
    data["path"] = path
    if as_json:
        out.write(json.dumps(data, indent=2 if pretty else None) + "\n")
    else:
        render_table(data, out)
    errors = [f for p in data["programs"] for f in p["findings"] if f["severity"] == "error"]
    return 1 if strict and errors else 0


