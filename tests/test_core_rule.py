"""The rule core: CO-RE relocations without a match in the host kernel's BTF, where every run
reaches them (:mod:`pytest_ebpf.analysis.corecheck`), against the native loader's verdicts on
``tests/c/ld_core.c`` (a relocation the kernel lacks, reached and guarded)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from pytest_ebpf.analysis.profiles import host_profile, named_profile
from pytest_ebpf.analysis.rules import judge, rule
from pytest_ebpf.kernel import bpf as kernel
from pytest_ebpf.kernel.loader import load_all
from pytest_ebpf.kernel.targets import TargetError, kernel_btf
from pytest_ebpf.obj import vmlinux
from pytest_ebpf.obj.load import load_object
from pytest_ebpf.obj.model import EbpfObject

CompileC = Callable[..., Path]
C_DIR = Path(__file__).parent / "c"
_AVAILABLE, _WHY = kernel.bpf_available()
needs_root = pytest.mark.skipif(not _AVAILABLE, reason=f"loading needs root or CAP_BPF: {_WHY}")
LINE = ("failed to resolve CO-RE relocation field_byte_offset of struct "
        "task_struct.pytest_no_such_field (0:2) at insn 1 of unguarded: the kernel's BTF has no "
        "such type or field (the verifier: invalid func unknown#195896080)")


@pytest.fixture(scope="module")
def core_obj(compile_c: CompileC) -> EbpfObject:
    return load_object(compile_c((C_DIR / "ld_core.c").read_text(), "ld_core"))


def test_the_reached_relocation_is_foreseen_the_guarded_one_is_not(core_obj: EbpfObject) -> None:
    verdicts = judge(core_obj, [host_profile()], [rule("core")])
    assert {v.program.name: [(f.check, f.reason) for f in v.findings] for v in verdicts} == {
        "exec_pid": [], "guarded": [], "unguarded": [("core_unresolved", LINE)]}
    (f,) = next(v for v in verdicts if v.program.name == "unguarded").findings
    assert f.insn is not None and ".c:" in f.message and "p->pytest_no_such_field" in f.message
    assert "bpf_core_field_exists()" in f.fix


def test_only_the_host_has_its_btf(core_obj: EbpfObject) -> None:
    assert all(not v.findings for v in judge(core_obj, [named_profile("6.12")], [rule("core")]))


@needs_root
def test_the_loader_says_so(core_obj: EbpfObject) -> None:
    with load_all(core_obj, loader="native") as loaded:
        said = {r.program: (r.loaded, r.error) for r in loaded.results.values()}
    assert said == {"exec_pid": (True, None), "guarded": (True, None),
                    "unguarded": (False, LINE)}


def test_without_the_kernels_btf_the_rule_is_silent_and_the_loader_says_why(
        core_obj: EbpfObject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmlinux, "VMLINUX", tmp_path / "vmlinux")
    monkeypatch.setattr(vmlinux, "_CACHE", {})
    assert all(not v.findings for v in judge(core_obj, [host_profile()], [rule("core")]))
    with pytest.raises(TargetError, match=r"cannot be read \(.*vmlinux: No such file or "
                       r"directory\).*CONFIG_DEBUG_INFO_BTF=y"):
        kernel_btf(tmp_path / "vmlinux")
