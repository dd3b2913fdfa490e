"""Proof on real programs: a corpus of Aya programs, one per program kind, using every map kind,
built by the suite's toolchain, and every program's native-loader verdict checked against Aya's
own loader and against what the kernel is expected to say.

``tests/aya_corpus/`` is an Aya workspace set up as ``example_project/`` (the Debian toolchain,
the eBPF crate's ``.cargo/config.toml`` with aya-build's flags, aya 0.14 / aya-ebpf 0.2.1):

* ``corpus-ebpf``: the programs of :data:`PROGRAMS` (xdp, classifier, socket_filter, cgroup_skb,
  kprobe, kretprobe, tracepoint, raw_tracepoint, tp_btf, perf_event, fentry, fexit, lsm,
  cgroup_sock_addr, sk_msg, sock_ops, flow_dissector; six of them rejected by the verifier), the
  maps of :data:`MAP_TYPES` twice (legacy ``maps`` section and BTF ``.maps``, maps of maps
  only as BTF maps: aya-ebpf 0.2.1 has them only there), and global data in ``.rodata``,
  ``.data`` and ``.bss``;
* ``corpus-ref``: the reference loader, built with aya: loads every program as Aya users do
  (``program_mut(name).try_into()`` and ``load``, with the kernel BTF target for fentry, fexit,
  lsm and tp_btf) and prints one JSON line per program and per map.

``tests/aya_corpus/verdicts.py`` runs both loaders on the object (the native loader in-process:
``load_all(obj, loader="native")``) and prints JSON lines; it runs on the host, and once in a VM
of Debian's 6.12 kernel (:func:`pytest_ebpf.vm.qemu.run_command`), where the trampolines that
this host refuses (fentry, fexit, lsm) work. Per program and per kernel: the native loader's
verdict is Aya's, and both are the kernel's as :data:`PROGRAMS` says it (a rejection's decisive
line is in both loaders' errors). The maps each loader makes are the same, as the kernel
reports them, and a per-CPU value comes back through ``MapHandle`` as one value per possible
CPU (Aya's count).

The static rules judge the same object without loading it, on the profiles of both kernels:
each rejection foreseen with the verifier's decisive line, no accepted program flagged.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kernel_run import run_on

from pytest_ebpf.abi import MapType
from pytest_ebpf.analysis.profiles import host_profile, named_profile
from pytest_ebpf.analysis.rules import judge
from pytest_ebpf.obj.load import load_object

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "aya_corpus"
VERDICTS = CORPUS / "verdicts.py"
VM_KERNEL = "6.12"
VM_TIMEOUT = 600.0
BUILD_TIMEOUT = 1800

TRAMPOLINE_REFUSED = "the kernel refused to attach a trampoline"
"""The native loader's reason when a kernel without trampolines refuses fentry/fexit/lsm."""


@dataclass(frozen=True)
class Expect:
    kind: str
    """The native loader's kind label (Aya's, but for kretprobe, which Aya loads as KProbe)."""
    rejects: str | None = None
    """The verifier's decisive line (a regex) when the kernel rejects the program."""

    @property
    def trampoline(self) -> bool:
        return self.kind in ("fentry", "fexit", "lsm")


PROGRAMS: dict[str, Expect] = {
    "xdp_pass": Expect("xdp"),
    "xdp_unchecked": Expect("xdp", r"R1 offset is outside of the packet"),
    "xdp_get_stack": Expect("xdp", r"program of this type cannot use helper bpf_get_stack#67"),
    "cgroup_skb_verdict": Expect("cgroup_skb", r"At program exit the register R0 has "
                                 r"smin=2 smax=2 should have been in \[0, 1\]"),
    "tc_past_value": Expect("classifier", r"R0 min value is outside of the allowed memory "
                            r"range"),
    "tc_count": Expect("classifier"),
    "socket_count": Expect("socket_filter"),
    "cgroup_skb_count": Expect("cgroup_skb"),
    "kprobe_count": Expect("kprobe"),
    "kprobe_call": Expect("kprobe"),
    "kprobe_null": Expect("kprobe", r"R0 invalid mem access 'map_value_or_null'"),
    "kprobe_deep_stack": Expect("kprobe", r"combined stack size of 3 calls is 640\. Too large"),
    "kretprobe_ring": Expect("kretprobe"),
    "tracepoint_perf": Expect("tracepoint"),
    "raw_tracepoint_stack": Expect("raw_tracepoint"),
    "tp_btf_hash": Expect("btf_tracepoint"),
    "perf_event_jump": Expect("perf_event"),
    "fentry_lru": Expect("fentry"),
    "fexit_pcpu_hash": Expect("fexit"),
    "lsm_array": Expect("lsm"),
    "connect4_pcpu": Expect("cgroup_sock_addr"),
    "sk_msg_ring": Expect("sk_msg"),
    "sock_ops_maps": Expect("sock_ops"),
    "dissect": Expect("flow_dissector"),
}

MAP_TYPES = {
    MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH, MapType.ARRAY, MapType.PERCPU_ARRAY,
    MapType.RINGBUF, MapType.PERF_EVENT_ARRAY, MapType.STACK_TRACE, MapType.PROG_ARRAY,
}
"""Map kinds the corpus declares both ways (legacy ``maps`` and BTF ``.maps``)."""
BTF_ONLY_MAP_TYPES = {MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS}
PERCPU_ARRAYS = ("L_PCPU_ARRAY", "B_PCPU_ARRAY")


# --- building -------------------------------------------------------------------------------------


def _cargo(args: list[str], cwd: Path) -> list[dict[str, Any]]:
    cmd = ["cargo", "build", "--release", "--message-format=json", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False,
                              timeout=BUILD_TIMEOUT)
    except FileNotFoundError:
        pytest.fail("cargo is not on PATH: run scripts/setup.sh test", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} in {cwd} failed:\n{proc.stderr[-4000:]}", pytrace=False)
    return [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]


def _executable(messages: list[dict[str, Any]], target: str) -> Path:
    found = [m["executable"] for m in messages
             if m.get("reason") == "compiler-artifact" and m.get("executable")
             and m["target"]["name"] == target]
    assert found, f"cargo built no {target}"
    return Path(found[-1])


@dataclass(frozen=True)
class Corpus:
    object: Path
    reference: Path


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """The eBPF object (built from corpus-ebpf/, whose config selects the BPF target and
    aya-build's flags) and the reference loader (the workspace's default member), both cached
    in tests/aya_corpus/target. The reference loader has its own target directory: the eBPF
    build's ``RUSTC_BOOTSTRAP`` (its config's ``[env]``) is part of the fingerprint of the host
    crates both builds share (proc-macros, build scripts), so in one directory each build would
    rebuild them for the other."""
    obj = _executable(_cargo([], CORPUS / "corpus-ebpf"), "corpus")
    ref = _executable(_cargo(["--package", "corpus-ref", "--target-dir",
                              str(CORPUS / "target" / "ref")], CORPUS), "corpus-ref")
    return Corpus(obj, ref)


# --- running both loaders -------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Both loaders' lines on one kernel."""

    kernel: str
    release: str
    native: dict[str, dict[str, Any]]
    aya: dict[str, dict[str, Any]]
    native_maps: dict[str, dict[str, Any]]
    aya_maps: dict[str, dict[str, Any]]
    native_percpu: dict[str, dict[str, Any]]
    aya_percpu: dict[str, dict[str, Any]]


def _parse(kernel: str, text: str) -> Run:
    records = [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]
    errors = [r["object_error"] for r in records if "object_error" in r]
    assert not errors, f"{kernel}: Aya could not load the object: {errors}"
    release = next((r["release"] for r in records if "release" in r), None)
    assert release is not None, f"{kernel}: verdicts.py did not finish:\n{text[-4000:]}"

    def by(loader: str, key: str) -> dict[str, dict[str, Any]]:
        return {r[key]: r for r in records if r.get("loader") == loader and key in r}

    return Run(kernel, release, by("native", "program"), by("aya", "program"),
               by("native", "map"), by("aya", "map"), by("native", "percpu"),
               by("aya", "percpu"))


def _argv(c: Corpus) -> list[str]:
    return [sys.executable, str(VERDICTS), str(c.object), str(c.reference)]


@pytest.fixture(scope="module")
def host_run(corpus: Corpus) -> Run:
    return _parse("host", run_on("host", _argv(corpus), ROOT, VM_TIMEOUT)[1])


@pytest.fixture(scope="module")
def vm_run(corpus: Corpus) -> Run:
    """The same run inside a VM of Debian's 6.12 kernel: booted once for the module."""
    return _parse(VM_KERNEL, run_on(VM_KERNEL, _argv(corpus), ROOT, VM_TIMEOUT)[1])


# --- what the corpus covers -----------------------------------------------------------------------


def test_corpus_covers_every_kind(corpus: Corpus) -> None:
    obj = load_object(corpus.object)
    assert {p.name: p.kind.label for p in obj.programs} == {
        name: e.kind for name, e in PROGRAMS.items()}
    for source in ("legacy", "btf"):
        types = {m.type_id for m in obj.maps if m.source == source}
        assert types >= MAP_TYPES, (source, MAP_TYPES - types)
    assert {m.type_id for m in obj.maps if m.source == "btf"} >= BTF_ONLY_MAP_TYPES
    assert {d.kind for d in obj.data_sections} >= {"rodata", "data", "bss"}


# --- the verdicts ---------------------------------------------------------------------------------


def _aya_kind(kind: str) -> str:
    return "kprobe" if kind == "kretprobe" else kind


def _disagreement(run: Run, name: str) -> Iterator[str]:
    """What is wrong with *name*'s verdicts on *run*'s kernel: native vs Aya vs the kernel."""
    expect = PROGRAMS[name]
    native, aya = run.native.get(name), run.aya.get(name)
    where = f"{name} ({expect.kind}) on {run.kernel} ({run.release})"
    if native is None or aya is None:
        yield f"{where}: no verdict from {'the native loader' if native is None else 'Aya'}"
        return
    if native["kind"] != expect.kind or aya["kind"] != _aya_kind(expect.kind):
        yield f"{where}: kinds native {native['kind']}, Aya {aya['kind']}"
    said = (f"native: {'loaded' if native['loaded'] else native['error']}; "
            f"Aya: {'loaded' if aya['loaded'] else aya['error'][:3000]}")
    if native["loaded"] != aya["loaded"]:
        yield f"{where}: the loaders disagree ({said})"
        return
    if (expect.trampoline and run.kernel == "host" and not native["loaded"]
            and native["cause"] == "permission"):
        # This host has no BPF trampolines: refused before verification, no verdict.
        if not native["error"].startswith(TRAMPOLINE_REFUSED):
            yield f"{where}: refused without the trampoline reason ({said})"
        if "Operation not permitted" not in aya["error"]:
            yield f"{where}: Aya failed otherwise than with EPERM ({said})"
        return
    if expect.rejects is None:
        if not native["loaded"]:
            yield f"{where}: the kernel should load it, both loaders failed ({said})"
        return
    if native["loaded"]:
        yield f"{where}: the kernel should reject it ({expect.rejects}), both loaded it"
        return
    if native["cause"] != "verifier" or not re.search(expect.rejects, native["error"]):
        yield f"{where}: native rejected it otherwise than the kernel should ({said})"
    if "Verifier output" not in aya["error"]:
        yield f"{where}: Aya's error does not name the verifier ({said})"
    if native["error"] not in aya["error"]:
        yield f"{where}: the native loader's decisive line is not in Aya's error ({said})"


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_host_verdict(host_run: Run, name: str) -> None:
    problems = list(_disagreement(host_run, name))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_vm_verdict(vm_run: Run, name: str) -> None:
    problems = list(_disagreement(vm_run, name))
    assert not problems, "\n".join(problems)
    if PROGRAMS[name].trampoline:  # the reason for the VM: here the verifier judges them
        assert vm_run.native[name]["loaded"], vm_run.native[name]


def test_every_program_has_a_verdict(host_run: Run, vm_run: Run) -> None:
    for run in (host_run, vm_run):
        assert set(run.native) == set(run.aya) == set(PROGRAMS), run.kernel


@pytest.mark.parametrize("kernel", ["host", VM_KERNEL])
def test_the_rules_foresee_the_verdicts(corpus: Corpus, kernel: str) -> None:
    """Without loading, every rule on the kernel's profile: a program the kernel rejects gets an
    error whose reason or message has the verifier's decisive line; no other program gets one
    (fentry, fexit and lsm load in the VM; the host's refusal of them is not the verifier's)."""
    profile = host_profile() if kernel == "host" else named_profile(kernel)
    verdicts = {v.program.name: v for v in judge(load_object(corpus.object), [profile])}
    assert set(verdicts) == set(PROGRAMS)
    wrong = []
    for name, expect in sorted(PROGRAMS.items()):
        errors = verdicts[name].errors(profile)
        said = [(f.check, f.reason or f.message) for f in errors]
        if expect.rejects is None and errors:
            wrong.append(f"{name}: the kernel loads it; the rules say {said}")
        elif expect.rejects is not None and not any(
                re.search(expect.rejects, f.reason) or re.search(expect.rejects, f.message)
                for f in errors):
            wrong.append(f"{name}: the kernel says /{expect.rejects}/; the rules say {said}")
    assert not wrong, "\n".join(wrong)


# --- maps -----------------------------------------------------------------------------------------


def _kernel_maps(maps: dict[str, dict[str, Any]]) -> dict[str, tuple[int, ...]]:
    return {name: (m["type"], m["key_size"], m["value_size"], m["max_entries"], m["flags"])
            for name, m in maps.items()}


@pytest.mark.parametrize("kernel", ["host", VM_KERNEL])
def test_maps_are_aya_maps(request: pytest.FixtureRequest, kernel: str) -> None:
    """Every map Aya creates (the declared maps and one per global data section) the native
    loader creates too, with the same type, key and value size, entries and flags (ring buffers
    and perf event arrays sized as Aya sizes them) as the kernel reports them."""
    run: Run = request.getfixturevalue("host_run" if kernel == "host" else "vm_run")
    assert _kernel_maps(run.native_maps) == _kernel_maps(run.aya_maps)
    assert {".rodata", ".data", ".bss"} <= set(run.native_maps)


@pytest.mark.parametrize("kernel", ["host", VM_KERNEL])
def test_percpu_values_per_possible_cpu(request: pytest.FixtureRequest, kernel: str) -> None:
    """``MapHandle.lookup`` of a per-CPU array gives one value per possible CPU, as many as Aya's
    ``PerCpuArray::get``, and ``update`` with one value per CPU reads back the same."""
    run: Run = request.getfixturevalue("host_run" if kernel == "host" else "vm_run")
    for name in PERCPU_ARRAYS:
        native, aya = run.native_percpu[name], run.aya_percpu[name]
        assert native["values"] == aya["values"] >= 1, (name, native, aya)
        assert native["roundtrip"], name
    if kernel == "host":
        from pytest_ebpf.kernel.maps import possible_cpus

        assert run.native_percpu[PERCPU_ARRAYS[0]]["values"] == possible_cpus()
