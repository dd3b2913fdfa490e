"""The VM runner's parts against outside truth: the initramfs against GNU cpio, the static
busybox check against ``file``, and a real kernel that cannot start the job (a module missing)
ending with the failed step named, not a hang."""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_ebpf.vm.guest import write_job
from pytest_ebpf.vm.images import fetch
from pytest_ebpf.vm.initramfs import (
    Entry,
    InitramfsError,
    build_initramfs,
    find_busybox,
    newc,
)
from pytest_ebpf.vm.qemu import run_command, run_job


def test_newc_archive_reads_back_with_gnu_cpio(tmp_path: Path) -> None:
    cpio = shutil.which("cpio")
    assert cpio is not None, "cpio is not installed: apt-get install cpio"
    entries = [Entry("bin", stat.S_IFDIR | 0o755),
               Entry("bin/tool", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
               Entry("odd", stat.S_IFREG | 0o644, b"x" * 13),  # padding after data
               Entry("empty", stat.S_IFREG | 0o600)]
    archive = tmp_path / "a.cpio"
    archive.write_bytes(newc(entries))
    listing = subprocess.run([cpio, "-itv", "--quiet"], input=archive.read_bytes(),
                             capture_output=True, check=True).stdout.decode()
    names = [line.split()[-1] for line in listing.splitlines()]
    assert names == ["bin", "bin/tool", "odd", "empty"]
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([cpio, "-idm", "--quiet"], input=archive.read_bytes(), cwd=out, check=True)
    assert (out / "bin" / "tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE((out / "bin" / "tool").stat().st_mode) == 0o755
    assert (out / "odd").read_bytes() == b"x" * 13
    assert (out / "empty").read_bytes() == b""


def test_initramfs_holds_busybox_the_modules_and_init(tmp_path: Path) -> None:
    image = fetch("6.12")
    data = gzip.decompress(build_initramfs(find_busybox(), image.modules))
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=data, capture_output=True,
                             check=True).stdout.decode().split()
    assert "init" in listing and "bin/busybox" in listing
    assert [n for n in listing if n.startswith("modules/")] == \
        [f"modules/{m.name}" for m in image.modules]


def test_busybox_must_be_static(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = find_busybox()
    assert "statically linked" in subprocess.run(["file", "-L", str(found)],
                                                 capture_output=True, text=True).stdout
    fake = tmp_path / "busybox"
    fake.symlink_to(sys.executable)  # a dynamically linked program named busybox
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InitramfsError, match=r"dynamically linked .* install busybox-static"):
        find_busybox()


def test_a_kernel_missing_a_module_names_the_failed_step(tmp_path: Path) -> None:
    """6.1 needs its virtio modules before 9p: without them 9pnet_virtio cannot load."""
    image = fetch("6.1")
    broken = dataclasses.replace(
        image, modules=tuple(m for m in image.modules if not m.name.startswith("virtio")))
    job = tmp_path / "job"
    job.mkdir()
    write_job(job, [sys.executable, "-c", "pass"], dict(os.environ), "/")
    run = run_job(broken, job, timeout=120)
    assert run.rc is None
    assert run.error is not None
    assert run.error.startswith(f"kernel 6.1 ({image.release}): the VM could not start the "
                                "tests: loading module 9pnet_virtio.ko failed")


def test_a_command_runs_as_root_in_the_named_kernel() -> None:
    image = fetch("6.12")
    run, out = run_command("6.12", [sys.executable, "-c",
                                    "import os; print(os.getuid(), os.uname().release); "
                                    "print(os.path.ismount('/sys/fs/bpf'))"],
                           cwd="/", env=dict(os.environ), timeout=300)
    assert run.error is None and run.rc == 0
    assert out.split() == ["0", image.release, "True"]
    assert run.ready is not None and 0 < run.ready < run.seconds
