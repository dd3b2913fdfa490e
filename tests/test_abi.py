"""pytest_ebpf.abi against the kernel, and every table that names kernel numbers against abi.

The truth is outside the product: the kernel's UAPI header ``/usr/include/linux/bpf.h`` (Debian
12's linux-libc-dev, Linux 6.1; the test names the version it read) and bpftool's own names
(``bpftool feature list_builtins``, libbpf's name tables).

The header on the test machine is older than our tables: Linux 6.1 ends ``enum bpf_map_type`` at
``USER_RINGBUF`` (31), ``enum bpf_prog_type`` at ``SYSCALL`` (31), ``enum bpf_attach_type`` at
``LSM_CGROUP`` (43), ``enum bpf_cmd`` at ``PROG_BIND_MAP`` (35) and the helpers at
``user_ringbuf_drain`` (209). For those the tests check the overlap (every name and number the
header has, ours has the same, and ours has nothing else below the header's end), and that what
lies beyond it is numbered without gaps; a newer header is checked the same way, over more.
"""

from __future__ import annotations

import enum
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_ebpf.abi import (
    PERCPU_MAP_TYPES,
    AbiEnum,
    AttachType,
    Cmd,
    Helper,
    MapType,
    ProgType,
    PseudoCall,
    PseudoSrc,
)
from pytest_ebpf.analysis import stack
from pytest_ebpf.kernel import bpf as kernel
from pytest_ebpf.kernel import layout as kernel_abi
from pytest_ebpf.obj import helpers as helpers_table
from pytest_ebpf.obj import isa, maps, progtypes
from pytest_ebpf.obj.elf import ElfSection, ElfSymbol

UAPI = Path("/usr/include/linux/bpf.h")
VERSION_H = Path("/usr/include/linux/version.h")


# --- reading the header --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def header() -> str:
    if not UAPI.is_file():
        pytest.fail(f"{UAPI} is missing: install linux-libc-dev (the ABI tests read it)")
    return UAPI.read_text()


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def uapi_enum(text: str, enum_name: str, prefix: str) -> dict[str, int]:
    """``enum <enum_name>``'s members that start with *prefix*, without it: name -> number.

    Follows C's numbering (implicit successors, ``= N``); an alias (``BPF_PROG_RUN =
    BPF_PROG_TEST_RUN``) and the ``__MAX_*`` sentinels are left out.
    """
    found = re.search(r"^enum " + enum_name + r" \{(.*?)^\};", text, flags=re.S | re.M)
    assert found, f"enum {enum_name} not found in {UAPI}"
    out: dict[str, int] = {}
    every: dict[str, int] = {}
    number = -1
    for entry in _strip_comments(found.group(1)).split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, _, value = (part.strip() for part in entry.partition("="))
        if value and value in every:  # an alias of an earlier member
            every[name] = every[value]
            continue
        number = int(value, 0) if value else number + 1
        every[name] = number
        if name.startswith(prefix) and not name.startswith("__"):
            out[name[len(prefix):]] = number
    return out


def uapi_helpers(text: str) -> dict[str, int]:
    """``enum bpf_func_id`` from ``__BPF_FUNC_MAPPER`` (``FN(name)``, numbered by position,
    Linux < 6.2) or ``___BPF_FUNC_MAPPER`` (``FN(name, id, ...)``, Linux >= 6.2): name -> id."""
    body = re.search(r"#define ___?BPF_FUNC_MAPPER\(FN(?:, ctx\.\.\.)?\)(.*?)\n\s*/\* \*/",
                     text, flags=re.S)
    assert body, f"the helper mapper macro is not in {UAPI}"
    out: dict[str, int] = {}
    for position, call in enumerate(re.finditer(r"FN\((\w+)(?:,\s*(\d+))?", body.group(1))):
        out[call.group(1)] = int(call.group(2)) if call.group(2) else position
    return out


def uapi_defines(text: str, prefix: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2), 0)
            for m in re.finditer(r"^#define " + prefix + r"(\w+)\s+(\w+)\s*$", text, flags=re.M)
            if m.group(2)[0].isdigit()}


def _members(cls: type[enum.IntEnum]) -> dict[str, int]:
    return {m.name: int(m) for m in cls}


def check_against_header(ours: dict[str, int], theirs: dict[str, int], what: str) -> None:
    """The header's members all in ours, the same; nothing else of ours below its end; ours past
    its end numbered without gaps."""
    assert theirs, f"no {what} in {UAPI}"
    for name, number in theirs.items():
        assert ours.get(name) == number, f"{what} {name}: header {number}, ours {ours.get(name)}"
    last = max(theirs.values())
    extra = {n: v for n, v in ours.items() if n not in theirs}
    below = {n: v for n, v in extra.items() if v <= last}
    assert not below, f"{what} not in {UAPI} though numbered within it: {below}"
    assert sorted(extra.values()) == list(range(last + 1, last + 1 + len(extra))), (
        f"{what} past the header's end ({last}) has gaps: {sorted(extra.values())}"
    )


def test_header_version_is_known(header: str) -> None:
    # Say which header the checks below ran against (6.1 on Debian 12).
    code = re.search(r"LINUX_VERSION_CODE (\d+)", VERSION_H.read_text())
    assert code, VERSION_H
    major, minor = int(code.group(1)) >> 16, int(code.group(1)) >> 8 & 0xFF
    assert (major, minor) >= (5, 10), f"a UAPI header from Linux {major}.{minor} is too old"
    assert "enum bpf_map_type" in header


# --- the enums against the header ----------------------------------------------------------------


@pytest.mark.parametrize(("enum_name", "prefix", "cls", "spot"), [
    ("bpf_map_type", "BPF_MAP_TYPE_", MapType, {"HASH": 1, "RINGBUF": 27}),
    ("bpf_prog_type", "BPF_PROG_TYPE_", ProgType, {"SOCKET_FILTER": 1, "XDP": 6}),
    ("bpf_attach_type", "BPF_", AttachType, {"CGROUP_INET_INGRESS": 0, "XDP": 37}),
    ("bpf_cmd", "BPF_", Cmd, {"MAP_CREATE": 0, "PROG_LOAD": 5}),
])
def test_enum_matches_uapi(
    header: str, enum_name: str, prefix: str, cls: type[enum.IntEnum], spot: dict[str, int]
) -> None:
    theirs = uapi_enum(header, enum_name, prefix)
    assert {n: theirs.get(n) for n in spot} == spot  # the parser reads the header right
    assert "PROG_RUN" not in theirs  # bpf_cmd's alias of PROG_TEST_RUN is no command
    check_against_header(_members(cls), theirs, enum_name)


def test_pseudo_sources_match_uapi(header: str) -> None:
    theirs = uapi_defines(header, "BPF_PSEUDO_")
    calls = {"CALL", "KFUNC_CALL"}
    assert {n: v for n, v in theirs.items() if n in calls} == _members(PseudoCall)
    assert {n: v for n, v in theirs.items() if n not in calls} == _members(PseudoSrc)


def test_helpers_match_uapi(header: str) -> None:
    theirs = uapi_helpers(header)
    assert theirs.pop("unspec") == 0
    assert theirs["tail_call"] == 12 and theirs["map_lookup_elem"] == 1
    check_against_header(_members(Helper), theirs, "helper")


def test_header_parser_sees_a_drift() -> None:
    # The comparison fails on a wrong number, a missing member and an invented one.
    text = "enum bpf_map_type {\n\tBPF_MAP_TYPE_UNSPEC,\n\tBPF_MAP_TYPE_HASH,\n" \
           "\tBPF_MAP_TYPE_ARRAY = 5, /* x */\n\t__MAX_BPF_MAP_TYPE\n};\n"
    theirs = uapi_enum(text, "bpf_map_type", "BPF_MAP_TYPE_")
    assert theirs == {"UNSPEC": 0, "HASH": 1, "ARRAY": 5}
    with pytest.raises(AssertionError, match="ARRAY: header 5, ours 2"):
        check_against_header({"UNSPEC": 0, "HASH": 1, "ARRAY": 2}, theirs, "map type")
    with pytest.raises(AssertionError, match="not in"):
        check_against_header({"UNSPEC": 0, "HASH": 1, "ARRAY": 5, "X": 3}, theirs, "map type")
    with pytest.raises(AssertionError, match="gaps"):
        check_against_header({"UNSPEC": 0, "HASH": 1, "ARRAY": 5, "X": 7}, theirs, "map type")
    mapper = "#define ___BPF_FUNC_MAPPER(FN, ctx...)\t\\\n\tFN(unspec, 0, ##ctx)\t\\\n" \
             "\tFN(map_lookup_elem, 1, ##ctx)\t\\\n\t/* */\n"
    assert uapi_helpers(mapper) == {"unspec": 0, "map_lookup_elem": 1}


# --- bpftool's names (libbpf's tables) are the labels we print -----------------------------------


def _bpftool_builtins(kind: str) -> list[str]:
    tool = shutil.which("bpftool")
    if tool is None:
        pytest.fail("bpftool is not installed; scripts/setup.sh installs it")
    proc = subprocess.run([tool, "feature", "list_builtins", kind], capture_output=True,
                          text=True, check=False, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"bpftool feature list_builtins {kind}: {proc.stderr.strip()}")
    return proc.stdout.split()


@pytest.mark.parametrize(("kind", "cls"), [
    ("map_types", MapType), ("prog_types", ProgType), ("attach_types", AttachType),
])
def test_labels_are_bpftools_names(kind: str, cls: type[AbiEnum]) -> None:
    names = _bpftool_builtins(kind)
    assert names
    # bpftool's libbpf may be older or newer than our table: compare the overlap, by number.
    overlap = min(len(names), len(cls))
    assert [cls(n).label for n in range(overlap)] == names[:overlap]


def test_helper_names_are_bpftools() -> None:
    names = _bpftool_builtins("helpers")
    assert names[0] == "bpf_unspec"
    overlap = min(len(names), helpers_table.MAX_HELPER_ID + 1)
    assert [helpers_table.HELPERS[i] for i in range(1, overlap)] == names[1:overlap]


# --- abi's own rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MapType, ProgType, AttachType, Cmd, PseudoSrc, PseudoCall, Helper])
def test_each_number_defined_once(cls: type[enum.IntEnum]) -> None:
    assert len(cls.__members__) == len(list(cls)), f"{cls.__name__} has aliases"
    assert all(issubclass(type(m), enum.IntEnum) for m in cls)


def test_labels_and_lookups() -> None:
    assert int(MapType.RINGBUF) == 27 and MapType.RINGBUF.label == "ringbuf"
    assert int(ProgType.XDP) == 6 and ProgType.SCHED_CLS.label == "sched_cls"
    assert AttachType.TRACE_FENTRY.label == "trace_fentry"
    assert MapType.label_of(35) == "rhash"
    assert MapType.label_of(999) == "type#999"
    assert MapType.from_label("rhash") is MapType.RHASH
    assert MapType.from_label("RHASH") is None
    assert MapType.from_label("no_such") is None
    assert ProgType.get(6) is ProgType.XDP and ProgType.get(999) is None
    percpu = {MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
              MapType.PERCPU_CGROUP_STORAGE}
    assert percpu == PERCPU_MAP_TYPES


# --- every table that names them agrees with abi -------------------------------------------------


def test_maps_table_is_abis() -> None:
    assert {int(m): m.label for m in MapType} == maps.MAP_TYPES
    assert maps.map_type_name(35) == "rhash"
    assert maps.map_type_name(34) == "insn_array"
    assert maps.map_type_name(36) == "type#36"
    assert maps.map_type_number("rhash") == 35
    assert maps.map_type_number("ringbuf") == 27
    assert maps.map_type_number("nonsense") is None


def test_legacy_map_of_type_35_is_named_rhash() -> None:
    # The printed name of a parsed map (inspect's text and JSON show Map.type).
    defs = b"".join(int(t).to_bytes(4, "little") + (4).to_bytes(4, "little") * 3 + bytes(4)
                    for t in (27, 35, 36))
    section = ElfSection(index=3, name="maps", type="progbits", flags=3, size=len(defs),
                         data=defs, alignment=4)
    symbols = [ElfSymbol(index=i + 1, name=f"M{i}", value=20 * i, size=20, type="object",
                         bind="global", section_index=3) for i in range(3)]
    parsed = maps.parse_legacy_maps(section, symbols, "little")
    assert [(m.type, m.type_id) for m in parsed] == [("ringbuf", 27), ("rhash", 35),
                                                    ("type#36", 36)]


def test_kernel_abi_views_are_abis() -> None:
    assert {m.label: int(m) for m in MapType} == kernel_abi.BPF_MAP_TYPE
    assert kernel_abi.BPF_MAP_TYPE["rhash"] == 35
    assert {t.label: int(t) for t in ProgType} == kernel_abi.BPF_PROG_TYPE
    assert {t.label: int(t) for t in AttachType} == kernel_abi.BPF_ATTACH_TYPE
    assert {c.name: int(c) for c in Cmd} == kernel_abi.BPF_CMD
    assert kernel_abi.CMD_NAMES[Cmd.PROG_LOAD] == "BPF_PROG_LOAD"
    assert kernel.BPF_PSEUDO_MAP_FD is PseudoSrc.MAP_FD
    assert kernel.BPF_PSEUDO_MAP_VALUE is PseudoSrc.MAP_VALUE
    assert kernel.BPF_PSEUDO_FUNC is PseudoSrc.FUNC
    assert kernel.BPF_PSEUDO_CALL is PseudoCall.CALL
    assert kernel.BPF_PSEUDO_KFUNC_CALL is PseudoCall.KFUNC_CALL
    assert kernel.PERCPU_MAP_TYPES is PERCPU_MAP_TYPES


def test_isa_keeps_no_copy_of_the_pseudo_sources() -> None:
    assert not [n for n in vars(isa) if n.startswith("PSEUDO_")]
    # call imm with src 1 and 2, and a helper call (src 0), as the kernel encodes them.
    code = b"".join(bytes([0x85, src << 4, 0, 0]) + (3).to_bytes(4, "little") for src in
                    (PseudoCall.CALL, PseudoCall.KFUNC_CALL, 0))
    bpf_call, kfunc, helper = isa.decode(code, "little")
    assert bpf_call.is_pseudo_call and not bpf_call.is_kfunc_call
    assert kfunc.is_kfunc_call and not kfunc.is_pseudo_call
    assert helper.is_helper_call and not helper.is_pseudo_call


def test_helpers_table_is_abis() -> None:
    assert dict(helpers_table.HELPERS) == {int(h): "bpf_" + h.name for h in Helper}
    assert helpers_table.helper_id("bpf_tail_call") == Helper.tail_call
    assert int(Helper.tail_call) == 12
    assert all(isinstance(h, Helper) for h in helpers_table.GPL_ONLY)
    assert stack.TAIL_CALL_HELPER is Helper.tail_call


def test_progtypes_table_is_abis() -> None:
    kinds = [progtypes.program_type(k) for k in progtypes.known_section_prefixes()]
    assert all(kinds)
    for kind in kinds:
        assert kind is not None
        assert kind.prog_type == kind.prog_type_id.label
        assert isinstance(kind.prog_type, str)
        if kind.expected_attach_type is None:
            assert kind.attach_type_id is None
        else:
            assert kind.attach_type_id is not None
            assert kind.expected_attach_type == kind.attach_type_id.label
    xdp = progtypes.program_type("xdp")
    assert xdp is not None and xdp.prog_type_id is ProgType.XDP
    assert xdp.attach_type_id is AttachType.XDP
    fentry = progtypes.program_type("fentry/tcp_connect")
    assert fentry is not None and fentry.attach_type_id is AttachType.TRACE_FENTRY
    connect = progtypes.program_type("cgroup/connect4")
    assert connect is not None and connect.attach_type_id == 10  # not attach type 0
