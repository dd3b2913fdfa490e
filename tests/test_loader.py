"""Tests for pytest_ebpf.kernel.loader (+ loader_native, loader_bpftool) against the running kernel.

Needs root (or CAP_BPF + CAP_SYS_ADMIN) and bpftool; CI runs as root, where nothing here skips.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import re
import struct
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from kernel_wait import wait_unloaded

from pytest_ebpf.analysis.profiles import host_profile
from pytest_ebpf.analysis.rules import judge
from pytest_ebpf.kernel import bpf as k
from pytest_ebpf.kernel.bpf import BPF_MAP_TYPE, possible_cpus, prog_test_run
from pytest_ebpf.kernel.bpftool import hide_programs
from pytest_ebpf.kernel.loader import (
    BPFFS,
    LoadedObject,
    LoaderError,
    bpftool_path,
    choose_loader,
    load_all,
    load_program,
    session_pin_dir,
)
from pytest_ebpf.obj.btf import parse_btf
from pytest_ebpf.obj.load import load_object
from pytest_ebpf.obj.model import EbpfObject

C_DIR = Path(__file__).parent / "c"

_AVAILABLE, _WHY = k.bpf_available()
pytestmark = [
    pytest.mark.skipif(
        not _AVAILABLE, reason=f"loading eBPF programs needs root or CAP_BPF here: {_WHY}"
    ),
]
needs_bpftool = pytest.mark.skipif(bpftool_path() is None, reason="bpftool is not installed")

XDP_DROP, XDP_PASS = 1, 2
LOADERS = ["native", pytest.param("bpftool", marks=needs_bpftool)]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def example_path(example_object: Callable[[str], Path]) -> Path:
    return example_object("bpfel-unknown-none")


@pytest.fixture(scope="session")
def example(example_path: Path) -> EbpfObject:
    return load_object(example_path)


def _c(compile_c, name: str) -> Path:  # type: ignore[no-untyped-def]
    path: Path = compile_c((C_DIR / f"{name}.c").read_text(), name)
    return path


@pytest.fixture(scope="module")
def globals_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    return load_object(_c(compile_c, "ld_globals"))


@pytest.fixture(scope="module")
def legacy_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    return load_object(_c(compile_c, "ld_legacy"))


@pytest.fixture(scope="module")
def reject_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    return load_object(_c(compile_c, "ld_reject"))


@pytest.fixture(scope="module")
def stack_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    return load_object(_c(compile_c, "ld_stack"))


@pytest.fixture(scope="module")
def undef_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    return load_object(_c(compile_c, "ld_undef"))




def our_pin_dirs() -> list[str]:
    """This process's pin directories (other xdist workers have theirs alive meanwhile)."""
    mine = f"pytest-ebpf-{os.getpid()}-"
    return sorted(p.name for p in BPFFS.iterdir() if p.name.startswith(mine))


@pytest.fixture
def pin_dirs_before() -> list[str]:
    """This process's pin directories before the test: an earlier test of the same worker may
    hold its session's (maps pinned by name live as long as the session)."""
    return our_pin_dirs()


# --- packets ------------------------------------------------------------------------------------


def ether(ethertype: int) -> bytes:
    return bytes.fromhex("020000000001") + bytes.fromhex("020000000002") + struct.pack(
        "!H", ethertype
    )


def ipv4(src: str, dst: str = "10.0.0.254") -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20, 0, 0, 64, 17, 0,
        bytes(int(x) for x in src.split(".")), bytes(int(x) for x in dst.split(".")),
    )  # fmt: skip
    return ether(0x0800) + header


def ipv6() -> bytes:
    return ether(0x86DD) + bytes([0x60]) + bytes(39)


def arp() -> bytes:
    return ether(0x0806) + bytes(28)


# --- the example Aya object ---------------------------------------------------------------------


def test_example_goes_native_and_loads(example: EbpfObject) -> None:
    loader, reason = choose_loader(example, "auto")
    assert loader == "native"
    assert "legacy `maps` section (Aya) that libbpf 1.0+ refuses" in reason
    with load_all(example) as loaded:
        assert loaded.loader == "native" and loaded.reason == reason
        assert set(loaded.results) == {"lock", "lock_exec", "lock_exec_btf"}
        for res in loaded.results.values():
            assert res.loaded, res.error
            assert res.error is None and res.loader == "native"
            assert res.prog_id and res.verified_insns and res.processed_insns
            assert res.prog_id in k.prog_ids()
        lock = loaded.results["lock"]
        assert len(lock.stack_depth) == 2  # lock + is_blocked
        assert lock.section == "xdp"
        assert "stack depth" in lock.log and "processed" in lock.log
        exec_count = loaded.maps["EXEC_COUNT"]
        assert exec_count.map_type == BPF_MAP_TYPE["percpu_array"]
        assert (exec_count.key_size, exec_count.value_size, exec_count.max_entries) == (4, 8, 1)
        per_cpu = exec_count.lookup(0)
        assert isinstance(per_cpu, list) and len(per_cpu) == possible_cpus()
        assert all(v == bytes(8) for v in per_cpu)
        blocklist = loaded.maps["BLOCKLIST"]
        assert blocklist.map_type == BPF_MAP_TYPE["hash"]


def test_example_lock_blocks_listed_sources(example: EbpfObject) -> None:
    with load_program(example, "lock") as loaded:
        assert set(loaded.results) == {"lock"}
        assert set(loaded.maps) == {"BLOCKLIST"}
        blocklist = loaded.maps["BLOCKLIST"]
        blocklist.update(0x0100000A, 1)  # 10.0.0.1 as the packet's bytes read natively
        assert blocklist.lookup(bytes([10, 0, 0, 1])) == struct.pack("=I", 1)
        fd = loaded.prog_fd("lock")

        def verdict(packet: bytes) -> int:
            return prog_test_run(fd, data_in=packet).retval

        assert verdict(ipv4("10.0.0.1")) == XDP_DROP
        assert verdict(ipv4("10.0.0.2")) == XDP_PASS
        assert verdict(ipv6()) == XDP_PASS
        assert verdict(arp()) == XDP_PASS
        assert verdict(ipv4("10.0.0.1")[:20]) == XDP_PASS  # truncated IPv4 header
        assert blocklist.delete(0x0100000A) is True
        assert blocklist.delete(0x0100000A) is False
        assert verdict(ipv4("10.0.0.1")) == XDP_PASS


@needs_bpftool
def test_example_through_bpftool_is_refused_by_libbpf(example: EbpfObject,
                                                      pin_dirs_before: list[str]) -> None:
    with load_all(example, loader="bpftool") as loaded:
        for res in loaded.results.values():
            assert not res.loaded and res.loader == "bpftool"
            assert res.error is not None and "legacy map definitions" in res.error
    assert our_pin_dirs() == pin_dirs_before


# --- C objects through both loaders -------------------------------------------------------------


def test_globals_object_has_every_feature(globals_obj: EbpfObject) -> None:
    assert {m.name: m.source for m in globals_obj.maps} == {"counts": "btf"}
    assert {d.name for d in globals_obj.data_sections} >= {".data", ".rodata", ".bss"}
    a, b = globals_obj.program("prog_a"), globals_obj.program("prog_b")
    assert "bump" in [f.name for f in a.functions] and "bump" in [f.name for f in b.functions]
    assert any(r.kind == "func_ptr" and r.target == "add_index" for r in b.refs)
    assert choose_loader(globals_obj, "auto") == ("bpftool", "bpftool: libbpf can open this object")


def _exercise(loaded: LoadedObject) -> dict[str, object]:
    """Run both programs twice; return everything observable."""
    skb = ipv4("10.0.0.1") + bytes(32)
    rets = []
    for _ in range(2):
        rets.append(prog_test_run(loaded.prog_fd("prog_a"), data_in=skb).retval)
        rets.append(prog_test_run(loaded.prog_fd("prog_b"), data_in=skb).retval)
    counts = loaded.maps["counts"]
    return {
        "results": {n: (r.loaded, r.error, r.section) for n, r in loaded.results.items()},
        "retvals": rets,
        "counts": dict(sorted((bytes(key), bytes(v)) for key, v in counts.items())),  # type: ignore[arg-type]
        "bss": loaded.maps[".bss"].lookup(0),
        "data": loaded.maps[".data"].lookup(0),
        "rodata": loaded.maps[".rodata"].lookup(0),
        "maps": sorted(loaded.maps),
    }


@pytest.mark.parametrize("loader", LOADERS)
def test_globals_load_and_run(globals_obj: EbpfObject, loader: str) -> None:
    with load_all(globals_obj, loader=loader) as loaded:
        assert loaded.loader == loader
        for res in loaded.results.values():
            assert res.loaded, res.log[-2000:]
            assert res.loader == loader and res.verified_insns and res.prog_id
            assert res.processed_insns and len(res.stack_depth) >= 2
        assert len(loaded.results["prog_b"].stack_depth) == 3  # prog_b, add_index, bump
        seen = _exercise(loaded)
    # prog_a: data_var 5 + ro_var 7 = 12, then 19; counts[1] = 12 + 19 = 31.
    # prog_b: 45 + bss_var (runs of prog_a: 1, then 2); counts[2] = 45 * 2 = 90.
    assert seen["retvals"] == [12, 46, 31, 47]
    assert seen["counts"] == {
        struct.pack("=I", 1): struct.pack("=Q", 31),
        struct.pack("=I", 2): struct.pack("=Q", 90),
    }
    assert seen["bss"] == struct.pack("=Q", 2)
    assert seen["data"] == struct.pack("=Q", 19)
    assert seen["rodata"] == struct.pack("=I", 7)


@needs_bpftool
def test_both_loaders_agree(globals_obj: EbpfObject) -> None:
    with load_all(globals_obj, loader="native") as native:
        a = _exercise(native)
        native_depths = {n: r.stack_depth for n, r in native.results.items()}
        native_verified = {n: r.verified_insns for n, r in native.results.items()}
    with load_all(globals_obj, loader="bpftool") as bpftool:
        b = _exercise(bpftool)
        bpftool_depths = {n: r.stack_depth for n, r in bpftool.results.items()}
        bpftool_verified = {n: r.verified_insns for n, r in bpftool.results.items()}
    assert a == b
    assert native_depths == bpftool_depths  # same function layout as libbpf
    assert native_verified == bpftool_verified


def test_native_log_has_source_lines(globals_obj: EbpfObject) -> None:
    with load_all(globals_obj, loader="native", log_level=2 | 4) as loaded:
        log = loaded.results["prog_b"].log
        assert "; bpf_loop(10, add_index, &sum, 0); @ ld_globals" in log
        assert not loaded.results["prog_b"].notes


def test_legacy_c_object_goes_native(legacy_obj: EbpfObject) -> None:
    loader, reason = choose_loader(legacy_obj, "auto")
    assert loader == "native"
    assert reason.startswith("native: legacy `maps` section") and "legacy_counts" in reason
    with load_all(legacy_obj) as loaded:
        assert loaded.results["legacy_prog"].loaded
        fd = loaded.prog_fd("legacy_prog")
        assert prog_test_run(fd, data_in=ipv4("10.0.0.1")).retval == 3
        assert prog_test_run(fd, data_in=ipv4("10.0.0.1")).retval == 6
        assert loaded.maps["legacy_counts"].lookup(0) == struct.pack("=Q", 6)


@pytest.mark.parametrize("loader", LOADERS)
def test_load_program_loads_one_program_and_its_maps(globals_obj: EbpfObject, loader: str) -> None:
    with load_program(globals_obj, "prog_a", loader=loader) as loaded:
        assert set(loaded.results) == {"prog_a"}
        assert {"counts", ".bss", ".data", ".rodata"} <= set(loaded.maps)
        with pytest.raises(LookupError, match="no program 'prog_b'"):
            loaded.prog_fd("prog_b")
        assert prog_test_run(loaded.prog_fd("prog_a"), data_in=ipv4("10.0.0.1")).retval == 12
        ids = loaded.prog_ids
        assert len(ids) == 1
    assert not wait_unloaded(ids)


# --- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", LOADERS)
def test_null_check_rejection(reject_obj: EbpfObject, loader: str) -> None:
    with load_all(reject_obj, loader=loader) as loaded:
        res = loaded.results["no_null_check"]
        assert not res.loaded and res.prog_id is None and res.verified_insns is None
        assert res.error == "R0 invalid mem access 'map_value_or_null'"
        assert res.error in res.log
        assert res.processed_insns is not None and res.stack_depth == (8,)
        with pytest.raises(LookupError, match="not loaded: R0 invalid mem access"):
            loaded.prog_fd("no_null_check")


@pytest.fixture(scope="module")
def mixed_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    """``bad`` (rejected) first, then ``good`` in the same section and ``also_good``."""
    return load_object(_c(compile_c, "verify_mixed"))


@pytest.mark.parametrize("loader", LOADERS)
def test_each_program_gets_its_own_verdict(mixed_obj: EbpfObject, loader: str) -> None:
    assert [p.name for p in mixed_obj.programs] == ["bad", "good", "also_good"]
    with load_all(mixed_obj, loader=loader) as loaded:
        bad = loaded.results["bad"]
        assert not bad.loaded and bad.cause == "verifier"
        assert bad.error == "R0 invalid mem access 'map_value_or_null'" and bad.error in bad.log
        for name in ("good", "also_good"):
            res = loaded.results[name]
            assert res.loaded and res.error is None and res.prog_id is not None, res.why
            assert res.verified_insns and "processed" in res.log
        assert loaded.maps["values"].lookup(0) is None
        loaded.maps["values"].update(0, 7)
        assert prog_test_run(loaded.prog_fd("good"), data_in=ipv4("10.0.0.1")).retval == 7
        assert prog_test_run(loaded.prog_fd("also_good"), data_in=ipv4("10.0.0.1")).retval == 2
        if loader == "bpftool":  # loaded from a copy without `bad`: the result says so
            assert "copy of the object without bad" in loaded.results["good"].notes[0]
        ids = loaded.prog_ids
        assert len(ids) == 2
    assert not wait_unloaded(ids)
    with load_program(mixed_obj, "good", loader=loader) as loaded:
        assert set(loaded.results) == {"good"} and loaded.results["good"].loaded
    with load_program(mixed_obj, "bad", loader=loader) as loaded:
        assert set(loaded.results) == {"bad"} and loaded.results["bad"].error == bad.error
        assert not loaded.prog_ids


def test_hide_programs_changes_only_their_symbol_types(mixed_obj: EbpfObject) -> None:
    """pyelftools reads the copy: every section and symbol as before, but ``bad`` and
    ``also_good`` are NOTYPE symbols (libbpf makes programs of FUNC symbols only)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    assert mixed_obj.path is not None
    original = Path(mixed_obj.path).read_bytes()
    copy = hide_programs(mixed_obj, ["bad", "also_good"])
    assert len(copy) == len(original)
    assert sum(a != b for a, b in zip(original, copy)) == 2

    Row = tuple[object, ...]

    def read(data: bytes) -> tuple[list[Row], list[Row]]:
        elf = ELFFile(io.BytesIO(data))
        sections: list[Row] = [
            (s.name, s["sh_type"], s["sh_offset"], s["sh_size"], s.data())
            for s in elf.iter_sections()
        ]
        symtab = elf.get_section_by_name(".symtab")
        assert isinstance(symtab, SymbolTableSection)
        symbols: list[Row] = [
            (sym.name, sym["st_info"]["type"], sym["st_info"]["bind"], sym["st_shndx"],
             sym["st_value"], sym["st_size"], sym["st_other"]["visibility"])
            for sym in symtab.iter_symbols()
        ]  # fmt: skip
        return sections, symbols

    old_sections, old_symbols = read(original)
    new_sections, new_symbols = read(copy)
    symtab_at = next(i for i, s in enumerate(old_sections) if s[0] == ".symtab")
    assert len(new_sections) == len(old_sections)
    assert [s for i, s in enumerate(new_sections) if i != symtab_at] == [
        s for i, s in enumerate(old_sections) if i != symtab_at
    ]
    assert len(new_symbols) == len(old_symbols)
    for (name, kind, *rest), new in zip(old_symbols, new_symbols):
        if name in ("bad", "good", "also_good"):
            assert kind == "STT_FUNC"
        hidden = name in ("bad", "also_good")
        assert new == (name, "STT_NOTYPE" if hidden else kind, *rest)


@pytest.mark.parametrize("loader", LOADERS)
def test_combined_stack_rejection(stack_obj: EbpfObject, loader: str) -> None:
    with load_all(stack_obj, loader=loader) as loaded:
        res = loaded.results["deep_stack"]
        assert not res.loaded
        assert res.error is not None
        assert res.error.startswith("combined stack size of 3 calls is ")
        assert res.error.endswith("Too large")
        assert res.error in res.log
        assert len(res.stack_depth) == 3 and sum(res.stack_depth) > 512


def test_undefined_call_is_not_loaded(undef_obj: EbpfObject) -> None:
    with load_all(undef_obj, loader="native") as loaded:
        res = loaded.results["calls_extern"]
        assert not res.loaded and res.log == ""
        assert res.error is not None
        assert res.error.startswith("undefined call to not_defined_anywhere")


# --- maps ---------------------------------------------------------------------------------------


class Key(ctypes.Structure):
    _fields_ = [("k", ctypes.c_uint32)]


def test_map_handle_conversions(globals_obj: EbpfObject) -> None:
    with load_all(globals_obj, loader="native") as loaded:
        counts = loaded.maps["counts"]
        counts.update(Key(7), 70)
        counts.update(struct.pack("=I", 8), struct.pack("=Q", 80))
        assert counts.lookup(7) == struct.pack("=Q", 70)
        assert counts[Key(8)] == struct.pack("=Q", 80)
        assert sorted(counts.keys()) == [struct.pack("=I", 7), struct.pack("=I", 8)]
        assert counts.lookup(9) is None
        with pytest.raises(KeyError):
            counts[9]
        with pytest.raises(ValueError, match="is 2 bytes; this map needs 4"):
            counts.lookup(b"ab")
        with pytest.raises(TypeError):
            counts.lookup("7")  # type: ignore[arg-type]
        assert loaded.map_fd("counts") == counts.fd.fileno()


def test_percpu_values(example: EbpfObject) -> None:
    with load_program(example, "lock_exec") as loaded:
        m = loaded.maps["EXEC_COUNT"]
        m.update(0, 5)
        assert m.lookup(0) == [struct.pack("=Q", 5)] * possible_cpus()
        values = [struct.pack("=Q", i) for i in range(possible_cpus())]
        m.update(0, values)
        assert m.lookup(0) == values


# --- cleanup ------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", LOADERS)
def test_nothing_left_after_close(globals_obj: EbpfObject, loader: str,
                                  pin_dirs_before: list[str]) -> None:
    loaded = load_all(globals_obj, loader=loader)
    ids = loaded.prog_ids
    assert len(ids) == 2 and set(ids) <= set(k.prog_ids())
    loaded.close()
    loaded.close()  # idempotent
    assert not wait_unloaded(ids)
    assert our_pin_dirs() == pin_dirs_before


@pytest.mark.parametrize("loader", LOADERS)
def test_nothing_left_after_exception(globals_obj: EbpfObject, loader: str,
                                      pin_dirs_before: list[str]) -> None:
    ids: tuple[int, ...] = ()
    with pytest.raises(RuntimeError, match="boom"), load_all(globals_obj, loader=loader) as lo:
        ids = lo.prog_ids
        assert len(ids) == 2
        raise RuntimeError("boom")
    assert not wait_unloaded(ids)
    assert our_pin_dirs() == pin_dirs_before


def test_bpftool_pins_live_in_a_private_directory(globals_obj: EbpfObject,
                                                   pin_dirs_before: list[str]) -> None:
    if bpftool_path() is None:
        pytest.skip("bpftool is not installed")
    with load_all(globals_obj, loader="bpftool"):
        root = session_pin_dir()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        assert re.fullmatch(rf"pytest-ebpf-{os.getpid()}-{worker}-[0-9a-f]{{16}}", root.name)
        pins = sorted(p.name for p in root.rglob("*") if p.is_file())
        assert {"prog_a", "prog_b", "counts"} <= set(pins)
    assert root.exists() == (root.name in pin_dirs_before)  # gone, unless it held pins before
    assert our_pin_dirs() == pin_dirs_before


def test_native_pin_dir(globals_obj: EbpfObject, tmp_path: Path,
                        pin_dirs_before: list[str]) -> None:
    pin_dir = session_pin_dir() / "explicit"
    with load_all(globals_obj, loader="native", pin_dir=pin_dir) as loaded:
        assert (pin_dir / "prog_a").exists() and (pin_dir / "maps" / "counts").exists()
        assert (pin_dir / "maps" / "_bss").exists()
        fd = k.obj_get(pin_dir / "prog_a")
        assert k.prog_info(fd).id == loaded.results["prog_a"].prog_id
        fd.close()
    assert not pin_dir.exists()
    assert our_pin_dirs() == pin_dirs_before


# --- Aya-style BTF maps and BTF fix-ups ---------------------------------------------------------


@pytest.fixture(scope="module")
def wrapped_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    return load_object(_c(compile_c, "ld_wrapped"))


def test_aya_style_btf_maps_go_native(wrapped_obj: EbpfObject) -> None:
    loader, reason = choose_loader(wrapped_obj, "auto")
    assert (loader, reason) == (
        "native", "native: Aya-style BTF map definitions that libbpf refuses (WRAPPED)"
    )  # fmt: skip
    with load_all(wrapped_obj) as loaded:
        assert loaded.results["wrapped_prog"].loaded
        fd = loaded.prog_fd("wrapped_prog")
        assert prog_test_run(fd, data_in=ipv4("10.0.0.1")).retval == 1
        assert loaded.maps["WRAPPED"].lookup(1) == struct.pack("=Q", 1)


@needs_bpftool
def test_aya_style_btf_maps_refused_by_libbpf(wrapped_obj: EbpfObject) -> None:
    with load_all(wrapped_obj, loader="bpftool") as loaded:
        res = loaded.results["wrapped_prog"]
        assert not res.loaded
        assert res.error == "libbpf: map 'WRAPPED': unknown field '__0'."


def test_fix_btf_makes_object_btf_loadable(globals_obj: EbpfObject) -> None:
    from pytest_ebpf.kernel.link import fix_btf
    from pytest_ebpf.obj.elf import read_elf

    assert globals_obj.path is not None
    image = read_elf(globals_obj.path)
    sec = image.section(".BTF")
    assert sec is not None
    with pytest.raises(k.KernelError, match="size == 0"):  # DATASEC sizes left to the loader
        k.btf_load(sec.data)
    fixed, notes = fix_btf(sec.data, image)
    assert notes == []
    k.btf_load(fixed).close()
    data = parse_btf(fixed, "little").find(".data", "datasec")
    assert data is not None and data.size == 8


def test_refused_btf_falls_back_to_loading_without(
    globals_obj: EbpfObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_ebpf.kernel.native as native

    def refuse(blob: bytes, log_level: int = 1) -> k.Fd:
        raise k.KernelError("BPF_BTF_LOAD", 22, "[1] PTR (anon) type_id=3\nInvalid name\n")

    monkeypatch.setattr(native, "btf_load", refuse)
    with load_all(globals_obj, loader="native") as loaded:
        for res in loaded.results.values():
            assert any("refused the object's BTF (Invalid name)" in n for n in res.notes)
        assert loaded.results["prog_a"].loaded
        assert k.prog_info(loaded.prog_fd("prog_a")).btf_id == 0
        # The kernel insists on BTF func_info for programs with callbacks (bpf_loop).
        prog_b = loaded.results["prog_b"]
        assert not prog_b.loaded and prog_b.error == "missing btf func_info"


@pytest.mark.parametrize("loader", LOADERS)
def test_the_kernels_first_answer_is_the_verdict(
        compile_c: Callable[..., Path], tmp_path: Path, loader: str) -> None:
    """A global function called against its BTF prototype: the kernel refuses it with BTF
    (bpftool loading the object is the truth); no loader may retry without BTF and call it
    loaded."""
    path = compile_c((C_DIR / "ld_global_args.c").read_text(), "ld_global_args")
    pin = tmp_path.name
    truth = subprocess.run(["bpftool", "prog", "load", str(path), f"/sys/fs/bpf/{pin}"],
                           capture_output=True, text=True, check=False)
    Path(f"/sys/fs/bpf/{pin}").unlink(missing_ok=True)
    assert truth.returncode != 0 and "Caller passes invalid args into func#1" in truth.stderr
    with load_all(load_object(path), loader=loader) as loaded:
        res = loaded.results["calls_global"]
    assert not res.loaded, res.notes
    assert res.error == "Caller passes invalid args into func#1 ('global_check')"
    assert "arg#0 expects pointer to ctx" in res.log
    assert not any("without BTF" in note for note in res.notes), res.notes


@pytest.mark.parametrize("loader", LOADERS)
def test_prog_array_with_array_values(compile_c: Callable[..., Path], tmp_path: Path,
                                      loader: str) -> None:
    """``__array(values, ...)`` in a PROG_ARRAY: value_size 4 as libbpf sets it, and the
    program loads as the kernel loads it through bpftool."""
    path = compile_c((C_DIR / "ld_prog_array_values.c").read_text(), "ld_prog_array_values")
    pin = f"/sys/fs/bpf/{tmp_path.name}"
    truth = subprocess.run(["bpftool", "prog", "load", str(path), pin],
                           capture_output=True, text=True, check=False)
    Path(pin).unlink(missing_ok=True)
    assert truth.returncode == 0, truth.stderr
    obj = load_object(path)
    jumps = obj.map("jumps")
    assert (jumps.type, jumps.key_size, jumps.value_size, jumps.max_entries) == (
        "prog_array", 4, 4, 2)
    with load_all(obj, loader=loader) as loaded:
        assert loaded.results["jumper"].loaded, loaded.results["jumper"].error


def test_builtins_are_made_static_as_aya_does(compile_c: Callable[..., Path],
                                              tmp_path: Path) -> None:
    """A global memset in the object (as Rust leaves it): libbpf hands the kernel the BTF as it
    is and the kernel refuses the program (bpftool, the truth of that mode); Aya makes memset
    static first, and so does the native loader, with a note: the program loads."""
    path = compile_c((C_DIR / "ld_memset.c").read_text(), "ld_memset", "-fno-builtin")
    obj = load_object(path)
    assert obj.btf is not None
    memset = obj.btf.find("memset", "func")
    assert memset is not None and memset.linkage == "global"
    pin = f"/sys/fs/bpf/{tmp_path.name}"
    as_is = subprocess.run(["bpftool", "prog", "load", str(path), pin],
                           capture_output=True, text=True, check=False)
    Path(pin).unlink(missing_ok=True)
    assert as_is.returncode != 0 and "Global function memset() doesn't return scalar" in \
        as_is.stderr, as_is.stderr[-2000:]
    with load_all(obj, loader="native") as loaded:
        res = loaded.results["clears"]
        assert res.loaded, res.error
        assert any(n.startswith("memset() made static in the BTF, as aya-obj does")
                   for n in res.notes), res.notes


def test_optional_sections_are_listed_skipped_and_loadable_on_request(
        compile_c: Callable[..., Path]) -> None:
    """``SEC("?socket")``: the program is in the model (kind from the name after '?'), left out
    of a whole-object load as libbpf leaves it out (not a failure), and loaded when asked for by
    name; bpftool cannot load such an object at all (libbpf then refuses to pin it)."""
    path = compile_c((C_DIR / "ld_optional.c").read_text(), "ld_optional")
    obj = load_object(path)
    prog = obj.program("optional_prog")
    assert (prog.section, prog.kind.prog_type, prog.kind.autoload) == (
        "?socket", "socket_filter", False)
    assert obj.program("always").kind.autoload
    assert choose_loader(obj, "auto")[0] == "native"
    with pytest.raises(LoaderError, match=r"optional_prog in '\?' sections .* fix: "
                                          r"--ebpf-loader=native"):
        choose_loader(obj, "bpftool")
    with load_all(obj, loader="native") as loaded:
        skipped = loaded.results["optional_prog"]
        assert not skipped.loaded and skipped.cause == "optional" and not skipped.failed
        assert "starts with '?'" in skipped.why
        assert loaded.results["always"].loaded
    with load_program(obj, "optional_prog", loader="auto") as alone:
        assert alone.results["optional_prog"].loaded


@pytest.mark.parametrize("loader", LOADERS)
def test_infinite_loop_reason_is_the_decisive_line(compile_c: Callable[..., Path],
                                                   loader: str) -> None:
    """After "infinite loop detected" the kernel dumps the current and old states; the reason
    is the line before them."""
    obj = load_object(compile_c((C_DIR / "ld_infinite_loop.c").read_text(), "ld_loop"))
    with load_all(obj, loader=loader) as loaded:
        res = loaded.results["spins"]
    assert not res.loaded
    assert res.error is not None and re.fullmatch(r"infinite loop detected at insn \d+",
                                                  res.error), res.error
    assert "old state: " in res.log


def _bpftool_alone(path: Path, program: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``bpftool prog load`` of one program (the others hidden): the kernel's truth for it."""
    from pytest_ebpf.kernel.bpftool import hide_programs

    obj = load_object(path)
    copy = tmp_path / f"only-{program}.o"
    copy.write_bytes(hide_programs(obj, [p.name for p in obj.programs if p.name != program]))
    pin = f"/sys/fs/bpf/{tmp_path.name}-{program}"
    try:
        return subprocess.run(["bpftool", "prog", "load", str(copy), pin],
                              capture_output=True, text=True, check=False)
    finally:
        Path(pin).unlink(missing_ok=True)


@needs_bpftool
def test_kernel_btf_attach_targets(compile_c: Callable[..., Path], tmp_path: Path) -> None:
    """tp_btf and iter programs get their attach_btf_id from the kernel's BTF and the kernel's
    verdict, which bpftool (libbpf) loading each alone confirms; fentry and lsm meet a kernel
    without trampolines (EPERM before verification: no verdict, and said so); a target the
    kernel lacks is refused by name."""
    truth = compile_c((C_DIR / "ld_btf_targets.c").read_text(), "ld_btf_truth", "-DTRUTH")
    said = {}
    for name, ok in (("on_exec", True), ("eighth_arg", False), ("on_task", True)):
        proc = _bpftool_alone(truth, name, tmp_path)
        assert (proc.returncode == 0) == ok, (name, proc.stderr[-1500:])
        said[name] = proc.stderr
    obj = load_object(compile_c((C_DIR / "ld_btf_targets.c").read_text(), "ld_btf_targets"))
    with load_all(obj, loader="native") as loaded:
        r = loaded.results
        assert r["on_exec"].loaded and r["on_task"].loaded, (r["on_exec"], r["on_task"])
        assert any(n.startswith("attach target: TYPEDEF btf_trace_sched_process_exec")
                   for n in r["on_exec"].notes)
        assert not r["eighth_arg"].loaded and r["eighth_arg"].cause == "verifier"
        assert r["eighth_arg"].error == "invalid bpf_context access off=56 size=8"
        assert r["eighth_arg"].error in said["eighth_arg"]  # the kernel's words, via libbpf
        for name in ("on_sleep", "on_open"):
            assert not r[name].loaded and r[name].cause == "permission"
            assert (r[name].error or "").startswith(
                "the kernel refused to attach a trampoline (EPERM before verification"), r[name]
        assert r["missing"].cause == "loader" and "no TYPEDEF 'btf_trace_no_such_tracepoint'" \
            in (r["missing"].error or "")


def test_maps_sized_at_load_time(compile_c: Callable[..., Path]) -> None:
    """A ring buffer of size 0 in the object: not created without a size (the fix named), the
    program loads and writes to it with one (max_entries, as Aya's set_max_entries); a size
    for a map that does not exist, or for bpftool, is one clear error."""
    obj = load_object(compile_c((C_DIR / "ld_ringbuf.c").read_text(), "ld_ringbuf"))
    assert (obj.map("events").type, obj.map("events").max_entries) == ("ringbuf", 0)
    with load_all(obj, loader="native") as loaded:
        res = loaded.results["emit"]
        assert not res.loaded and res.cause == "loader"
        assert "ringbuf map events has max_entries 0 in the object" in (res.error or "")
        assert "--ebpf-map-sizes=events=4096" in (res.error or "")
    with load_all(obj, loader="auto", max_entries={"events": 4096}) as loaded:
        assert loaded.loader == "native" and "sized at load time" in loaded.reason
        assert loaded.results["emit"].loaded, loaded.results["emit"].error
        assert loaded.maps["events"].max_entries == 4096
        events = loaded.maps["events"]
        assert events.records() == []
        for _ in range(3):
            assert k.prog_test_run(loaded.prog_fd("emit"), data_in=bytes(64)).retval == 0
        # what the program wrote, read from the ring buffer's memory; consumed once
        assert events.records() == [struct.pack("=Q", 42)] * 3
        assert events.records() == []

    with pytest.raises(LookupError, match="no map 'evnets'"):
        load_all(obj, loader="native", max_entries={"evnets": 4096})
    with pytest.raises(LoaderError, match="bpftool cannot size maps at load time"):
        load_all(obj, loader="bpftool", max_entries={"events": 4096})


@pytest.mark.parametrize("loader", LOADERS)
def test_attached_tp_btf_program_sees_an_exec(compile_c: Callable[..., Path],
                                              loader: str) -> None:
    """attached(): a tp_btf program runs on the kernel's own event while the block lasts; the
    pid of a process started then is in its ring buffer, one started after it is not."""
    obj = load_object(compile_c((C_DIR / "ld_exec_events.c").read_text(), "ld_exec_events"))
    with load_all(obj, loader=loader) as loaded:
        assert loaded.results["on_exec"].loaded, loaded.results["on_exec"].error
        execs = loaded.maps["execs"]
        with loaded.attached("on_exec"):
            seen = subprocess.Popen(["/bin/true"])
            seen.wait()
        after = subprocess.Popen(["/bin/true"])
        after.wait()
        pids = {struct.unpack("=I", r)[0] for r in execs.records()}
        assert seen.pid in pids and after.pid not in pids, (seen.pid, after.pid, pids)
        with pytest.raises(k.KernelError, match="the kernel test-runs only the fentry, fexit "
                           r"and fmod_ret kinds of tracing programs \(not tp_btf or iter\); "
                           r"fix: attach it for real \(ebpf_loaded.attached\(NAME\)"):
            k.prog_test_run(loaded.prog_fd("on_exec"), data_in=bytes(64))
    other_obj = load_object(compile_c((C_DIR / "ld_optional.c").read_text(), "ld_optional"))
    other = load_all(other_obj, loader="native")
    try:
        with pytest.raises(TypeError, match=r"socket_filter program: attached\(\) takes "
                           r"raw_tracepoint, tp_btf \(btf_tracepoint\), fentry, fexit, "
                           r"fmod_ret and lsm programs"):
            other.attached("always").__enter__()
    finally:
        other.close()


@needs_bpftool
def test_kfunc_calls_resolved_against_the_kernel(compile_c: Callable[..., Path],
                                                 tmp_path: Path) -> None:
    """kfuncs: the native loader gives each program the kernel's verdict that bpftool (libbpf)
    gets loading it alone; a kfunc the kernel lacks is refused by name."""
    source = (C_DIR / "ld_kfuncs.c").read_text()
    truth = compile_c(source, "ld_kfuncs_truth", "-DTRUTH")
    said = {name: _bpftool_alone(truth, name, tmp_path) for name in ("balanced", "left_open")}
    assert said["balanced"].returncode == 0, said["balanced"].stderr[-1500:]
    assert said["left_open"].returncode != 0
    obj = load_object(compile_c(source, "ld_kfuncs"))
    with load_all(obj, loader="native") as loaded:
        r = loaded.results
        assert r["balanced"].loaded, r["balanced"].error
        assert not r["left_open"].loaded and r["left_open"].cause == "verifier"
        assert r["left_open"].error and r["left_open"].error in said["left_open"].stderr
        assert not r["missing"].loaded and r["missing"].cause == "loader"
        assert "this kernel has no kernel function bpf_no_such_kfunc in its BTF" in (
            r["missing"].error or "")
        assert not any("refused the object's BTF" in n for n in r["balanced"].notes), \
            r["balanced"].notes
    # the fix-up the kernel accepted: .ksyms members are int VAR slots now, kfuncs static
    from pytest_ebpf.kernel.link import fix_btf
    from pytest_ebpf.obj.elf import read_elf

    image = read_elf(obj.path or "")
    btf_sec = image.section(".BTF")
    assert btf_sec is not None
    fixed = parse_btf(fix_btf(btf_sec.data, image)[0], "little")
    ksyms = fixed.find(".ksyms", "datasec")
    assert ksyms is not None and ksyms.size == 4 * len(ksyms.datasec_vars) == 12
    assert {fixed.type(v.type).kind for v in ksyms.datasec_vars} == {"var"}
    lock = fixed.find("bpf_rcu_read_lock", "func")
    assert lock is not None and lock.linkage == "static"
    k.btf_load(fix_btf(btf_sec.data, image)[0]).close()


@needs_bpftool
def test_kconfig_externs_filled_from_the_running_kernel(compile_c: Callable[..., Path],
                                                        tmp_path: Path) -> None:
    """LINUX_KERNEL_VERSION and CONFIG_* as libbpf fills them: the program computes the same
    value whether bpftool (libbpf) or the native loader loaded it; a strong extern the kernel's
    config lacks is refused by name, a weak one reads 0."""
    path = compile_c((C_DIR / "ld_kconfig.c").read_text(), "ld_kconfig")
    pin = f"/sys/fs/bpf/{tmp_path.name}"
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(64))
    subprocess.run(["bpftool", "prog", "load", str(path), pin], check=True,
                   capture_output=True)
    try:
        ran = subprocess.run(["bpftool", "-j", "prog", "run", "pinned", pin, "data_in",
                              str(data)], capture_output=True, text=True, check=True)
    finally:
        Path(pin).unlink(missing_ok=True)
    libbpf_says = json.loads(ran.stdout)["retval"]
    with load_all(load_object(path), loader="native") as loaded:
        assert loaded.results["from_kconfig"].loaded, loaded.results["from_kconfig"].error
        assert not any("refused the object's BTF" in n
                       for n in loaded.results["from_kconfig"].notes)
        ours = prog_test_run(loaded.prog_fd("from_kconfig"), data_in=bytes(64)).retval
    assert ours == libbpf_says > 1  # CONFIG_BPF_JIT (1) + CONFIG_HZ
    unset = load_object(compile_c((C_DIR / "ld_kconfig.c").read_text(), "ld_kconfig_unset",
                                  "-DUNSET"))
    with load_all(unset, loader="native") as loaded:
        res = loaded.results["from_kconfig"]
        assert not res.loaded and res.cause == "loader"
        assert ".kconfig extern CONFIG_PYTEST_EBPF_STRONG_MISSING (int): not set in this " \
               "kernel's config; fix: declare it __weak" in (res.error or ""), res.error


@needs_bpftool
def test_core_relocations_against_the_kernel(compile_c: Callable[..., Path],
                                             tmp_path: Path) -> None:
    """CO-RE as libbpf does it: each program's verdict is the one bpftool (libbpf) gets loading
    it alone, and the relocated read really reads the kernel's field (the pid of a process
    the test starts, sent through a ring buffer)."""
    path = compile_c((C_DIR / "ld_core.c").read_text(), "ld_core")
    said = {name: _bpftool_alone(path, name, tmp_path)
            for name in ("exec_pid", "guarded", "unguarded")}
    assert said["exec_pid"].returncode == 0 and said["guarded"].returncode == 0, said
    assert said["unguarded"].returncode != 0
    assert "failed to resolve CO-RE relocation <byte_off> [" in said["unguarded"].stderr
    obj = load_object(path)
    with load_all(obj, loader="native") as loaded:
        r = loaded.results
        assert r["exec_pid"].loaded and r["guarded"].loaded, (r["exec_pid"], r["guarded"])
        assert any("CO-RE relocation(s) applied" in n for n in r["exec_pid"].notes)
        assert not r["unguarded"].loaded and r["unguarded"].cause == "verifier"
        assert r["unguarded"].error == (
            "failed to resolve CO-RE relocation field_byte_offset of struct "
            "task_struct.pytest_no_such_field (0:2) at insn 1 of unguarded: the kernel's BTF "
            "has no such type or field (the verifier: invalid func unknown#195896080)")
        with loaded.attached("exec_pid"):
            child = subprocess.Popen(["/bin/true"])
            child.wait()
        pids = {struct.unpack("=I", rec)[0] for rec in loaded.maps["pids"].records()}
        assert child.pid in pids, (child.pid, pids)


@pytest.mark.parametrize("loader", ["native", "auto"])
def test_every_test_runnable_type_runs(compile_c: Callable[..., Path], loader: str) -> None:
    """BPF_PROG_TEST_RUN for each type the kernel can run here: raw_tracepoint and syscall
    take a ctx, the packet types data; the return values are what the programs compute."""
    obj = load_object(compile_c((C_DIR / "ld_test_run.c").read_text(), "ld_test_run"))
    packet = bytes(64)
    with load_all(obj, loader=loader) as loaded:
        assert all(r.loaded for r in loaded.results.values()), loaded.results
        run = {name: prog_test_run(loaded.prog_fd(name), data_in=data, ctx_in=ctx).retval
               for name, data, ctx in (
                   ("rt", b"", struct.pack("=QQ", 1, 42)), ("sc", b"", bytes(8)),
                   ("cs", packet, None), ("tcp", packet, None), ("fd", packet, None),
                   ("sf", packet, None))}
        other = prog_test_run(loaded.prog_fd("rt"), ctx_in=struct.pack("=QQ", 1, 41)).retval
    assert run == {"rt": 7, "sc": 9, "cs": 1, "tcp": 64, "fd": 0, "sf": 64 - 14}
    assert other == 3  # the raw tracepoint program read the ctx it was given


def test_maps_pinned_by_name_are_shared_within_the_session(
        compile_c: Callable[..., Path]) -> None:
    """Two loads of an object whose map is pinned by name share the map through the session's
    private pin directory (never /sys/fs/bpf itself: bpftool, which would pin there, is not
    chosen)."""
    obj = load_object(compile_c((C_DIR / "ld_pinned.c").read_text(), "ld_pinned"))
    assert obj.map("shared").pinning == 1
    chosen, why = choose_loader(obj, "auto")
    assert chosen == "native" and "shared (pinned by name)" in why
    assert not Path("/sys/fs/bpf/shared").exists()
    with load_all(obj) as first, load_all(obj) as second:
        prog_test_run(first.prog_fd("bump"), data_in=bytes(64))
        prog_test_run(second.prog_fd("bump"), data_in=bytes(64))
        assert first.maps["shared"].lookup(0) == second.maps["shared"].lookup(0) == \
            struct.pack("=Q", 2)
        assert (session_pin_dir() / "by-name" / "shared").exists()
    assert not Path("/sys/fs/bpf/shared").exists()


@needs_bpftool
def test_map_values_decoded_through_btf(compile_c: Callable[..., Path]) -> None:
    """MapHandle.value(): the struct a program wrote, decoded through the map's BTF type, equal
    to what bpftool's BTF-formatted dump of the same map says."""
    obj = load_object(compile_c((C_DIR / "ld_btf_values.c").read_text(), "ld_btf_values"))
    with load_all(obj, loader="native") as loaded:
        prog_test_run(loaded.prog_fd("fill"), data_in=bytes(64))
        stats = loaded.maps["stats"]
        value = stats.value(0)
        assert value == {"count": 7, "delta": -3, "flags": 5, "mode": 17,
                         "hist": [1, 0, 1 << 40], "in": {"a": 0, "b": 99}}
        map_id = k.map_info(stats.fd).id
        dump = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(map_id)],
                              capture_output=True, text=True, check=True)
        [entry] = json.loads(dump.stdout)
        shown = entry["formatted"]["value"]  # bpftool prints bitfields in hex
        assert {k: int(v, 16) if isinstance(v, str) else v for k, v in shown.items()} == value
    example = load_object(compile_c((C_DIR / "ld_ringbuf.c").read_text(), "ld_ringbuf"))
    with load_all(example, max_entries={"events": 4096}) as rb, \
            pytest.raises(TypeError, match="has no BTF value type"):
        rb.maps["events"].value(0)


def test_no_license_section_loads_as_gpl_like_aya(compile_c: Callable[..., Path]) -> None:
    """No license section: loaded as "GPL" (aya-obj's default), so a GPL-only helper is
    accepted, and the static license rule agrees; a non-GPL license is refused by the kernel
    and predicted by the rule."""
    source = (C_DIR / "ld_no_license.c").read_text()
    none = load_object(compile_c(source, "ld_no_license"))
    assert none.license is None
    with load_all(none, loader="native") as loaded:
        assert loaded.results["reads"].loaded, loaded.results["reads"].error
    assert [f for v in judge(none, [host_profile()]) for f in v.findings
            if f.rule == "license"] == []
    proprietary = load_object(compile_c(source, "ld_proprietary", "-DPROPRIETARY"))
    with load_all(proprietary, loader="native") as loaded:
        res = loaded.results["reads"]
        assert not res.loaded
        assert "cannot call GPL-restricted function from non-GPL compatible program" in \
            (res.error or "")
    [finding] = [f for v in judge(proprietary, [host_profile()]) for f in v.findings
                 if f.rule == "license"]
    assert finding.check == "gpl_only_helper" and "'Proprietary'" in finding.message


@needs_bpftool
def test_typed_ksyms_linked_through_the_kernel_btf(compile_c: Callable[..., Path],
                                                   tmp_path: Path) -> None:
    """A typed ksym gets the kernel's BTF id of the variable: the verdict and its reason are
    the kernel's, the same through bpftool (libbpf) and the native loader; a ksym the kernel's
    BTF lacks is refused by name."""
    source = (C_DIR / "ld_ksyms.c").read_text()
    path = compile_c(source, "ld_ksyms")
    truth = _bpftool_alone(path, "active", tmp_path)
    with load_all(load_object(path), loader="native") as loaded:
        res = loaded.results["active"]
    assert res.loaded == (truth.returncode == 0), (res, truth.stderr[-1500:])
    if not res.loaded:
        assert res.error and res.error in truth.stderr
    missing = load_object(compile_c(source, "ld_ksyms_missing", "-DMISSING"))
    with load_all(missing, loader="native") as loaded:
        gone = loaded.results["missing"]
    assert not gone.loaded and gone.cause == "loader"
    assert "ksym pytest_ebpf_no_such_ksym" in (gone.error or "") and \
        "this kernel's BTF has no variable pytest_ebpf_no_such_ksym" in (gone.error or "")
