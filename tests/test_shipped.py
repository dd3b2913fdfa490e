"""Build what ships: in the aya-template layout the user-space crate's build.rs builds the eBPF
crate through aya-build and embeds that object. The plugin must test the same object.

The truth is aya-build itself: ``cargo build -p lock`` runs lock/build.rs, which calls
``aya_build::build_ebpf`` and copies the object to its OUT_DIR. pyelftools reads both objects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pytest_ebpf.kernel.loader import load_all
from pytest_ebpf.obj.load import load_object

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"
TEMPLATE_CONFIG = """\
# aya-template style: the eBPF crate's own config names the target only; the flags come from
# aya-build (CARGO_ENCODED_RUSTFLAGS) when lock/build.rs builds this crate.
[build]
target = "bpfel-unknown-none"

[env]
RUSTC_BOOTSTRAP = "aya_ebpf"
"""
REPORT_TEST = """
import pathlib

def test_object(ebpf_build):
    pathlib.Path("object-path.txt").write_text(ebpf_build.object_path)
"""


def _sections(path: Path) -> dict[str, bytes]:
    with path.open("rb") as fh:
        elf = ELFFile(fh)
        return {s.name: s.data() for s in elf.iter_sections() if s.name}


def _shipped_sections(path: Path) -> dict[str, bytes]:
    """Everything but DWARF (whose paths name the target directory) and its relocations."""
    return {name: data for name, data in _sections(path).items()
            if not re.match(r"\.(rel\.)?debug_", name)}


@pytest.fixture(scope="module")
def template_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("template") / "ws"
    shutil.copytree(EXAMPLE, ws, ignore=shutil.ignore_patterns("target", "tests", ".pytest*"))
    (ws / "lock-ebpf" / ".cargo" / "config.toml").write_text(TEMPLATE_CONFIG)
    return ws


def test_plugin_builds_the_object_aya_build_embeds(pytester: pytest.Pytester,
                                                  template_workspace: Path) -> None:
    ws = template_workspace
    pytester.makepyfile(test_obj=REPORT_TEST)
    result = pytester.runpytest_subprocess(f"--ebpf-crate={ws / 'lock-ebpf'}",
                                           "-p", "no:cacheprovider", timeout=900)
    result.assert_outcomes(passed=1)
    summary = result.stdout.str()
    assert ('rustflags: --cfg=bpf_target_arch="x86_64" -Cdebuginfo=2 -Clink-arg=--btf '
            f"(as aya-build in {ws / 'lock' / 'build.rs'} passes them") in summary
    ours = Path((pytester.path / "object-path.txt").read_text())

    # aya-build's own object: build the user-space crate, whose build script embeds it.
    proc = subprocess.run(["cargo", "build", "--release", "--package", "lock",
                           "--message-format=json"], cwd=ws, capture_output=True, text=True,
                          timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out_dirs = [m["out_dir"] for m in map(json.loads, proc.stdout.splitlines())
                if m.get("reason") == "build-script-executed"]
    shipped = [Path(d) / "lock" for d in out_dirs if (Path(d) / "lock").is_file()]
    assert shipped, proc.stdout[-3000:]

    mine, theirs = _shipped_sections(ours), _shipped_sections(shipped[0])
    assert ".BTF" in theirs and ".BTF.ext" in theirs
    assert sorted(mine) == sorted(theirs)
    for name in theirs:
        assert mine[name] == theirs[name], f"section {name} differs from aya-build's object"

    # Aya's own loader is the truth of what loads: the user-space crate loads and attaches
    # every program (lock_exec_btf through the kernel's BTF) and exits; the native loader
    # gives each program of the same object the same verdict.
    if os.geteuid() != 0:
        return  # attaching needs root; CI runs as root
    exe = [m["executable"] for m in map(json.loads, proc.stdout.splitlines())
           if m.get("reason") == "compiler-artifact" and m.get("executable")
           and m["target"]["name"] == "lock"]
    assert exe, proc.stdout[-3000:]
    aya = subprocess.run([exe[0], "--check", "--iface", "lo"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert aya.returncode == 0, aya.stdout + aya.stderr
    assert "OK: lock attached to lo, lock_exec and lock_exec_btf attached" in aya.stdout
    obj = load_object(shipped[0])
    with load_all(obj, loader="native") as loaded:
        verdicts = {name: r.loaded for name, r in loaded.results.items()}
    assert verdicts == {"lock": True, "lock_exec": True, "lock_exec_btf": True}


def test_without_aya_builds_flags_the_object_has_no_btf(template_workspace: Path) -> None:
    """The control: the eBPF crate built the plain way from its own directory (what the plugin
    did before it read aya-build) lacks the BTF the shipped object has."""
    proc = subprocess.run(["cargo", "build", "--release", "--message-format=json",
                           "--target-dir", str(template_workspace / "plain-target")],
                          cwd=template_workspace / "lock-ebpf", capture_output=True, text=True,
                          timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    exe = [m["executable"] for m in map(json.loads, proc.stdout.splitlines())
           if m.get("reason") == "compiler-artifact" and m.get("executable")]
    assert exe
    assert ".BTF" not in _sections(Path(exe[0]))
