"""``pytest-ebpf verify OBJECT --kernel 6.1,6.12,host``: the verdicts of several kernels.

``host`` is the running kernel (as plain ``verify``); every other name is a kernel booted in a
throwaway VM (:mod:`pytest_ebpf.vm`), where the same ``pytest-ebpf verify --json`` runs as
root, two VMs at a time, beside the host. The table has one row per program and one column per
kernel (verdict, processed instructions, stack depth), then the decisive log line of every
rejection. With ``--json`` and one kernel, the document is that kernel's ``verify --json``
(plus ``kernel`` and ``release``); with several, ``kernels`` holds one such document per kernel,
or its ``error``.

Exit status: 0 when every program loaded on every kernel, 1 when some kernel rejected one, 2
when a kernel could not give verdicts (qemu or the image missing, a VM that failed) or a name
is unknown.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from pytest_ebpf.cli.verify import run_verify, verdict_word

PARALLEL_VMS = 2


def _host(path: str, loader: str, optional: bool) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = run_verify(path, as_json=True, loader=loader, out=out, err=err, optional=optional)
    if code == 2 or not out.getvalue().strip():
        return {"kernel": "host", "release": platform.release(),
                "error": err.getvalue().strip().removeprefix("error: ")}
    doc: dict[str, Any] = json.loads(out.getvalue())
    return {"kernel": "host", "release": platform.release(), **doc}


def _vm(name: str, path: str, loader: str, optional: bool, timeout: float) -> dict[str, Any]:
    from pytest_ebpf.errors import EbpfError
    from pytest_ebpf.vm.qemu import run_command

    argv = [sys.executable, "-m", "pytest_ebpf.cli.main", "verify", path, "--json",
            "--loader", loader, *(["--optional"] if optional else [])]
    try:
        run, text = run_command(name, argv, cwd=os.getcwd(), env=dict(os.environ),
                                timeout=timeout)
    except EbpfError as exc:
        return {"kernel": name, "error": str(exc)}
    lines = text.splitlines()
    docs = [ln for ln in lines if ln.startswith("{")]
    if run.error is not None or not docs:
        said = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
        why = run.error or (said[-1] if said else f"verify printed nothing (exit {run.rc})")
        return {"kernel": name, "release": run.release, "error": why}
    doc: dict[str, Any] = json.loads(docs[-1])
    return {"kernel": name, "release": run.release, **doc}


def _cell(p: dict[str, Any]) -> str:
    verdict = verdict_word(p["loaded"], p.get("cause"))
    if verdict == "skipped (?)":
        return verdict
    figures = []
    if p.get("processed_insns") is not None:
        figures.append(f"{p['processed_insns']} insns")
    if p.get("stack_depth"):
        figures.append(f"stack {'+'.join(str(d) for d in p['stack_depth'])}")
    return f"{verdict} ({', '.join(figures)})" if figures else verdict


def _render(path: str, docs: list[dict[str, Any]], out: TextIO) -> None:
    from pytest_ebpf.analysis.report import table_lines

    kernels = ", ".join(f"{d['kernel']} ({d.get('release') or '?'})" for d in docs)
    out.write(f"{path}: kernels {kernels}\n")
    names: list[str] = []
    for d in docs:
        names += [p["name"] for p in d.get("programs", []) if p["name"] not in names]
    rows = [["program", *(d["kernel"] for d in docs)]]
    for name in names:
        row = [name]
        for d in docs:
            found = [p for p in d.get("programs", []) if p["name"] == name]
            row.append(_cell(found[0]) if found else ("-" if "error" not in d else "?"))
        rows.append(row)
    for line in table_lines(rows):
        out.write(line.rstrip() + "\n")
    for d in docs:
        if "error" in d:
            out.write(f"{d['kernel']}: no verdicts: {d['error']}\n")
        for p in d.get("programs", []):
            if not p["loaded"] and p.get("cause") != "optional":
                out.write(f"{p['name']} on {d['kernel']}: {p.get('error') or p.get('cause')}\n")


def run_verify_matrix(path: str, kernels: list[str], *, as_json: bool = False,
                      pretty: bool = False, loader: str = "auto", optional: bool = False,
                      timeout: float = 600.0, out: TextIO | None = None,
                      err: TextIO | None = None) -> int:
    """Verify *path* on each of *kernels* (``host`` and VM kernel names); exit status."""
    from pytest_ebpf.vm.images import KNOWN

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    unknown = [k for k in kernels if k != "host" and k not in KNOWN]
    if unknown or not kernels:
        err.write(f"error: --kernel {','.join(kernels)}: no VM image for "
                  f"{', '.join(unknown) or 'an empty list'}; fix: name host and/or "
                  f"{', '.join(KNOWN)}\n")
        return 2
    path = os.path.abspath(path)
    vms = [k for k in kernels if k != "host"]
    with ThreadPoolExecutor(max_workers=PARALLEL_VMS) as pool:
        futures = {k: pool.submit(_vm, k, path, loader, optional, timeout) for k in vms}
        host = _host(path, loader, optional) if "host" in kernels else None
        found = {k: f.result() for k, f in futures.items()}
    if host is not None:
        found["host"] = host
    docs = [found[k] for k in kernels]
    if as_json:
        doc = docs[0] if len(docs) == 1 else {"path": path, "kernels": docs}
        out.write(json.dumps(doc, indent=2 if pretty else None) + "\n")
    else:
        _render(path, docs, out)
    if any("error" in d for d in docs):
        return 2
    return 1 if any(not p["loaded"] and p.get("cause") != "optional"
                    for d in docs for p in d["programs"]) else 0
