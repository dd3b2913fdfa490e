"""bpffs hygiene (pytest_ebpf.kernel.pins): other users' entries, symlinks, odd names.

The hostile entries are planted by user nobody (``setpriv``) in a private bpffs (mode 1777 like
the default mount), in a mount namespace of its own (tests/bpffs_ns.py), so that the machine's
/sys/fs/bpf, which other tests check at the same time, never sees them.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from bpffs_ns import NOBODY, BpffsNamespace, dead_pid
from kernel_wait import wait_unloaded

from pytest_ebpf.kernel import bpf as k
from pytest_ebpf.kernel.loader import LoaderError, choose_loader, load_all
from pytest_ebpf.kernel.pins import (
    BPFFS,
    MARKER,
    pin_name,
    remove_session_pin_dir,
    remove_stale_pin_dirs,
    session_pin_dir,
    stale_pin_dirs,
)
from pytest_ebpf.obj.load import load_object

C_DIR = Path(__file__).parent / "c"
_AVAILABLE, _WHY = k.bpf_available()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _AVAILABLE, reason=f"needs root or CAP_BPF here: {_WHY}"),
]

ESCAPING = r"""
#include "obj_bpf.h"
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} up_map __asm__("../m") SEC(".maps");

int escape(void *ctx) __asm__("../x");
SEC("xdp") int escape(void *ctx)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&up_map, &key);
    if (v)
        *v += 1;
    return 2;
}
char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture
def ns() -> Iterator[BpffsNamespace]:
    space = BpffsNamespace()
    yield space
    space.close()


@pytest.fixture
def victim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of root's files, and one file: what a planted symlink points at."""
    d = tmp_path_factory.mktemp("victim")
    for name in ("a.txt", "b.txt"):
        (d / name).write_text("precious")
    return d


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def _our_stale_dir(root: Path, pid: int) -> Path:
    """What a SIGKILLed run leaves: a marked root dir (made like pins.session_pin_dir) holding
    a pinned map."""
    path = root / f"pytest-ebpf-{pid}-main-0123456789abcdef"
    os.mkdir(path, 0o700)
    os.mkdir(path / MARKER, 0o700)
    os.mkdir(path / "maps", 0o700)
    with k.map_create(k.BPF_MAP_TYPE["array"], 4, 4, 1) as fd:
        k.obj_pin(fd, path / "maps" / "leftover")
    return path


def test_cleanup_never_follows_symlinks_and_warns(ns: BpffsNamespace, victim: Path) -> None:
    pid = dead_pid()
    to_dir = f"pytest-ebpf-{pid}-main"  # the old, predictable name
    to_file = f"pytest-ebpf-{pid}-gw0-0123456789abcdef"
    foreign_dir = f"pytest-ebpf-{pid}-gw1-fedcba9876543210"
    ns.as_nobody("ln", "-s", str(victim), f"/sys/fs/bpf/{to_dir}")
    ns.as_nobody("ln", "-s", str(victim / "a.txt"), f"/sys/fs/bpf/{to_file}")
    ns.as_nobody("mkdir", "-m", "0700", f"/sys/fs/bpf/{foreign_dir}")
    ns.as_nobody("mkdir", f"/sys/fs/bpf/{foreign_dir}/{MARKER}")
    ours = _our_stale_dir(ns.bpffs, pid)
    assert stale_pin_dirs(ns.bpffs) == [ours]

    warnings = remove_stale_pin_dirs(ns.bpffs)

    assert _files(victim) == ["a.txt", "b.txt"], "root deleted files through a symlink"
    assert (victim / "a.txt").read_text() == "precious"
    assert not ours.exists(), "our own stale directory was not removed"
    for name in (to_dir, to_file, foreign_dir):
        assert os.path.lexists(ns.bpffs / name), f"{name} was removed"
    assert len(warnings) == 3, warnings
    text = "\n".join(warnings)
    assert f"{to_dir}: a symlink (not followed)" in text
    assert f"{to_file}: a symlink (not followed)" in text
    assert f"{foreign_dir}: owned by uid 65534, not by this user" in text
    assert "left it alone" in text and "remove it by hand" in text
    assert stale_pin_dirs(ns.bpffs) == []


def test_unmarked_directory_of_our_uid_is_left_alone(ns: BpffsNamespace) -> None:
    """A root-owned directory without the marker (an older pytest-ebpf, another tool)."""
    path = ns.bpffs / f"pytest-ebpf-{dead_pid()}-main-0123456789abcdef"
    os.mkdir(path, 0o700)
    (warning,) = remove_stale_pin_dirs(ns.bpffs)
    assert path.is_dir() and f"has no {MARKER} marker" in warning


def test_session_dir_is_fresh_private_and_never_reused(ns: BpffsNamespace) -> None:
    """The name is unpredictable; once released, a directory another user makes under the
    same name is not taken over: a new one is made."""
    first = session_pin_dir()
    try:
        st = first.lstat()
        assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        assert re.fullmatch(rf"pytest-ebpf-{os.getpid()}-{worker}-[0-9a-f]{{16}}", first.name)
        assert (first / MARKER).is_dir()
        assert session_pin_dir() == first
    finally:
        remove_session_pin_dir()
    assert not first.exists()
    # another user takes the name (as nobody when bpffs lets them, else as root + chown)
    planted = subprocess.run([*NOBODY, "mkdir", str(first)], capture_output=True, check=False)
    if planted.returncode != 0:
        os.mkdir(first)
        os.chown(first, 65534, 65534)
    try:
        second = session_pin_dir()
        assert second != first and second.parent == first.parent
        assert first.lstat().st_uid == 65534 and os.listdir(first) == []
    finally:
        remove_session_pin_dir()
        os.rmdir(first)


def test_mounts_bpffs_with_mode_0700() -> None:
    """With no bpffs at /sys/fs/bpf (in a mount namespace), ensure_bpffs mounts one that only
    root may write to."""
    script = (
        "umount /sys/fs/bpf 2>/dev/null; "
        f"{sys.executable} -c "
        "'from pytest_ebpf.kernel.pins import ensure_bpffs; ensure_bpffs()' && "
        "stat -c %a /sys/fs/bpf && grep ' /sys/fs/bpf ' /proc/mounts"
    )
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    mode, mount = proc.stdout.splitlines()
    assert int(mode, 8) & 0o777 == 0o700 and mount.split()[2] == "bpf", proc.stdout


def test_pin_name_keeps_every_name_one_component() -> None:
    for name in ("../x", "..", ".", "a/b", "/", "", "%2F", "x.y", "%pytest-ebpf", "a" * 400):
        out = pin_name(name)
        assert out and "/" not in out and "." not in out and out != MARKER, (name, out)
        assert len(out.encode()) <= 200
    assert pin_name("lock") == "lock" and pin_name("../x") == "%2E%2E%2Fx"
    assert pin_name("a/b") != pin_name("a%2Fb")  # escaping is one-to-one


def test_program_named_dotdot_is_pinned_inside(compile_c: Callable[..., Path]) -> None:
    obj = load_object(compile_c(ESCAPING, "escaping"))
    assert obj.program_names == ("../x",) and [m.name for m in obj.maps] == ["../m"]
    loader, reason = choose_loader(obj, "auto")
    assert loader == "native" and "would pin outside its directory" in reason
    with pytest.raises(LoaderError, match=r"fix: --ebpf-loader=native"):
        choose_loader(obj, "bpftool")
    before = set(os.listdir(BPFFS))
    root = session_pin_dir()
    with load_all(obj, pin_dir=root) as loaded:
        assert loaded.results["../x"].loaded
        ids = loaded.prog_ids
        assert sorted(os.listdir(root)) == sorted(["%2E%2E%2Fx", MARKER, "maps"])
        assert os.listdir(root / "maps") == ["__%2Fm"]
        assert set(os.listdir(BPFFS)) - before == {root.name}
    assert not root.exists()
    assert not wait_unloaded(ids)


def test_session_and_verify_warn_about_planted_entries(
        ns: BpffsNamespace, victim: Path, compile_c: Callable[..., Path],
        pytester: pytest.Pytester) -> None:
    """The plugin's real path: nobody plants symlinks (to a directory, to a file); root's
    privileged session passes with a warning, and so does `pytest-ebpf verify`."""
    pid = dead_pid()
    ns.as_nobody("ln", "-s", str(victim), f"/sys/fs/bpf/pytest-ebpf-{pid}-main")
    ns.as_nobody("ln", "-s", str(victim / "a.txt"), f"/sys/fs/bpf/pytest-ebpf-{pid}-gw0")
    obj = compile_c((C_DIR / "ld_globals.c").read_text(), "ld_globals")
    pytester.makepyfile(test_h="""
def test_loaded(ebpf_loaded):
    assert ebpf_loaded.results["prog_a"].loaded
""")
    proc = ns.run([sys.executable, "-m", "pytest", f"--ebpf-object={obj}",
                   "--ebpf-privileged=require", "-p", "no:cacheprovider", "-W", "error"],
                  cwd=pytester.path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed" in out
    assert f"pytest-ebpf-{pid}-main: a symlink (not followed)" in out
    assert f"pytest-ebpf-{pid}-gw0: a symlink (not followed)" in out

    proc = ns.run([sys.executable, "-m", "pytest_ebpf.cli.main", "verify", str(obj)])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and all(ln.startswith("warning: ") for ln in lines), proc.stderr
    assert _files(victim) == ["a.txt", "b.txt"]
    assert (victim / "a.txt").read_text() == "precious"
    assert os.path.islink(ns.bpffs / f"pytest-ebpf-{pid}-main")


def test_plugin_warning_is_a_pytest_warning(
        ns: BpffsNamespace, compile_c: Callable[..., Path], pytester: pytest.Pytester) -> None:
    ns.as_nobody("ln", "-s", "/etc", f"/sys/fs/bpf/pytest-ebpf-{dead_pid()}-main")
    obj = compile_c((C_DIR / "ld_globals.c").read_text(), "ld_globals")
    pytester.makepyfile(test_h="def test_loaded(ebpf_loaded):\n    pass\n")
    proc = ns.run([sys.executable, "-m", "pytest", f"--ebpf-object={obj}",
                   "--ebpf-privileged=require", "-p", "no:cacheprovider"], cwd=pytester.path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PinDirWarning" in proc.stdout and "1 passed, 1 warning" in proc.stdout, proc.stdout
