"""Tests of pytest_ebpf.obj.btf / pytest_ebpf.obj.btf_ext on objects compiled here by clang-19.

Every parse is cross-checked with ``bpftool btf dump file X -j``; BTF.ext with
``llvm-objdump -t`` symbols and the C source text.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.btf import KIND_NAMES, Btf, BtfType, parse_btf
from pytest_ebpf.obj.btf_ext import BtfExt, LineInfo, line_for, parse_btf_ext

pytestmark = pytest.mark.slow

C_DIR = Path(__file__).parent / "c"
KINDS_C = C_DIR / "btf_kinds.c"
CORE_C = C_DIR / "btf_core.c"
TARGETS = ("bpfel", "bpfeb")
BYTEORDER = {"bpfel": "little", "bpfeb": "big"}


def _tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"none of {', '.join(names)} is installed; the BTF tests need it")


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


@dataclass(frozen=True)
class Obj:
    path: Path
    source: Path
    target: str
    btf_bytes: bytes
    ext_bytes: bytes

    @property
    def byteorder(self) -> str:
        return BYTEORDER[self.target]

    def btf(self) -> Btf:
        return parse_btf(self.btf_bytes, self.byteorder)

    def ext(self) -> BtfExt:
        return parse_btf_ext(self.ext_bytes, self.byteorder, self.btf())


@pytest.fixture(scope="module")
def objs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Obj]:
    clang = _tool("clang-19")
    objcopy = _tool("llvm-objcopy", "llvm-objcopy-22")
    out = tmp_path_factory.mktemp("btf")
    result: dict[tuple[str, str], Obj] = {}
    for source in (KINDS_C, CORE_C):
        for target in TARGETS:
            obj = out / f"{source.stem}-{target}.o"
            _run(clang, "-target", target, "-g", "-O2", "-c", str(source), "-o", str(obj))
            btf_bin, ext_bin = out / f"{obj.stem}.btf", out / f"{obj.stem}.btf_ext"
            _run(
                objcopy,
                f"--dump-section=.BTF={btf_bin}",
                f"--dump-section=.BTF.ext={ext_bin}",
                str(obj),
            )
            result[(source.stem, target)] = Obj(
                obj, source, target, btf_bin.read_bytes(), ext_bin.read_bytes()
            )
    return result


@pytest.fixture(scope="module")
def kinds_el(objs: dict[tuple[str, str], Obj]) -> Btf:
    return objs[("btf_kinds", "bpfel")].btf()


# --- cross-check with bpftool -----------------------------------------------------------------


def _bpftool_json(path: Path) -> list[dict[str, Any]]:
    bpftool = _tool("bpftool")
    types: list[dict[str, Any]] = json.loads(_run(bpftool, "btf", "dump", "file", str(path), "-j"))[
        "types"
    ]
    return types


_INT_ENCODING = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}


def _as_bpftool(t: BtfType) -> dict[str, Any]:
    """Our type in the shape of bpftool's JSON dump."""
    d: dict[str, Any] = {"id": t.id, "kind": t.kind.upper(), "name": t.name or "(anon)"}

    def name(s: str) -> str:
        return s or "(anon)"

    if t.kind == "int":
        assert t.int_info is not None
        d.update(
            size=t.size,
            bits_offset=t.int_info.offset,
            nr_bits=t.int_info.bits,
            encoding=_INT_ENCODING[t.int_info.encoding],
        )
    elif t.kind in ("ptr", "typedef", "volatile", "const", "restrict", "type_tag"):
        d["type_id"] = t.type
    elif t.kind == "array":
        assert t.array is not None
        d.update(type_id=t.array.type, index_type_id=t.array.index_type, nr_elems=t.array.nelems)
    elif t.kind in ("struct", "union"):
        members = []
        for m in t.members:
            md: dict[str, Any] = {
                "name": name(m.name),
                "type_id": m.type,
                "bits_offset": m.bit_offset,
            }
            if m.bitfield_size:
                md["bitfield_size"] = m.bitfield_size
            members.append(md)
        d.update(size=t.size, vlen=t.vlen, members=members)
    elif t.kind in ("enum", "enum64"):
        d.update(
            encoding="SIGNED" if t.signed else "UNSIGNED",
            size=t.size,
            vlen=t.vlen,
            values=[{"name": v.name, "val": v.value} for v in t.enum_values],
        )
    elif t.kind == "fwd":
        d["fwd_kind"] = t.fwd_kind
    elif t.kind in ("func", "var"):
        d.update(type_id=t.type, linkage=t.linkage)
    elif t.kind == "func_proto":
        d.update(
            ret_type_id=t.type,
            vlen=t.vlen,
            params=[{"name": name(p.name), "type_id": p.type} for p in t.params],
        )
    elif t.kind == "datasec":
        d.update(
            size=t.size,
            vlen=t.vlen,
            vars=[{"type_id": v.type, "offset": v.offset, "size": v.size} for v in t.datasec_vars],
        )
    elif t.kind == "float":
        d["size"] = t.size
    elif t.kind == "decl_tag":
        d.update(type_id=t.type, component_idx=t.component_idx)
    else:  # pragma: no cover - every kind is handled above
        raise AssertionError(t.kind)
    return d


@pytest.mark.parametrize("source", ["btf_kinds", "btf_core"])
@pytest.mark.parametrize("target", TARGETS)
def test_types_match_bpftool(objs: dict[tuple[str, str], Obj], source: str, target: str) -> None:
    obj = objs[(source, target)]
    btf = obj.btf()
    expected = _bpftool_json(obj.path)
    ours = [_as_bpftool(t) for t in btf.types[1:]]
    for t in expected:
        # bpftool 7.1 sign-extends the values of unsigned 32-bit enums (0x80000000 prints
        # as 18446744071562067968); compare the low 32 bits it meant
        if t["kind"] == "ENUM" and t["encoding"] == "UNSIGNED":
            for v in t["values"]:
                v["val"] &= 0xFFFFFFFF
    assert len(ours) == len(expected)
    for mine, theirs in zip(ours, expected):
        assert mine == theirs, f"type {theirs['id']}"
    assert btf.types[0].kind == "void"
    assert btf.header.byteorder == obj.byteorder
    assert btf.header.magic == 0xEB9F and btf.header.version == 1 and btf.header.hdr_len == 24


def test_every_kind_is_exercised(kinds_el: Btf) -> None:
    assert {t.kind for t in kinds_el.types[1:]} == set(KIND_NAMES.values())


def test_big_endian_has_the_same_type_graph(objs: dict[tuple[str, str], Obj]) -> None:
    for source in ("btf_kinds", "btf_core"):
        el, eb = objs[(source, "bpfel")], objs[(source, "bpfeb")]
        assert el.btf().types == eb.btf().types
        assert el.btf_bytes != eb.btf_bytes
        # line info differs only in the (absent) byte order
        assert el.ext().func_info == eb.ext().func_info
        assert el.ext().line_info == eb.ext().line_info
        assert el.ext().core_relos == eb.ext().core_relos


def test_swapped_magic_is_detected(objs: dict[tuple[str, str], Obj]) -> None:
    eb = objs[("btf_kinds", "bpfeb")]
    btf = parse_btf(eb.btf_bytes, "little")
    assert btf.header.byteorder == "big"
    assert btf.types == eb.btf().types
    ext = parse_btf_ext(eb.ext_bytes, "little", btf)
    assert ext.header.byteorder == "big"
    assert ext.line_info == eb.ext().line_info
    el = objs[("btf_kinds", "bpfel")]
    assert parse_btf(el.btf_bytes, "big").header.byteorder == "little"


# --- the model ---------------------------------------------------------------------------------


def _named(btf: Btf, name: str, kind: str) -> BtfType:
    t = btf.find(name, kind)
    assert t is not None, f"no {kind} {name!r}"
    return t


def test_struct_bitfields_and_member_tag(kinds_el: Btf) -> None:
    bits = _named(kinds_el, "bits", "struct")
    assert bits.kflag and bits.size == 16
    got = [(m.name, m.bit_offset, m.bitfield_size) for m in bits.members]
    assert got == [("a", 0, 3), ("b", 3, 13), ("c", 16, 7), ("d", 24, 0), ("e", 64, 0)]
    assert kinds_el.name(bits.members[0].type) == "u32"
    assert kinds_el.resolve(bits.members[0].type).name == "unsigned int"
    tags = [t for t in kinds_el.types if t.kind == "decl_tag" and t.name == "member_tag"]
    assert [(t.type, t.component_idx) for t in tags] == [(bits.id, 4)]
    assert bits.members[4].name == "e"


def test_enums(kinds_el: Btf) -> None:
    colour = _named(kinds_el, "colour", "enum")
    assert colour.signed and colour.size == 4
    assert [(v.name, v.value) for v in colour.enum_values] == [
        ("RED", 0),
        ("GREEN", 5),
        ("BLUE", -3),
    ]
    big = _named(kinds_el, "big", "enum64")
    assert not big.signed and big.size == 8
    assert dict((v.name, v.value) for v in big.enum_values) == {"SMALL": 1, "HUGE": 0x1234567890}
    sbig = _named(kinds_el, "sbig", "enum64")
    assert sbig.signed
    assert dict((v.name, v.value) for v in sbig.enum_values) == {"NEG": -5000000000, "POS": 7}
    assert kinds_el.size_of(big.id) == 8
    high = _named(kinds_el, "high", "enum")
    assert not high.signed and high.size == 4
    assert [v.value for v in high.enum_values] == [1, 0x80000000]


def test_int_float_fwd_modifiers_and_tags(kinds_el: Btf) -> None:
    flag = kinds_el.resolve(_named(kinds_el, "flag_t", "typedef").id)
    assert flag.kind == "int" and flag.int_info is not None and flag.int_info.is_bool
    char = _named(kinds_el, "char", "int")
    assert char.int_info is not None and char.int_info.signed and char.int_info.bits == 8
    assert _named(kinds_el, "double", "float").size == 8
    assert _named(kinds_el, "opaque", "fwd").fwd_kind == "struct"
    assert _named(kinds_el, "opaque_u", "fwd").fwd_kind == "union"

    node = _named(kinds_el, "node", "struct")
    members = {m.name: m for m in node.members}
    # const volatile int *cv
    cv = kinds_el.type(members["cv"].type)
    assert cv.kind == "ptr"
    assert cv.type is not None
    chain = [kinds_el.type(cv.type).kind, kinds_el.type(kinds_el.type(cv.type).type or 0).kind]
    assert chain == ["const", "volatile"]
    assert kinds_el.resolve(cv.type).name == "int"
    # int *restrict r
    assert kinds_el.type(members["r"].type).kind == "restrict"
    assert kinds_el.resolve(members["r"].type).kind == "ptr"
    # int __attribute__((btf_type_tag("user"))) *tagged
    tagged = kinds_el.type(members["tagged"].type)
    assert tagged.kind == "ptr" and tagged.type is not None
    tag = kinds_el.type(tagged.type)
    assert (tag.kind, tag.name) == ("type_tag", "user")
    assert kinds_el.resolve(tag.id).name == "int"
    # arrays
    grid = kinds_el.type(members["grid"].type)
    assert grid.array is not None and grid.array.nelems == 2
    assert kinds_el.size_of(grid.id) == 24
    assert kinds_el.size_of(members["name"].type) == 16
    # function pointer void (*cb)(int, long)
    proto = kinds_el.type(kinds_el.type(members["cb"].type).type or 0)
    assert proto.kind == "func_proto" and proto.type == 0
    assert [kinds_el.name(p.type) for p in proto.params] == ["int", "long"]
    assert kinds_el.size_of(node.id) == 152 == node.size
    assert kinds_el.size_of(members["next"].type) == 8


def test_funcs_and_decl_tags(kinds_el: Btf) -> None:
    funcs = {(f.name, f.linkage) for f in kinds_el.funcs()}
    assert funcs == {
        ("helper", "static"),
        ("global_fn", "global"),
        ("prog_xdp", "global"),
        ("prog_tc", "global"),
        ("prog_ext", "global"),
        ("ext_func", "extern"),
    }
    helper = _named(kinds_el, "helper", "func")
    proto = kinds_el.type(helper.type or 0)
    assert [(p.name, kinds_el.name(p.type)) for p in proto.params] == [("n", ""), ("k", "int")]
    assert kinds_el.name(proto.type or 0) == "int"
    param_tag = _named(kinds_el, "param_tag", "decl_tag")
    assert (param_tag.type, param_tag.component_idx) == (helper.id, 0)
    func_tags = kinds_el.find_all("func_tag", "decl_tag")
    assert func_tags and all(t.component_idx == -1 for t in func_tags)
    assert {kinds_el.name(t.type or 0) for t in func_tags} == {"global_fn"}


def test_vars_and_datasecs(kinds_el: Btf) -> None:
    secs = {d.name: d for d in kinds_el.datasecs()}
    assert set(secs) == {".bss", ".data", ".rodata", ".maps", ".kconfig", ".ksyms", "license"}
    content = {name: [kinds_el.name(v.type) for v in d.datasec_vars] for name, d in secs.items()}
    assert content[".data"] == ["counter", "high_val"]
    assert content[".rodata"] == ["limit"]
    assert content[".bss"] == ["hits"]
    assert content[".maps"] == ["m"]
    assert content[".ksyms"] == ["ext_func"]
    linkage = {v.name: v.linkage for v in kinds_el.types if v.kind == "var"}
    assert linkage["counter"] == "global" and linkage["hits"] == "static"
    assert linkage["CONFIG_EXAMPLE"] == "extern"
    m = _named(kinds_el, "m", "var")
    assert kinds_el.size_of(m.id) == 32 == secs[".maps"].datasec_vars[0].size
    map_def = kinds_el.resolve(m.type or 0)
    assert [x.name for x in map_def.members] == ["type", "max_entries", "key", "value"]

    # __uint(type, BPF_MAP_TYPE_HASH) is a pointer to an array of 1 element
    def uint_value(member: str) -> int:
        ptr = kinds_el.type(next(x for x in map_def.members if x.name == member).type)
        arr = kinds_el.type(ptr.type or 0).array
        assert arr is not None
        return arr.nelems

    assert uint_value("type") == 1 and uint_value("max_entries") == 128
    limit = _named(kinds_el, "limit", "var")
    assert kinds_el.type(limit.type or 0).kind == "const"
    assert kinds_el.size_of(limit.id) == 4


def test_lookup_errors(kinds_el: Btf) -> None:
    assert kinds_el.find("no_such_type") is None
    assert kinds_el.find("node", "union") is None
    assert kinds_el.name(0) == "" and kinds_el.type(0).kind == "void"
    for bad in (-1, len(kinds_el.types), 10**9):
        with pytest.raises(ObjectError):
            kinds_el.type(bad)
    for kind in ("func", "fwd", "func_proto"):
        with pytest.raises(ObjectError, match="no size"):
            kinds_el.size_of(next(t.id for t in kinds_el.types if t.kind == kind))
    with pytest.raises(ObjectError):
        kinds_el.size_of(0)


# --- BTF.ext -----------------------------------------------------------------------------------


def _function_symbols(path: Path) -> dict[str, set[tuple[str, int]]]:
    """{section: {(function name, offset)}} from llvm-objdump -t."""
    out = _run(_tool("llvm-objdump-22", "llvm-objdump"), "-t", str(path))
    result: dict[str, set[tuple[str, int]]] = {}
    for line in out.splitlines():
        m = re.match(r"^([0-9a-f]{16}) (.{7}) (\S+)\s+[0-9a-f]{16} (\S+)$", line)
        if m and "F" in m.group(2):
            # clang may clone a function as NAME.specialized.N; BTF keeps NAME
            name, offset = m.group(4).split(".")[0], int(m.group(1), 16)
            result.setdefault(m.group(3), set()).add((name, offset))
    return result


@pytest.mark.parametrize("target", TARGETS)
def test_func_info_matches_symbols(objs: dict[tuple[str, str], Obj], target: str) -> None:
    obj = objs[("btf_kinds", target)]
    ext = obj.ext()
    symbols = _function_symbols(obj.path)
    got = {sec: {(f.name, f.insn_off) for f in infos} for sec, infos in ext.func_info.items()}
    assert set(got) == {".text", "xdp", "tc", "tp/syscalls/sys_enter_write"}
    assert got == symbols
    assert [f.name for f in ext.func_info["xdp"]] == ["prog_xdp"]
    # clang clones global_fn as the local symbol global_fn.specialized.1; BTF calls both global_fn
    assert [f.name for f in ext.func_info[".text"]].count("global_fn") == 2
    btf = obj.btf()
    for infos in ext.func_info.values():
        for f in infos:
            assert btf.type(f.type_id).kind == "func" and btf.name(f.type_id) == f.name
            assert f.insn_off % 8 == 0


@pytest.mark.parametrize("source", ["btf_kinds", "btf_core"])
@pytest.mark.parametrize("target", TARGETS)
def test_line_info_is_the_source_text(
    objs: dict[tuple[str, str], Obj], source: str, target: str
) -> None:
    obj = objs[(source, target)]
    lines = obj.source.read_text().splitlines()
    ext = obj.ext()
    assert ext.line_info
    for entries in ext.line_info.values():
        assert [e.insn_off for e in entries] == sorted(e.insn_off for e in entries)
        for e in entries:
            assert e.file_name == str(obj.source)
            assert e.line == lines[e.line_num - 1]
            assert e.col >= 0 and e.insn_off % 8 == 0


def test_line_for_maps_instructions_to_statements(objs: dict[tuple[str, str], Obj]) -> None:
    obj = objs[("btf_kinds", "bpfel")]
    ext = obj.ext()
    helper = next(f for f in ext.func_info[".text"] if f.name == "helper")
    first = line_for(ext, ".text", helper.insn_off)
    assert first is not None and "int helper(" in first.line
    # the instruction after the prologue lines belongs to the `if (!n)` / return statements
    texts = []
    for off in range(helper.insn_off, helper.insn_off + 80, 8):
        info = line_for(ext, ".text", off)
        assert info is not None
        texts.append(info.line.strip())
    assert "if (!n)" in texts
    assert "return n->col + k + (int)n->bf.b;" in texts
    xdp = [e.line.strip() for e in ext.line_info["xdp"]]
    assert "hits++;" in xdp
    assert line_for(ext, "xdp", 0) == ext.line_info["xdp"][0]
    assert line_for(ext, "no-such-section", 0) is None
    # between two entries, the earlier one applies
    entries = ext.line_info[".text"]
    a, b = next((x, y) for x, y in zip(entries, entries[1:]) if y.insn_off - x.insn_off > 8)
    assert line_for(ext, ".text", a.insn_off + 8) == a
    assert line_for(ext, ".text", b.insn_off) == b
    assert line_for(ext, ".text", 10**9) == entries[-1]


def test_line_for_before_first_entry() -> None:
    entry = LineInfo(insn_off=16, file_name="f.c", line="x;", line_num=3, col=1)
    ext = BtfExt(header=None, func_info={}, line_info={"s": (entry,)}, core_relos={})  # type: ignore[arg-type]
    assert line_for(ext, "s", 8) is None
    assert line_for(ext, "s", 16) == entry


@pytest.mark.parametrize("target", TARGETS)
def test_core_relocations(objs: dict[tuple[str, str], Obj], target: str) -> None:
    obj = objs[("btf_core", target)]
    btf, ext = obj.btf(), obj.ext()
    assert ext.header.hdr_len >= 32
    relos = ext.core_relos["kprobe/do_exit"]
    got = {(r.kind, btf.name(r.type_id), r.access_str) for r in relos}
    assert got == {
        ("field_byte_offset", "task", "0:0"),  # t->pid
        ("field_byte_offset", "task", "0:3"),  # t->parent
        ("field_byte_offset", "task", "0:1"),  # ->tgid
        ("field_exists", "task", "0:1"),
        ("field_byte_size", "task", "0:0"),
        ("type_size", "task", "0"),
        ("enumval_exists", "state", "1"),
        ("type_id_local", "task", "0"),
    }
    task = _named(btf, "task", "struct")
    for r in relos:
        assert r.insn_off % 8 == 0
        if r.kind.startswith("field_"):
            index = int(r.access_str.split(":")[1])
            assert task.members[index].name in {"pid", "tgid", "parent"}
    assert objs[("btf_kinds", target)].ext().core_relos == {}


# --- corruption --------------------------------------------------------------------------------


def _blob(objs: dict[tuple[str, str], Obj]) -> bytes:
    return objs[("btf_core", "bpfel")].btf_bytes


def _header(data: bytes) -> tuple[int, ...]:
    return struct.unpack_from("<HBBIIIII", data, 0)


def _patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


def _type_offsets(data: bytes) -> list[int]:
    """Absolute offsets of each type record of a little-endian BTF blob (index = id - 1)."""
    btf = parse_btf(data, "little")
    hdr_len, type_off = _header(data)[3], _header(data)[4]
    sizes = {"int": 4, "array": 12, "var": 4, "decl_tag": 4}
    per = {"struct": 12, "union": 12, "enum": 8, "func_proto": 8, "datasec": 12, "enum64": 12}
    offsets, pos = [], hdr_len + type_off
    for t in btf.types[1:]:
        offsets.append(pos)
        pos += 12 + sizes.get(t.kind, 0) + per.get(t.kind, 0) * t.vlen
    return offsets


@pytest.mark.parametrize("which", ["btf", "ext"])
def test_every_truncation_is_an_object_error(objs: dict[tuple[str, str], Obj], which: str) -> None:
    obj = objs[("btf_core", "bpfel")]
    btf = obj.btf()
    data = obj.btf_bytes if which == "btf" else obj.ext_bytes
    for n in range(len(data)):
        with pytest.raises(ObjectError):
            if which == "btf":
                parse_btf(data[:n], "little")
            else:
                parse_btf_ext(data[:n], "little", btf)


def test_header_errors(objs: dict[tuple[str, str], Obj]) -> None:
    data = _blob(objs)
    cases: list[tuple[str, bytes]] = [
        ("magic", _patch(data, 0, "<H", 0x1234)),
        ("version", _patch(data, 2, "<B", 2)),
        ("flags", _patch(data, 3, "<B", 1)),
        ("hdr_len", _patch(data, 4, "<I", 8)),
        ("hdr_len", _patch(data, 4, "<I", 23)),
        ("hdr_len", _patch(data, 4, "<I", len(data) + 1)),
        ("type section", _patch(data, 12, "<I", len(data))),
        ("string section", _patch(data, 20, "<I", len(data))),
        ("string section", _patch(data, 16, "<I", 8)),
        ("aligned", _patch(data, 8, "<I", 2)),
    ]
    for expected, blob in cases:
        with pytest.raises(ObjectError, match=expected):
            parse_btf(blob, "little")
    with pytest.raises(ObjectError, match="overlap"):
        # strings start inside the type section
        parse_btf(_patch(data, 16, "<I", 4), "little")
    with pytest.raises(ObjectError, match="magic"):
        parse_btf(b"", "little")


def test_type_record_errors(objs: dict[tuple[str, str], Obj]) -> None:
    data = _blob(objs)
    offsets = _type_offsets(data)
    btf = parse_btf(data, "little")
    assert btf.types[1].kind == "ptr"
    ptr = offsets[0]
    str_len = _header(data)[7]

    with pytest.raises(ObjectError, match="name offset"):
        parse_btf(_patch(data, ptr, "<I", str_len), "little")
    with pytest.raises(ObjectError, match=r"type 1 \(ptr\) refers to type id 5000"):
        parse_btf(_patch(data, ptr + 8, "<I", 5000), "little")
    with pytest.raises(ObjectError, match="type 1: unknown kind 25"):
        parse_btf(_patch(data, ptr + 4, "<I", 25 << 24), "little")
    with pytest.raises(ObjectError, match="type 1: unknown kind 0"):
        parse_btf(_patch(data, ptr + 4, "<I", 0), "little")
    with pytest.raises(ObjectError, match="reserved"):
        parse_btf(_patch(data, ptr + 4, "<I", 2 << 24 | 1 << 20), "little")

    task = _named(btf, "task", "struct")
    member_type_off = offsets[task.id - 1] + 12 + 4
    with pytest.raises(ObjectError, match="refers to type id"):
        parse_btf(_patch(data, member_type_off, "<I", len(btf.types)), "little")
    # a struct whose vlen runs past the type section
    info = 1 << 31 | 4 << 24 | 0xFFFF
    with pytest.raises(ObjectError, match="past the end"):
        parse_btf(_patch(data, offsets[task.id - 1] + 4, "<I", info), "little")
    # an int with reserved encoding bits
    int_t = _named(btf, "int", "int")
    with pytest.raises(ObjectError, match="reserved"):
        parse_btf(_patch(data, offsets[int_t.id - 1] + 12, "<I", 0xFFFFFFFF), "little")
    # a func with linkage 3
    func = _named(btf, "core_prog", "func")
    with pytest.raises(ObjectError, match="linkage"):
        parse_btf(_patch(data, offsets[func.id - 1] + 4, "<I", 12 << 24 | 3), "little")


def test_string_errors(objs: dict[tuple[str, str], Obj]) -> None:
    data = _blob(objs)
    btf = parse_btf(data, "little")
    hdr_len, str_off, str_len = _header(data)[3], _header(data)[6], _header(data)[7]
    strings_at = hdr_len + str_off
    task_name = _named(btf, "task", "struct").name_off
    bad_utf8 = _patch(data, strings_at + task_name, "<B", 0xFF)
    with pytest.raises(ObjectError, match="UTF-8") as info:
        parse_btf(bad_utf8, "little")
    assert isinstance(info.value.__cause__, UnicodeDecodeError)
    unterminated = _patch(data, strings_at + str_len - 1, "<B", ord("x"))
    with pytest.raises(ObjectError, match="NUL"):
        parse_btf(unterminated, "little")
    not_empty_first = _patch(data, strings_at, "<B", ord("x"))
    with pytest.raises(ObjectError, match="empty string"):
        parse_btf(not_empty_first, "little")


def _ext_header(data: bytes) -> tuple[int, ...]:
    return struct.unpack_from("<HBBIIIIIII", data, 0)


def _encode_block(rec_size: int, sections: list[tuple[int, list[bytes]]]) -> bytes:
    out = struct.pack("<I", rec_size)
    for name_off, records in sections:
        out += struct.pack("<II", name_off, len(records))
        for r in records:
            out += r.ljust(rec_size, b"\xaa")
    return out


def _encode_ext(blocks: list[bytes]) -> bytes:
    """A little-endian BTF.ext with func_info, line_info and core_relo blocks."""
    header_len = 32
    offs, body = [], b""
    for b in blocks:
        offs.append((len(body), len(b)))
        body += b
    flat = [x for pair in offs for x in pair]
    return struct.pack("<HBBIIIIIII", 0xEB9F, 1, 0, header_len, *flat) + body


def test_ext_larger_records_are_skipped(objs: dict[tuple[str, str], Obj]) -> None:
    obj = objs[("btf_core", "bpfel")]
    btf, ext = obj.btf(), obj.ext()
    sec = next(iter(ext.func_info))
    sec_off = btf.strings.index(sec.encode() + b"\0")
    funcs = [struct.pack("<II", f.insn_off, f.type_id) for f in ext.func_info[sec]]
    relos = [
        struct.pack(
            "<IIII",
            r.insn_off,
            r.type_id,
            btf.strings.index(r.access_str.encode() + b"\0"),
            r.kind_num,
        )
        for r in ext.core_relos[sec]
    ]
    data = _encode_ext(
        [
            _encode_block(16, [(sec_off, funcs)]),
            _encode_block(16, []),
            _encode_block(24, [(sec_off, relos[:3]), (sec_off, relos[3:])]),
        ]
    )
    again = parse_btf_ext(data, "little", btf)
    assert again.func_info == ext.func_info
    assert again.line_info == {}
    assert again.core_relos == ext.core_relos
    assert again.func_info.get("nope") is None
    # a 24-byte header (no CO-RE part) is accepted
    short = _patch(data, 4, "<I", 24)[:24] + data[32:]
    assert parse_btf_ext(short, "little", btf).core_relos == {}


def test_ext_errors(objs: dict[tuple[str, str], Obj]) -> None:
    obj = objs[("btf_core", "bpfel")]
    btf, data = obj.btf(), obj.ext_bytes
    hdr_len, f_off, l_off, c_off = (_ext_header(data)[i] for i in (3, 4, 6, 8))
    func_at, line_at, core_at = hdr_len + f_off, hdr_len + l_off, hdr_len + c_off
    big = len(btf.strings) + 10
    cases: list[tuple[str, bytes]] = [
        ("magic", _patch(data, 0, "<H", 0)),
        ("version", _patch(data, 2, "<B", 9)),
        ("flags", _patch(data, 3, "<B", 9)),
        ("hdr_len", _patch(data, 4, "<I", 12)),
        ("hdr_len", _patch(data, 4, "<I", 10**6)),
        ("outside", _patch(data, 12, "<I", 10**6)),
        ("aligned", _patch(data, 8, "<I", 2)),
        ("record size", _patch(data, func_at, "<I", 4)),
        ("record size", _patch(data, line_at, "<I", 18)),
        ("record size", _patch(data, core_at, "<I", 0)),
        ("section name", _patch(data, func_at + 4, "<I", big)),
        ("past the end", _patch(data, func_at + 8, "<I", 10**6)),
        ("not a func", _patch(data, func_at + 16, "<I", 1)),
        ("out of range", _patch(data, func_at + 16, "<I", 10**6)),
        ("file name", _patch(data, line_at + 16, "<I", big)),
        ("line", _patch(data, line_at + 20, "<I", big)),
        ("access string", _patch(data, core_at + 20, "<I", big)),
        ("out of range", _patch(data, core_at + 16, "<I", 10**6)),
        ("unknown relocation kind 13", _patch(data, core_at + 24, "<I", 13)),
    ]
    for expected, blob in cases:
        with pytest.raises(ObjectError, match=expected):
            parse_btf_ext(blob, "little", btf)


# --- fuzzing -----------------------------------------------------------------------------------

_mutations = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=255)),
    min_size=1,
    max_size=8,
)


def _mutate(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for index, value in changes:
        buf[index % len(buf)] = value
    return bytes(buf)


def _parse_or_error(parse: Callable[[], object]) -> None:
    with contextlib.suppress(ObjectError):
        parse()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=_mutations, cut=st.integers(min_value=0, max_value=64))
def test_mutated_btf_parses_or_raises_object_error(
    objs: dict[tuple[str, str], Obj], changes: list[tuple[int, int]], cut: int
) -> None:
    data = _mutate(objs[("btf_kinds", "bpfel")].btf_bytes, changes)
    if cut:
        data = data[:-cut]
    try:
        btf = parse_btf(data, "little")
    except ObjectError:
        return
    assert isinstance(btf, Btf)
    for t in btf.types:  # every type is usable
        _parse_or_error(lambda t=t: btf.size_of(t.id))  # type: ignore[misc]
        _parse_or_error(lambda t=t: btf.resolve(t.id))  # type: ignore[misc]


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=_mutations)
def test_mutated_btf_ext_parses_or_raises_object_error(
    objs: dict[tuple[str, str], Obj], changes: list[tuple[int, int]]
) -> None:
    obj = objs[("btf_core", "bpfel")]
    btf = obj.btf()
    data = _mutate(obj.ext_bytes, changes)
    try:
        ext = parse_btf_ext(data, "little", btf)
    except ObjectError:
        return
    assert isinstance(ext, BtfExt)


def test_name_index_of_the_kernels_btf_agrees_with_bpftool() -> None:
    """``btf_names`` (ids by name without parsing vmlinux) against bpftool's raw dump."""
    import sys

    from pytest_ebpf.obj.btf_names import btf_names

    vmlinux = Path("/sys/kernel/btf/vmlinux")
    bpftool = shutil.which("bpftool")
    assert bpftool is not None, "bpftool is not installed: run scripts/setup.sh test"
    dump = subprocess.run([bpftool, "btf", "dump", "file", str(vmlinux), "format", "raw"],
                          capture_output=True, text=True, check=True).stdout
    first: dict[tuple[str, str], int] = {}
    for m in re.finditer(r"^\[(\d+)\] (\w+) '([^']+)'", dump, re.M):
        first.setdefault((m.group(3), m.group(2).lower()), int(m.group(1)))
    names = btf_names(vmlinux.read_bytes(), sys.byteorder)
    assert len(names.kinds) - 1 == max(int(i) for i in re.findall(r"^\[(\d+)\]", dump, re.M))
    wanted = [("btf_trace_sched_process_exec", "typedef"), ("bpf_lsm_file_open", "func"),
              ("runqueues", "var"), ("bpf_task_acquire", "func"), ("task_struct", "struct"),
              ("tcp_connect", "func"), ("bpf_iter_num_new", "func")]
    for name, kind in wanted:
        assert names.find_id(name, kind) == first[(name, kind)], (name, kind)
    assert names.find_id("no_such_function_anywhere", "func") is None
    # a name that exists, but not as that kind
    assert names.find_id("task_struct", "func") is None
