"""Tests of ``pytest-ebpf inspect`` (pytest_ebpf.cli.inspect), run as a subprocess."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.cli.inspect import run_inspect

C_DIR = Path(__file__).parent / "c"
ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / ".venv/bin/pytest-ebpf"


def _inspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_ebpf.cli.main", "inspect", *args],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )


def _objdump_counts(path: Path) -> dict[str, int]:
    """Instruction slots per function symbol, from llvm-objdump-22 -d."""
    tool = shutil.which("llvm-objdump-22")
    if tool is None:
        pytest.fail("llvm-objdump-22 is not installed", pytrace=False)
    text = subprocess.run([tool, "-d", str(path)], capture_output=True, text=True,
                          check=True).stdout
    counts: dict[str, int] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]{16} <(.+)>:$", line)
        if m:
            current = m.group(1)
            counts[current] = 0
            continue
        parts = line.split("\t")
        if current is not None and len(parts) >= 2 and re.match(r"^\s+\d+:$", parts[0]):
            counts[current] += len(parts[1].split()) // 8  # ld_imm64 prints 16 bytes
    return counts


@pytest.fixture(scope="module")
def lock_obj(example_object: Callable[[str], Path]) -> Path:
    return example_object("bpfel-unknown-none")


def test_json_on_rust_example(lock_obj: Path) -> None:
    proc = _inspect(str(lock_obj), "--json", "--kernel", "6.1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert data["path"] == str(lock_obj)
    assert data["endianness"] == "little"
    assert data["license"] == "Dual MIT/GPL"
    assert data["btf"]["present"] and data["btf"]["ext"] and data["btf"]["types"] > 0
    assert [m["name"] for m in data["maps"]] == ["BLOCKLIST", "EXEC_COUNT", "EXECS"]
    execs = next(m for m in data["maps"] if m["name"] == "EXECS")
    # aya-ebpf's BTF ring buffer: its record type is declared, its value_size 0 wins (the
    # kernel needs key and value sizes 0 for a ring buffer)
    assert execs == {**execs, "section": ".maps", "type": "ringbuf", "key_size": 0,
                     "value_size": 0, "max_entries": 65536, "source": "btf"}
    assert data["maps"][0] == {**data["maps"][0], "section": "maps", "type": "hash",
                               "key_size": 4, "value_size": 4, "max_entries": 1024}
    progs = {p["name"]: p for p in data["programs"]}
    lock = progs["lock"]
    assert lock["section"] == "xdp" and lock["type"] == "xdp"
    assert lock["helpers"] == [1] and lock["calls"] == ["is_blocked"]
    assert lock["indirect_calls"] == []
    assert lock["stack"]["chain"] == ["lock", "is_blocked"]
    assert lock["stack"]["frames"] == {"lock": 0, "is_blocked": 8}
    assert lock["stack"]["total"] == 64
    assert progs["lock_exec"]["type"] == "tracepoint"
    counts = _objdump_counts(lock_obj)
    assert lock["instructions"] == counts["lock"] + counts["is_blocked"]
    assert progs["lock_exec"]["instructions"] == counts["lock_exec"]
    p16 = json.loads(_inspect(str(lock_obj), "--json", "--kernel", "6.1", "--stack-frame",
                              "16").stdout)
    assert p16["programs"][0]["stack"]["total"] == 16
    assert [k["name"] for k in data["kernels"]] == ["6.1"]
    assert data["kernels"][0]["frame_round"] == 32


@pytest.mark.parametrize("target", ["bpfel", "bpfeb"])
def test_json_on_c_objects(compile_c, target: str) -> None:  # type: ignore[no-untyped-def]
    path = compile_c((C_DIR / "an_checks.c").read_text(), "an_checks", "-target", target)
    proc = _inspect(str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["endianness"] == ("little" if target == "bpfel" else "big")
    progs = {p["name"]: p for p in data["programs"]}
    assert set(progs) == {"callx_prog", "undef_prog", "printk_prog", "clean_prog"}
    callx = progs["callx_prog"]
    assert callx["type"] == "socket_filter"
    assert len(callx["indirect_calls"]) == 1
    ic = callx["indirect_calls"][0]
    assert ic["function"] == "callx_prog"
    text = subprocess.run(["llvm-objdump-22", "-d", str(path)], capture_output=True,
                          text=True, check=True).stdout
    assert re.search(rf"^\s+{ic['insn']}:\s.*\bcallx r\d", text, re.M)
    assert progs["printk_prog"]["type"] == "kprobe" and progs["printk_prog"]["helpers"] == [6]
    clean = progs["clean_prog"]
    assert clean["helpers"] == [5, 14] and clean["calls"] == ["add_pid"]
    assert set(clean["stack"]["frames"]) == {"clean_prog", "add_pid"}
    counts = _objdump_counts(path)
    for name, p in progs.items():
        assert p["instructions"] == sum(counts[f] for f in p["functions"]), name
    checks = {f["check"] for p in data["programs"] for f in p["findings"]}
    assert {"indirect_call", "undefined_call"} <= checks


def test_table_mentions_every_program(compile_c) -> None:  # type: ignore[no-untyped-def]
    path = compile_c((C_DIR / "an_stack.c").read_text(), "an_stack")
    proc = _inspect(str(path))
    assert proc.returncode == 0, proc.stderr
    for name in ("leaf_buf", "chain_main", "chain9", "tail_main", "recurse", "pair_main"):
        assert re.search(rf"^{name}\s", proc.stdout, re.M), name
    assert "jmp_table" in proc.stdout
    assert "[stack_combined_too_large]" in proc.stdout
    assert "[stack_recursion]" in proc.stdout


def test_console_script(lock_obj: Path) -> None:
    assert CONSOLE.exists(), f"{CONSOLE} missing: run scripts/setup.sh (pip install -e .)"
    proc = subprocess.run([str(CONSOLE), "inspect", str(lock_obj)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "lock_exec" in proc.stdout and "BLOCKLIST" in proc.stdout


def _corrupt_btf(src: Path, dst: Path) -> None:
    from pytest_ebpf.obj.elf import read_elf

    data = bytearray(src.read_bytes())
    image = read_elf(src)
    sec = image.section(".BTF")
    assert sec is not None
    # find the section's file offset: locate its bytes (unique) and scramble the type area
    at = bytes(data).find(sec.data)
    assert at > 0
    for i in range(at + 24, at + 24 + 64):
        data[i] = 0xFF
    dst.write_bytes(bytes(data))


def test_unreadable_inputs(tmp_path: Path, compile_c) -> None:  # type: ignore[no-untyped-def]
    good = compile_c((C_DIR / "an_checks.c").read_text(), "an_checks")
    empty = tmp_path / "empty.o"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.o"
    trunc.write_bytes(good.read_bytes()[:200])
    corrupt = tmp_path / "corrupt_btf.o"
    _corrupt_btf(good, corrupt)
    cases = [str(empty), str(trunc), "/bin/true", str(tmp_path), str(tmp_path / "missing.o"),
             str(corrupt)]
    for case in cases:
        for args in ((case,), (case, "--json")):
            proc = _inspect(*args)
            assert proc.returncode == 2, (case, proc.stdout, proc.stderr)
            assert proc.stdout == "", case
            lines = proc.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"error: {case}: "), proc.stderr


def test_run_inspect_in_process(lock_obj: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run_inspect(str(lock_obj), as_json=True, out=out, err=err) == 0
    assert json.loads(out.getvalue())["programs"][0]["name"] == "lock"
    out, err = io.StringIO(), io.StringIO()
    assert run_inspect("/nonexistent/x.o", out=out, err=err) == 2
    assert out.getvalue() == "" and err.getvalue().startswith("error: /nonexistent/x.o: ")


def test_json_is_one_line_and_pretty_indents_it(lock_obj: Path) -> None:
    compact = _inspect(str(lock_obj), "--json")
    pretty = _inspect(str(lock_obj), "--pretty")
    assert compact.returncode == 0 and pretty.returncode == 0, compact.stderr + pretty.stderr
    assert compact.stdout.count("\n") == 1  # one document, one line: easy to pipe into jq
    assert pretty.stdout.startswith('{\n  "path": ')
    assert json.loads(compact.stdout) == json.loads(pretty.stdout)


def test_global_data_is_listed_with_sizes(compile_c: Callable[..., Path]) -> None:
    """.data, .rodata and .bss (a map each when loaded) with their sizes and variables, as
    pyelftools reads the sections and the symbol table."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    path = compile_c((C_DIR / "ld_globals.c").read_text(), "ld_globals")
    doc = json.loads(_inspect(str(path), "--json").stdout)
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        sizes = {s.name: s["sh_size"] for s in elf.iter_sections()
                 if s.name in (".data", ".rodata", ".bss")}
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        names = {s.name: elf.get_section(s["st_shndx"]).name for s in symtab.iter_symbols()
                 if s["st_info"]["type"] == "STT_OBJECT" and isinstance(s["st_shndx"], int)}
    assert {d["section"]: d["size"] for d in doc["data"]} == sizes
    for d in doc["data"]:
        assert {v["name"] for v in d["variables"]} == {n for n, sec in names.items()
                                                       if sec == d["section"]}
    table = _inspect(str(path)).stdout
    assert "global data (a map each when loaded" in table
    assert re.search(r"^\.rodata\s+rodata\s+\d+\s+ro_var$", table, re.M), table
