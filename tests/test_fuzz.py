"""Fuzzing: mutants of the suite's real objects may only load or end in one ``ObjectError``.

Each mutant (see ``fuzz_mutations.py``) goes through everything that reads an object without a
kernel: :func:`load_object_bytes`, what ``pytest-ebpf inspect`` computes (:func:`inspect_data`,
:func:`render_table`), every instruction's disassembly, the assertion helpers, and the native
loader's offline steps (:func:`extras_from_image`, :func:`fix_btf`, :func:`link_program`, the
``ld_imm64`` patching with a made-up map fd). The
accepted outcomes are success, a one-line :class:`ObjectError`, a failed assertion helper
(:class:`EbpfAssertionError`) and a link refusal of the native loader. Anything else fails the
test with the base object, the seed and the mutation as JSON: save it as
``tests/fuzz_corpus/NAME.json`` and it is replayed in every run (``test_corpus``).

``PYTEST_EBPF_FUZZ_SEED`` and ``PYTEST_EBPF_FUZZ_CASES`` (mutants per base object) change the
run; the defaults are fixed, so CI is reproducible.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fuzz_mutations import Op, apply, layout, random_ops

from pytest_ebpf.analysis.assertions import (
    assert_btf,
    assert_helpers,
    assert_license,
    assert_max_instructions,
    assert_no_indirect_calls,
    assert_no_undefined_calls,
    assert_sections,
    assert_stack_usage,
)
from pytest_ebpf.analysis.profiles import KernelProfile, host_profile, named_profile
from pytest_ebpf.analysis.report import EbpfAssertionError
from pytest_ebpf.cli.inspect import inspect_data, render_table, run_inspect
from pytest_ebpf.errors import ObjectError
from pytest_ebpf.kernel.bpf import BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, bpf_available
from pytest_ebpf.kernel.link import LinkError, extras_from_image, fix_btf, link_program
from pytest_ebpf.kernel.loader import load_all
from pytest_ebpf.kernel.native import _patch_ld
from pytest_ebpf.obj.elf import read_elf
from pytest_ebpf.obj.load import load_object, load_object_bytes
from pytest_ebpf.obj.model import EbpfObject

C_DIR = Path(__file__).parent / "c"
CORPUS = Path(__file__).parent / "fuzz_corpus"
SEED = int(os.environ.get("PYTEST_EBPF_FUZZ_SEED", "20261202"))
CASES = int(os.environ.get("PYTEST_EBPF_FUZZ_CASES", "1000"))

#: base object -> how the suite builds it (compile_c flags, or the Aya crate's target)
BASES: dict[str, tuple[str, ...]] = {
    "c-el-btf": ("obj_multi.c",),
    "c-eb-btf": ("obj_multi.c", "-target", "bpfeb"),
    "c-el-nobtf": ("obj_multi.c", "-g0"),
    "c-eb-nobtf": ("obj_multi.c", "-target", "bpfeb", "-g0"),
    "c-el-globals": ("ld_globals.c",),
    "aya-bpfel": ("aya", "bpfel-unknown-none"),
    "aya-bpfeb": ("aya", "bpfeb-unknown-none"),
}
FUZZED = ("c-el-btf", "c-eb-btf", "c-el-nobtf", "c-eb-nobtf", "c-el-globals", "aya-bpfel",
          "aya-bpfeb")

Bases = dict[str, Callable[[], bytes]]

OLD_AND_NEW = (named_profile("5.10"), named_profile("6.18"))
"""Every rule that depends on the kernel takes both branches."""
HOST = host_profile()


@pytest.fixture(scope="module")
def bases(compile_c: Callable[..., Path], example_object: Callable[[str], Path]) -> Bases:
    """Base name -> a function returning its bytes (built on first use)."""
    cache: dict[str, bytes] = {}

    def getter(name: str) -> Callable[[], bytes]:
        def get() -> bytes:
            if name not in cache:
                spec = BASES[name]
                if spec[0] == "aya":
                    path = example_object(spec[1])
                else:
                    stem = f"fuzz_{name.replace('-', '_')}"
                    path = compile_c((C_DIR / spec[0]).read_text(), stem, *spec[1:])
                cache[name] = path.read_bytes()
            return cache[name]

        return get

    return {name: getter(name) for name in BASES}


# --- one mutant through everything -------------------------------------------------------------


def _one_line(exc: ObjectError) -> ObjectError:
    assert "\n" not in str(exc) and str(exc).strip(), f"not one line: {str(exc)!r}"
    return exc


def _helpers(obj: EbpfObject) -> None:
    checks: list[Callable[[], None]] = [
        lambda: assert_stack_usage(obj),
        lambda: assert_stack_usage(obj, limit=64, frame_round=16,
                                   programs=[p.name for p in obj.programs[:1]]),
        lambda: assert_no_indirect_calls(obj),
        lambda: assert_no_undefined_calls(obj),
        lambda: assert_btf(obj),
        lambda: assert_sections(obj, ["xdp", "socket"]),
        lambda: assert_license(obj),
        lambda: assert_max_instructions(obj, 10),
        lambda: assert_helpers(obj, [1, "bpf_map_update_elem"]),
    ]
    for check in checks:
        try:
            check()
        except EbpfAssertionError as failed:
            assert str(failed)


def exercise(data: bytes, label: str = "fuzz.o") -> ObjectError | EbpfObject:
    """Run *data* through every offline reader; the ObjectError, or the object when it loads.
    Any other exception propagates: that is a bug."""
    try:
        obj = load_object_bytes(data, label)
    except ObjectError as exc:
        return _one_line(exc)
    doc = inspect_data(obj, OLD_AND_NEW)
    inspect_data(obj, (HOST,))
    json.dumps(doc)
    render_table(doc, io.StringIO())
    for fn in obj.functions:
        for insn in fn.insns:
            insn.text()
    _helpers(obj)
    image = read_elf(data, label)
    extras = extras_from_image(obj, image)
    if extras.btf_raw is not None:
        try:
            fix_btf(extras.btf_raw, image)
        except ObjectError as exc:
            return _one_line(exc)
    for prog in obj.programs:
        try:
            linked = link_program(prog, extras)
            insns = bytearray(linked.insns)  # patched as for map fd 3, without a kernel
            for slot, _map in linked.map_slots:
                _patch_ld(insns, slot, BPF_PSEUDO_MAP_FD, 3, 0)
            for slot, _section, offset in linked.data_slots:
                _patch_ld(insns, slot, BPF_PSEUDO_MAP_VALUE, 3, offset)
        except LinkError as refused:
            assert str(refused)
    return obj


def _replay_text(base: str, seed: object, ops: list[Op]) -> str:
    return json.dumps({"base": base, "seed": seed, "ops": ops, "expect": "either"})


def fuzz(base: str, data: bytes, seed: int, cases: int) -> tuple[int, int]:
    """*cases* random mutants of *data*; (loaded, refused). Fails on the first bug."""
    lay = layout(data)
    loaded = refused = 0
    for case in range(cases):
        case_seed = f"{seed}:{base}:{case}"
        ops = random_ops(random.Random(case_seed), lay)
        mutant = apply(data, ops, lay=lay)
        try:
            outcome = exercise(mutant)
        except Exception:  # the bug report is the point
            pytest.fail(
                f"fuzz case {case_seed} on {base}: not an ObjectError\n"
                f"{traceback.format_exc()}\n"
                f"replay (save as tests/fuzz_corpus/NAME.json): "
                f"{_replay_text(base, case_seed, ops)}",
                pytrace=False,
            )
        if isinstance(outcome, ObjectError):
            refused += 1
        else:
            loaded += 1
    return loaded, refused


@pytest.mark.parametrize("base", FUZZED)
def test_fuzz(base: str, bases: Bases) -> None:
    data = bases[base]()
    assert isinstance(exercise(data), EbpfObject), "the unmutated object must load"
    loaded, refused = fuzz(base, data, SEED, CASES)
    # the mutations reach both sides: some mutants still load, others are refused
    assert loaded > CASES // 20 and refused > CASES // 20, (loaded, refused)


def test_fuzz_reports_a_bug_with_its_replay(
    bases: Bases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness itself can fail: a KeyError planted in inspect is reported with the seed."""

    def broken(obj: EbpfObject, kernels: tuple[KernelProfile, ...]) -> dict[str, Any]:
        raise KeyError("planted")

    monkeypatch.setattr(__import__(__name__), "inspect_data", broken, raising=True)
    with pytest.raises(pytest.fail.Exception) as info:
        fuzz("c-el-btf", bases["c-el-btf"](), SEED, 50)
    message = str(info.value)
    assert "KeyError: 'planted'" in message and f"{SEED}:c-el-btf:" in message
    replay = json.loads(message.rsplit("NAME.json): ", 1)[1])
    assert replay["base"] == "c-el-btf" and replay["ops"]


# --- the corpus: every past crash, replayed ----------------------------------------------------


def _corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.json"))


def _mutant(entry: dict[str, Any], bases: Bases) -> bytes:
    return apply(bases[entry["base"]](), entry["ops"], bases)


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.stem)
def test_corpus(path: Path, bases: Bases, tmp_path: Path) -> None:
    entry = json.loads(path.read_text())
    assert entry["expect"] in ("error", "ok", "either"), path
    mutant = _mutant(entry, bases)
    outcome = exercise(mutant, "corpus.o")
    if entry["expect"] == "error":
        assert isinstance(outcome, ObjectError), f"{path.name} loads, expected an ObjectError"
        assert entry.get("match", "") in str(outcome)
    elif entry["expect"] == "ok":
        assert isinstance(outcome, EbpfObject), f"{path.name}: {outcome}"
    # the command's contract: exit status 0, or 2 with one line on stderr
    obj_path = tmp_path / "corpus.o"
    obj_path.write_bytes(mutant)
    out, err = io.StringIO(), io.StringIO()
    code = run_inspect(str(obj_path), as_json=True, out=out, err=err)
    if isinstance(outcome, ObjectError):
        assert code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
        assert err.getvalue().startswith(f"error: {obj_path}: ")
    else:
        assert code == 0 and err.getvalue() == "" and json.loads(out.getvalue())


_BPF, _WHY = bpf_available()


@pytest.mark.skipif(not _BPF, reason=f"loading eBPF programs needs root or CAP_BPF: {_WHY}")
def test_other_byte_order_btf_through_the_native_loader(bases: Bases, tmp_path: Path) -> None:
    """The fix-up reads big-endian BTF in a little-endian object; the kernel refuses that BTF
    and the programs load without it, each with a note, and no traceback."""
    entry = json.loads((CORPUS / "btf-other-byte-order.json").read_text())
    path = tmp_path / "swapped.o"
    path.write_bytes(_mutant(entry, bases))
    obj = load_object(path)
    with load_all(obj, loader="native") as loaded:
        results = loaded.results
        assert set(results) == {p.name for p in obj.programs}
        assert results["xdp_pass"].loaded, results["xdp_pass"].error
        for res in results.values():
            assert any("refused the object's BTF" in n for n in res.notes), res.notes


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_same_name_sections_through_the_command(
    bases: Bases, tmp_path: Path, command: str
) -> None:
    """Issue 9's first bug as the user met it: the command exited 1 with a traceback."""
    entry = json.loads((CORPUS / "same-name-program-sections.json").read_text())
    path = tmp_path / "same-name.o"
    path.write_bytes(_mutant(entry, bases))
    proc = subprocess.run([sys.executable, "-m", "pytest_ebpf.cli.main", command, str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"error: {path}: sections 4 and 6 are both named 'xdp'; programs, maps and data are "
        "found by section name, so it must name one section\n"
    )


def test_corpus_mutations_change_their_base(bases: Bases) -> None:
    """A corpus entry whose mutation no longer applies (a renamed section) would test nothing."""
    for path in _corpus():
        entry = json.loads(path.read_text())
        assert _mutant(entry, bases) != bases[entry["base"]](), path.name
