"""Tests of the static stack analysis (pytest_ebpf.analysis.stack).

Objects are compiled here from ``tests/c/an_stack.c`` / ``an_bigframe.c`` and, where they have
no relocations other than BPF-to-BPF calls and legacy maps, linked by hand (functions laid out
entry first, call immediates patched, maps created) and loaded into the running kernel, so the
static figures are compared with the verifier's own "stack depth A+B+..." line and its error
messages. Those loads need root (or CAP_BPF); CI runs as root.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.analysis.stack import (
    MAX_BPF_STACK,
    function_stack,
    program_stack,
    round_frame,
    stack_problems,
)
from pytest_ebpf.kernel import bpf as kernel
from pytest_ebpf.kernel.loader import load_all
from pytest_ebpf.obj.elf import read_elf
from pytest_ebpf.obj.load import load_object
from pytest_ebpf.obj.model import EbpfObject, Function, Program

C_DIR = Path(__file__).parent / "c"
EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack_obj(compile_c) -> tuple[Path, EbpfObject]:  # type: ignore[no-untyped-def]
    path = compile_c((C_DIR / "an_stack.c").read_text(), "an_stack")
    return path, load_object(path)


@pytest.fixture(scope="module")
def big_obj(compile_c) -> tuple[Path, EbpfObject]:  # type: ignore[no-untyped-def]
    path = compile_c(
        (C_DIR / "an_bigframe.c").read_text(), "an_bigframe", "-mllvm", "-bpf-stack-size=1024"
    )
    return path, load_object(path)


@pytest.fixture(scope="session")
def lock_path(example_object: Callable[[str], Path]) -> Path:
    return example_object("bpfel-unknown-none")


# ---------------------------------------------------------------------------------------------
# Hand linking and loading (what a loader does, for relocation-light objects)
# ---------------------------------------------------------------------------------------------


def _containing(layout: list[Function], section: str, slot: int) -> Function:
    for fn in layout:
        if fn.section == section and fn.offset <= slot < fn.end:
            return fn
    raise AssertionError(f"no function at {section}:{slot}")


def _minimal_btf(names: list[str]) -> bytes:
    """A BTF blob with ``int``, ``void *``, ``int (void *ctx)`` and one static FUNC per name
    (type ids 4, 5, ...). The object's own .BTF needs libbpf's DATASEC fix-ups to load."""
    strings = b"\0int\0ctx\0"
    name_offs = []
    for name in names:
        name_offs.append(len(strings))
        strings += name.encode() + b"\0"
    types = struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", (1 << 24) | 32)  # 1: int
    types += struct.pack("<III", 0, 2 << 24, 0)  # 2: void *
    types += struct.pack("<III", 0, (13 << 24) | 1, 1) + struct.pack("<II", 5, 2)  # 3: proto
    for off in name_offs:
        types += struct.pack("<III", off, 12 << 24, 3)  # FUNC, static linkage
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


@contextmanager
def loaded(
    path: Path, obj: EbpfObject, prog: Program, btf: bool = False
) -> Iterator[kernel.LoadOutcome]:
    """Link *prog* (entry first, then its callees in ``prog.functions`` order), create its
    legacy maps, and load it as a socket filter; yields the outcome (fd closed afterwards).
    With *btf*, the object's ``.BTF`` is loaded and func_info passed (the kernel wants it for
    tail calls from subprograms)."""
    if os.geteuid() != 0:
        ok, why = kernel.bpf_available()
        if not ok:
            pytest.skip(f"cannot load programs: {why}")
    image = read_elf(path)
    layout = list(prog.functions)
    starts: dict[tuple[str, str], int] = {}
    pos = 0
    for fn in layout:
        starts[fn.key] = pos
        pos += fn.slots
    code = bytearray()
    for fn in layout:
        sec = image.section(fn.section)
        assert sec is not None
        code += sec.data[fn.offset * 8 : fn.end * 8]
    fds: list[kernel.Fd] = []
    try:
        for fn in layout:
            base = starts[fn.key] - fn.offset
            for call in fn.calls:
                if call.kind != "bpf":
                    continue
                assert call.target_section is not None and call.target_offset is not None
                callee = _containing(layout, call.target_section, call.target_offset)
                target = starts[callee.key] + call.target_offset - callee.offset
                at = base + call.insn.index
                struct.pack_into("<i", code, at * 8 + 4, target - at - 1)
            for ref in fn.refs:
                assert ref.kind == "map", f"cannot hand-link a {ref.kind} reference"
                m = obj.map(ref.target)
                fd = kernel.map_create(
                    kernel.BPF_MAP_TYPE[m.type], m.key_size, m.value_size, m.max_entries
                )
                fds.append(fd)
                at = (base + ref.insn_index) * 8
                code[at + 1] = (code[at + 1] & 0x0F) | (kernel.BPF_PSEUDO_MAP_FD << 4)
                struct.pack_into("<i", code, at + 4, int(fd))
        kw: dict[str, object] = {}
        if btf:
            btf_fd = kernel.btf_load(_minimal_btf([fn.name for fn in layout]))
            fds.append(btf_fd)
            records = b"".join(
                struct.pack("<II", starts[fn.key], 4 + i) for i, fn in enumerate(layout)
            )
            kw = {"btf_fd": btf_fd, "func_info": records}
        out = kernel.prog_load(
            kernel.BPF_PROG_TYPE["socket_filter"], bytes(code), "GPL", **kw  # type: ignore[arg-type]
        )
        try:
            yield out
        finally:
            if out.fd is not None:
                out.fd.close()
    finally:
        for fd in fds:
            fd.close()


# ---------------------------------------------------------------------------------------------
# Single frames
# ---------------------------------------------------------------------------------------------


def test_helper_buffer_through_derived_pointer(stack_obj: tuple[Path, EbpfObject]) -> None:
    path, obj = stack_obj
    prog = obj.program("leaf_buf")
    use = function_stack(prog.entry)
    # u8 buf[300], only reached as `r3 = r10; r3 += -300; call bpf_skb_load_bytes`.
    assert use.depth == 304
    assert use.deepest_insn is not None
    assert use.deepest_insn.is_helper_call or use.deepest_insn.is_load
    ps = program_stack(obj, prog)
    assert ps.frames == {"leaf_buf": 304}
    assert ps.chain == ("leaf_buf",) and ps.chain_frames == (304,)
    assert ps.total == 320 and program_stack(obj, prog, frame_round=16).total == 304
    assert ps.max_frames == 1 and ps.tail_call_depth is None and ps.recursion == ()
    assert stack_problems(obj, prog) == []
    with loaded(path, obj, prog) as out:
        assert out.ok, out.log
        assert out.summary().stack_depth == (304,)


def test_single_frame_over_512(big_obj: tuple[Path, EbpfObject]) -> None:
    path, obj = big_obj
    prog = obj.program("big_frame")
    use = function_stack(prog.entry)
    assert use.depth == 600
    problems = stack_problems(obj, prog)
    assert [p.check for p in problems] == ["stack_frame_too_large"]
    p = problems[0]
    assert p.function == "big_frame" and p.total == 600 and p.insn is not None
    assert "600 bytes" in p.message and "512" in p.message
    with loaded(path, obj, prog) as out:
        assert not out.ok
        assert "stack" in out.log
        assert "-600" in out.log or "600" in out.log


def test_frames_match_disassembly_of_rust_example(lock_path: Path) -> None:
    obj = load_object(lock_path)
    lock = program_stack(obj, obj.program("lock"))
    # `is_blocked` spills the u32 key at r10-4 for bpf_map_lookup_elem; `lock` uses no stack.
    assert lock.frames == {"lock": 0, "is_blocked": 8}
    assert lock.chain == ("lock", "is_blocked")
    assert lock.chain_frames == (0, 8)
    assert lock.total == 64  # round_up(max(0, 1), 32) + round_up(8, 32)
    assert program_stack(obj, obj.program("lock"), frame_round=16).total == 16
    assert lock.deepest.function.name == "is_blocked"
    exec_ = program_stack(obj, obj.program("lock_exec"))
    assert exec_.frames == {"lock_exec": 8} and exec_.total == 32
    # compiler_builtins' memcpy & co. are in .text but reached by nobody.
    assert all("memcpy" not in program_stack(obj, p).frames for p in obj.programs)
    for p in obj.programs:
        assert stack_problems(obj, p) == []


# ---------------------------------------------------------------------------------------------
# Call chains
# ---------------------------------------------------------------------------------------------


def test_combined_chain_over_512(stack_obj: tuple[Path, EbpfObject]) -> None:
    path, obj = stack_obj
    prog = obj.program("chain_main")
    ps = program_stack(obj, prog)
    assert ps.chain == ("chain_main", "chain_a", "chain_b")
    assert ps.chain_frames == (200, 200, 200)
    assert ps.frames == {"chain_main": 200, "chain_a": 200, "chain_b": 200}
    assert ps.total == 3 * 224 == 672
    assert all(f < MAX_BPF_STACK for f in ps.chain_frames)
    ps16 = program_stack(obj, prog, frame_round=16)
    assert ps16.total == 3 * 208
    problems = stack_problems(obj, prog)
    assert [p.check for p in problems] == ["stack_combined_too_large"]
    assert problems[0].total == 672
    assert "combined stack size of 3 calls is 672. Too large" in problems[0].message
    assert problems[0].chain == ps.chain
    with loaded(path, obj, prog) as out:
        assert not out.ok
        # The JIT is on here (round_up(depth, 16)); the verifier's sum matches ours.
        jit = program_stack(obj, prog, frame_round=16).total
        interp = ps.total
        assert (
            f"combined stack size of 3 calls is {jit}. Too large" in out.log
            or f"combined stack size of 3 calls is {interp}. Too large" in out.log
        ), out.log[-2000:]
        depth = out.summary().stack_depth
        if depth:
            assert depth == (200, 200, 200)


def test_chain_of_nine_frames(stack_obj: tuple[Path, EbpfObject]) -> None:
    path, obj = stack_obj
    prog = obj.program("chain9")
    ps = program_stack(obj, prog)
    assert ps.max_frames == 9
    assert ps.longest_chain == ("chain9", *(f"d{i}" for i in range(1, 9)))
    assert all(ps.frames[n] == 8 for n in ps.longest_chain)
    assert ps.total == 9 * 32
    problems = stack_problems(obj, prog)
    assert [p.check for p in problems] == ["stack_too_many_frames"]
    assert problems[0].function == "d8"
    with loaded(path, obj, prog) as out:
        assert not out.ok
        assert "frames is too deep" in out.log


def test_tail_call_below_big_frame(stack_obj: tuple[Path, EbpfObject]) -> None:
    path, obj = stack_obj
    prog = obj.program("tail_main")
    ps = program_stack(obj, prog)
    assert ps.frames["tail_main"] == 304 and ps.frames["tail_sub"] == 0
    assert ps.tail_call_depth == 320
    assert ps.tail_call_chain == ("tail_main", "tail_sub")
    assert program_stack(obj, prog, frame_round=16).tail_call_depth == 304
    problems = stack_problems(obj, prog)
    assert [p.check for p in problems] == ["stack_tail_call_stack"]
    p = problems[0]
    assert p.function == "tail_sub" and p.insn is not None and p.insn.imm == 12
    with loaded(path, obj, prog, btf=True) as out:
        assert not out.ok
        assert (
            "tail_calls are not allowed when call stack of previous frames is 304 bytes" in out.log
        ), out.log[-2000:]


def test_recursion(stack_obj: tuple[Path, EbpfObject]) -> None:
    path, obj = stack_obj
    prog = obj.program("recurse")
    ps = program_stack(obj, prog)
    assert ps.recursion == ("ping", "pong", "ping")
    assert ps.chain == ("recurse", "ping", "pong")
    assert ps.frames == {"recurse": 8, "ping": 16, "pong": 16}
    problems = stack_problems(obj, prog)
    assert [p.check for p in problems] == ["stack_recursion"]
    assert problems[0].function == "pong" and problems[0].insn is not None
    assert problems[0].insn.is_pseudo_call
    with loaded(path, obj, prog) as out:
        assert not out.ok


def test_loadable_chain_matches_verifier(stack_obj: tuple[Path, EbpfObject]) -> None:
    """A chain the verifier accepts: our per-frame figures == its "stack depth" line."""
    path, obj = stack_obj
    prog = obj.program("pair_main")
    ps = program_stack(obj, prog)
    assert ps.chain == ("pair_main", "pair_sub")
    assert ps.chain_frames == (104, 40)  # u8[100] rounded to 8, u8[40]
    assert stack_problems(obj, prog) == []
    with loaded(path, obj, prog) as out:
        assert out.ok, out.log[-2000:]
        assert out.summary().stack_depth == ps.chain_frames


def test_round_frame() -> None:
    assert round_frame(0) == 32 and round_frame(1) == 32 and round_frame(33) == 64
    assert round_frame(0, 16) == 0 and round_frame(8, 16) == 16 and round_frame(304, 16) == 304


# ---------------------------------------------------------------------------------------------
# Register tracking, on hand-written instruction sequences
# ---------------------------------------------------------------------------------------------


ASM = r"""
asm(
    "  .section \"socket\",\"ax\",@progbits\n"
    "  .globl tracked\n"
    "  .type tracked,@function\n"
    "tracked:\n"
    "  r2 = r10\n"
    "  r2 += -64\n"           /* derived pointer */
    "  r3 = r2\n"             /* copy */
    "  r3 += -16\n"           /* r10 - 80 */
    "  *(u64 *)(r3 + 8) = r1\n" /* touches r10 - 72 */
    "  *(u64 *)(r10 - 8) = r3\n"  /* spill a stack pointer */
    "  r4 = *(u64 *)(r10 - 8)\n"  /* fill it */
    "  *(u32 *)(r4 - 20) = r1\n"  /* r10 - 100 */
    "  if r1 == 0 goto 1f\n"
    "  r5 = r10\n"
    "  r5 += -120\n"
    "  goto 2f\n"
    "1:\n"
    "  r5 = r10\n"
    "  r5 += -200\n"
    "2:\n"
    "  *(u8 *)(r5 + 0) = r1\n"   /* may be r10 - 200: depth 200 */
    "  r0 = 0\n"
    "  exit\n"
    "  .size tracked, .-tracked\n"
    "  .globl clobbered\n"
    "  .type clobbered,@function\n"
    "clobbered:\n"
    "  r1 = r10\n"
    "  r1 += -40\n"             /* counted: a stack pointer is an argument of the call */
    "  call 5\n"                 /* r1 is clobbered by the call... */
    "  *(u64 *)(r1 - 360) = r0\n"  /* ...so this is not a stack access */
    "  r6 = -48\n"
    "  r7 = r10\n"
    "  r7 += r6\n"               /* r10 - 48 through a constant register */
    "  *(u64 *)(r7 + 0) = r0\n"
    "  w8 = w10\n"               /* 32-bit copies are not pointers */
    "  *(u64 *)(r8 - 300) = r0\n"
    "  r0 = 0\n"
    "  exit\n"
    "  .size clobbered, .-clobbered\n"
);
char _license[] __attribute__((section("license"), used)) = "GPL";
"""


def test_register_tracking(compile_c) -> None:  # type: ignore[no-untyped-def]
    obj = load_object(compile_c(ASM, "an_track"))
    t = function_stack(obj.function("tracked"))
    assert t.depth == 200
    assert t.deepest_insn is not None and t.deepest_insn.is_store and t.deepest_insn.dst == 5
    c = function_stack(obj.function("clobbered"))
    assert c.depth == 48


# ---------------------------------------------------------------------------------------------
# Frames the verifier counts beyond the constant accesses (tests/c/an_frames.c)
# ---------------------------------------------------------------------------------------------

# program -> (per function: the static depth, the verifier's "stack depth" figure), combined
# depth with the JIT's rounding, the chain of it
FRAMES: dict[str, tuple[dict[str, tuple[int, int]], int, tuple[str, ...]]] = {
    # bpf_loop inlined (5.19+): 24 bytes the combined check does not see
    "inlined_loop": ({"inlined_loop": (8, 32), "loop_cb": (0, 0)}, 16,
                     ("inlined_loop", "loop_cb")),
    "inlined_loop_big": ({"inlined_loop_big": (8, 32), "big_cb": (496, 496)}, 512,
                         ("inlined_loop_big", "big_cb")),
    # (len & 8) - 16 + r10: was 8; two constants merged into a range: was 0
    "variable_offset": ({"variable_offset": (16, 16)}, 16, ("variable_offset",)),
    "two_constants": ({"two_constants": (32, 32)}, 32, ("two_constants",)),
    # a timer callback is a root of its own: was 208 + 400 = 608, "too large"
    "arms_timer": ({"arms_timer": (208, 208), "timer_cb": (400, 400)}, 400, ("timer_cb",)),
}


@pytest.fixture(scope="module")
def frames_obj(compile_c) -> EbpfObject:  # type: ignore[no-untyped-def]
    return load_object(compile_c((C_DIR / "an_frames.c").read_text(), "an_frames"))


def test_frames_beyond_constant_accesses(frames_obj: EbpfObject) -> None:
    for name, (frames, total, chain) in FRAMES.items():
        prog = frames_obj.program(name)
        ps = program_stack(frames_obj, prog, frame_round=16)
        got = {n: (u.depth, u.verifier_depth) for n, u in ps.uses.items()}
        assert (got, ps.total, ps.chain) == (frames, total, chain), name
        assert stack_problems(frames_obj, prog, frame_round=16) == [], name


def test_frames_match_the_verifier(frames_obj: EbpfObject) -> None:
    if os.geteuid() != 0:
        ok, why = kernel.bpf_available()
        if not ok:
            pytest.skip(f"cannot load programs: {why}")
    with load_all(frames_obj, loader="native") as loaded:
        results = {r.program: r for r in loaded.results.values()}
    for name, (frames, _, _) in FRAMES.items():
        r = results[name]
        assert r.loaded, (name, r.error)
        assert r.stack_depth == tuple(v for _, v in frames.values()), name
