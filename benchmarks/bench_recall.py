"""Benchmark: how many of the kernel's rejections the static rules foresee, and how many programs
the kernel accepts they flag (false alarms, which must be 0).

By default, over the suite's corpus: every ``tests/c/*.c`` object (the ``pred_*`` corpus
included, compiled with clang-19 -target bpf -O2 -g as the ``compile_c`` fixture does) and the
example project's object (``example_project/target/bpfel-unknown-none/release/lock``, when it is
built), each program is loaded into the running kernel with the native loader (needs root), and
judged statically by every rule of the registry on the host's profile. A rejection is *foreseen*
when a finding that predicts a rejection (an error, not the project's policy) says the kernel's
own line (its ``reason``, or the line in its message), and *flagged* when some finding
predicts a rejection with other words. Rejections are classed by the kernel's line (numbers
dropped), and grouped coarsely (bounds and ranges, pointer types, stack access...).

With ``--objects DIR``: every ``*.o`` / ``*.bpf.o`` / ``*.elf`` under DIR instead (e.g. the broad
third-party corpus ``benchmarks/broad_corpus.py`` builds). There each object is handled by a
child process (a crash or a hang costs that object only), and each program is loaded alone
(``load_program``: one rejected program does not hide the others' verdicts) and judged alone,
with a time limit (``--timeout``, per program). A program the native loader cannot hand to the
verifier (a libbpf-only feature, a missing attach target, struct_ops, a map the kernel refuses,
a load the kernel refuses before verifying...) is counted as *not judged*, with its cause, and
not as a rejection.

Run: ``sudo .venv/bin/python benchmarks/bench_recall.py [--objects DIR] [-j 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pytest_ebpf.analysis import checks
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.analysis.profiles import KernelProfile, host_profile
from pytest_ebpf.analysis.rules import RULES, Context, ProgramVerdict, evaluate, judge
from pytest_ebpf.kernel.bpf import bpf_available
from pytest_ebpf.kernel.loader import load_all, load_program
from pytest_ebpf.kernel.results import LoadResult
from pytest_ebpf.obj.load import load_object
from pytest_ebpf.obj.model import EbpfObject, Program

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "tests" / "c"
EXAMPLE = ROOT / "example_project" / "target" / "bpfel-unknown-none" / "release" / "lock"
FLAGS = {"an_bigframe": ["-mllvm", "-bpf-stack-size=1024"], "vm_insns": ["-DINSNS=1000"]}
OBJECT_SUFFIXES = (".o", ".elf")

# The kernel's line -> a coarse class (first match wins; the order matters).
GROUPS: list[tuple[str, str]] = [
    ("CO-RE relocation (type or field not in this kernel)", r"failed to resolve CO-RE"),
    ("writes to R10", r"frame pointer is read only"),
    ("combined stack", r"combined stack size"),
    ("call depth", r"call stack of \d+ frames is too deep|too deep|call depth"),
    ("jumps out of range", r"jump out of range|jump to out of range|out of range jump"),
    ("unreachable instructions", r"unreachable insn"),
    ("infinite loops", r"infinite loop|back-edge|loop detected"),
    ("complexity", r"too many states|program is too large|too complex|complexity|"
                   r"insn_processed|too many (instructions|jumps)"),
    ("read-only/write-only map access", r"write into map forbidden|read from map forbidden|"
                                         r"cannot write into (rdonly|read.only)|"
                                         r"read.only map|frozen map|map_flags"),
    ("uninitialized registers", r"!read_ok"),
    ("pointer types", r"dereference of modified|pointer \S+ pointer prohibited"),
    ("global-function arguments", r"Caller passes invalid args|global func|func#\d+ .*global|"
                                  r"size cannot be determined|Validating .*\(\) func#"),
    ("return values", r"At program exit|register R0 has|exit .*R0|R0 .*should have been|"
                      r"return value|callback .*return"),
    ("references and locks", r"Unreleased reference|reference|refcount|spin_lock|spin_unlock|"
                             r"lock|rcu|RCU|release|acquire|KF_ACQUIRE|KF_RELEASE|"
                             r"holding|critical section|iter.* (created|destroy)"),
    ("helper or kfunc not allowed for the program type",
     r"unknown func|cannot use helper|helper call|not allowed|calling kernel function|"
     r"kernel function|kfunc|cannot call|GPL|not supported|unsupported|sleepable|"
     r"program of this type|invalid func"),
    ("stack access", r"stack|fp-\d+|spill"),
    ("bounds and ranges", r"invalid access to (map value|packet|memory|flow)|out of range|"
                          r"outside of|min value|max value|unbounded|bounds|range|"
                          r"invalid (variable|zero-sized|size)|offset|variable.*access|"
                          r"value_size|access beyond|negative"),
    ("pointer types", r"invalid mem access|type=|expected|pointer|ptr|leaks addr|"
                      r"invalid bpf_context access|ctx|invalid .*access|dereference|R\d+ is|"
                      r"scalar|arg#|misaligned|alignment"),
    ("invalid encodings", r"invalid|unknown opcode|reserved|BPF_|ld_imm64|ldimm64|"
                          r"last insn|unknown insn|src_reg|dst_reg|opcode"),
]


def group_of(line: str) -> str:
    for name, pattern in GROUPS:
        if re.search(pattern, line):
            return name
    return "other"


# --- one program's outcome ----------------------------------------------------------------------


@dataclass
class Record:
    obj: str
    program: str
    status: str
    """``accepted``, ``rejected`` (by the verifier) or ``not judged``."""
    error: str = ""
    """The kernel's line (rejected), or the reason it was not judged."""
    findings: list[dict[str, str]] = field(default_factory=list)
    """The findings that predict a rejection: check, message, reason."""


def error_findings(found: Iterable[Finding], profile: KernelProfile) -> list[dict[str, str]]:
    """As :meth:`ProgramVerdict.errors`: errors, not policy, of every kernel or *profile*'s."""
    return [{"check": f.check, "message": f.message, "reason": f.reason}
            for f in found if f.severity == "error" and not f.policy
            and f.kernel in (None, profile.label)]


def verdict(obj: str, res: LoadResult, findings: list[dict[str, str]]) -> Record:
    """*res* classed: accepted, rejected by the verifier, or not judged (and why)."""
    if res.loaded:
        return Record(obj, res.program, "accepted", findings=findings)
    cause = res.cause or "verifier"
    error = res.error or ""
    if cause == "verifier" and res.log.strip() and error and not error.startswith("load failed:"):
        return Record(obj, res.program, "rejected", error, findings)
    if cause == "verifier":  # no log, or no error line in it: refused before verifying
        return Record(obj, res.program, "not judged", f"kernel, before verifying: {error}")
    return Record(obj, res.program, "not judged", f"loader: {cause}: {error}")


# --- the suite's corpus (the default) -----------------------------------------------------------


def corpus(out: Path) -> list[Path]:
    clang = shutil.which("clang-19")
    if clang is None:
        sys.exit("clang-19 is not on PATH")
    objs = []
    for src in sorted(C_DIR.glob("*.c")):
        obj = out / f"{src.stem}.o"
        cmd = [clang, "-target", "bpf", "-O2", "-g", "-I", str(C_DIR),
               *FLAGS.get(src.stem, []), "-c", str(src), "-o", str(obj)]
        subprocess.run(cmd, check=True, capture_output=True)
        objs.append(obj)
    if EXAMPLE.is_file():
        objs.append(EXAMPLE)
    else:
        print(f"note: {EXAMPLE} is not built (the suite builds it); left out")
    return objs


def suite_records(profile: KernelProfile) -> Iterator[Record]:
    """Every program of the suite's corpus, loaded per object (``load_all``) as it always was."""
    with tempfile.TemporaryDirectory() as tmp:
        for path in corpus(Path(tmp)):
            obj = load_object(path)
            verdicts = {v.program.name: v for v in judge(obj, [profile], RULES)}
            try:
                with load_all(obj, loader="native") as loaded:
                    results = list(loaded.results.values())
            except Exception as exc:  # the loader could not prepare the object
                print(f"note: {path.name}: not loaded ({exc})")
                continue
            for res in results:
                found = error_findings(verdicts[res.program].findings, profile)
                yield verdict(path.name, res, found)


# --- a directory of objects: one child process per object, one load per program -----------------


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Timeout


def judge_one(obj: EbpfObject, prog: Program, profile: KernelProfile,
              func_info: list[Finding]) -> list[Finding]:
    """The registry's findings for one program, as :func:`judge` gives them."""
    ctx = Context(obj, prog, profile, {}, _func_info=func_info)
    found = evaluate(obj, prog, profile, RULES, context=ctx)
    return list(ProgramVerdict(prog, (profile,), {profile.name: ctx.stack},
                               tuple(found)).findings)


def worker(path: Path, timeout: int) -> int:
    """Child: one JSON line per program of *path* (loaded alone, then judged alone)."""
    signal.signal(signal.SIGALRM, _alarm)
    profile = host_profile()
    obj = load_object(path)
    func_info = checks.missing_func_info(obj)
    for prog in obj.programs:
        rec: dict[str, Any] = {"program": prog.name}
        try:
            with load_program(obj, prog.name, loader="native") as loaded:
                res = loaded.results[prog.name]
        except Exception as exc:  # the loader could not prepare it (a map, BTF...)
            rec["load_error"] = f"{type(exc).__name__}: {exc}"
        else:
            rec.update(loaded=res.loaded, cause=res.cause, error=res.error, log=bool(
                res.log.strip()))
        signal.alarm(timeout)
        try:
            rec["findings"] = error_findings(judge_one(obj, prog, profile, func_info), profile)
        except _Timeout:
            rec["judge_error"] = f"static rules took over {timeout} s"
        except Exception as exc:
            rec["judge_error"] = f"static rules crashed: {type(exc).__name__}: {exc}"
        finally:
            signal.alarm(0)
        print(json.dumps(rec), flush=True)
    return 0


def _record(name: str, rec: dict[str, Any]) -> Record:
    prog = rec["program"]
    if "load_error" in rec:
        return Record(name, prog, "not judged", f"loader: {rec['load_error']}")
    if "judge_error" in rec:
        return Record(name, prog, "not judged", rec["judge_error"])
    res = LoadResult(program=prog, section="", loaded=rec["loaded"], error=rec["error"],
                     log="log" if rec["log"] else "", processed_insns=None, stack_depth=(),
                     verified_insns=None, prog_id=None, loader="native", cause=rec["cause"])
    return verdict(name, res, rec["findings"])


def object_records(path: Path, root: Path, timeout: int) -> tuple[list[Record], str]:
    """Every program of one object, from a child process; a note when something went wrong."""
    name = path.relative_to(root).as_posix()
    try:
        programs = [p.name for p in load_object(path).programs]
    except Exception as exc:
        return [], f"{name}: not read ({type(exc).__name__}: {exc})"
    limit = timeout * (len(programs) + 2) + 30
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(path),
           "--timeout", str(timeout)]
    note = ""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            note = f"{name}: killed after {limit} s"
        out.seek(0)
        err.seek(0)
        lines = out.read().splitlines()
        if proc.returncode != 0 and not note:
            last = (err.read().strip().splitlines() or ["?"])[-1]
            note = f"{name}: the child failed ({last[:200]})"
    records = []
    for line in lines:
        try:
            records.append(_record(name, json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    done = {r.program for r in records}
    records += [Record(name, p, "not judged", "child process failed or was killed")
                for p in programs if p not in done]
    return records, note


def objects_under(root: Path) -> list[Path]:
    return sorted((p for p in root.rglob("*") if p.is_file() and p.name.endswith(OBJECT_SUFFIXES)),
                  key=lambda p: p.relative_to(root).as_posix())


# --- the report -----------------------------------------------------------------------------------


def kind(line: str) -> str:
    """The rejection's class: the kernel's line without its numbers and names."""
    if line.startswith("failed to resolve CO-RE relocation"):  # the loader's words, then names
        return "failed to resolve CO-RE relocation (the verifier: invalid func unknown#N)"
    line = re.sub(r"-?\b\d+\b|0x[0-9a-f]+", "N", line)
    return re.sub(r"\bR\d+|RN\b", "RN", line)[:70]


def cause_kind(why: str) -> str:
    """A not-judged reason, coarsely: its cause and first words, without names and numbers."""
    why = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "'X'", why)
    return kind(why)[:60]


def foreseen_by(rec: Record) -> bool:
    """A finding says the kernel's line word for word: as its reason, or in its message (quoted,
    or as the stack rule words it: "combined stack size of 3 calls is 640. Too large on 6.18")."""
    line = rec.error or ""
    return bool(line) and any(f["reason"] == line or f'"{line}"' in f["message"]
                              or f"{line} on " in f["message"] for f in rec.findings)


def report(records: list[Record], objects: int, full: bool) -> int:
    accepted = [r for r in records if r.status == "accepted"]
    rejected = [r for r in records if r.status == "rejected"]
    unjudged = [r for r in records if r.status == "not judged"]
    alarms = [r for r in accepted if r.findings]
    by_kind: Counter[str] = Counter()
    foreseen: Counter[str] = Counter()
    flagged: Counter[str] = Counter()
    groups: dict[str, Counter[str]] = {}
    example: dict[str, Record] = {}
    for r in rejected:
        k, g = kind(r.error), group_of(r.error)
        how = "foreseen" if foreseen_by(r) else "flagged" if r.findings else "missed"
        by_kind[k] += 1
        foreseen[k] += how == "foreseen"
        flagged[k] += how == "flagged"
        groups.setdefault(g, Counter())[how] += 1
        if how == "missed":
            example.setdefault(k, r)
    total = len(rejected)
    seen = sum(foreseen.values())
    more = sum(flagged.values())
    missed = total - seen - more

    width = max([len(k) for k in by_kind] + [20])
    print(f"\n{'rejection (the kernel says)':<{width}}  rejected  foreseen  flagged  missed")
    order = sorted(by_kind, key=lambda k: (-(by_kind[k] - foreseen[k] - flagged[k]),
                                           -by_kind[k], k))
    for k in order:
        n = by_kind[k]
        print(f"{k:<{width}}  {n:>8}  {foreseen[k]:>8}  {flagged[k]:>7}  "
              f"{n - foreseen[k] - flagged[k]:>6}")

    print("\n| class | rejected | foreseen | flagged | missed |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for g, c in sorted(groups.items(), key=lambda gc: (-gc[1]["missed"], -sum(gc[1].values()),
                                                       gc[0])):
        print(f"| {g} | {sum(c.values())} | {c['foreseen']} | {c['flagged']} | "
              f"{c['missed']} |")

    if full:
        print(f"\nnot judged: {len(unjudged)} programs")
        causes = Counter(cause_kind(r.error) for r in unjudged)
        for why, n in sorted(causes.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {n:>4}  {why}")
        print("\nmissed, one example per class (most missed first):")
        for k in order:
            if k in example:
                r = example[k]
                print(f"  {r.obj}:{r.program}: {r.error}")

    print(f"\nobjects: {objects}, programs: {len(records)}, accepted: {len(accepted)}, "
          f"rejected by the verifier: {total}, not judged: {len(unjudged)}")
    print(f"recall: {seen}/{total} rejections foreseen word for word "
          f"({100 * seen / max(total, 1):.0f}%), {more} more flagged in other words "
          f"({100 * (seen + more) / max(total, 1):.0f}% foreseen or flagged), {missed} missed")
    print(f"false alarms: {len(alarms)} of {len(accepted)} accepted programs")
    for r in alarms:
        for f in r.findings:
            print(f"  {r.obj}:{r.program}: [{f['check']}] {f['message']}")
    return 1 if alarms else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="static rules' recall and false alarms, against "
                                             "this machine's kernel")
    ap.add_argument("--objects", type=Path, metavar="DIR",
                    help="every *.o / *.bpf.o / *.elf under DIR instead of the suite's corpus")
    ap.add_argument("--timeout", type=int, default=120,
                    help="seconds for the static rules on one program (--objects; default 120)")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="objects handled at once (--objects; default 1)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.timeout)
    ok, why = bpf_available()
    if not ok:
        print(f"needs root (or CAP_BPF) to load: {why}")
        return 2
    if args.objects is None:
        records = list(suite_records(host_profile()))
        return report(records, len({r.obj for r in records}), full=False)
    root: Path = args.objects.expanduser().resolve()
    paths = objects_under(root)
    if not paths:
        print(f"no *.o / *.elf under {root}")
        return 2
    records = []
    os.environ.setdefault("PYTHONHASHSEED", "0")
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for path, (recs, note) in zip(
                paths, pool.map(lambda p: object_records(p, root, args.timeout), paths)):
            if note:
                print(f"note: {note}", flush=True)
            print(f"{path.relative_to(root)}: {len(recs)} programs", file=sys.stderr, flush=True)
            records += recs
    return report(records, len(paths), full=True)


if __name__ == "__main__":
    sys.exit(main())
