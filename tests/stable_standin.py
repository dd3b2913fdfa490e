"""Without rustup, a real stable toolchain that lacks what rustup's ``stable`` lacks.

rustup's ``stable`` has no prebuilt ``core`` for the BPF targets (they are Tier 3) and, on a
minimal profile, no ``rust-src``. Without rustup there is no ``+stable`` to ask for, so the
tests that provoke those problems use Debian's own rustc and cargo (stable 1.96) with a sysroot
holding everything of ``/usr/lib/rustlib`` except what is left out: the same compiler, the same
libraries, really missing the same pieces.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

DEBIAN_RUSTLIB = Path("/usr/lib/rustlib")
DEBIAN_RUSTC = Path("/usr/bin/rustc")
DEBIAN_CARGO = Path("/usr/bin/cargo")


def rustup_missing(why: str) -> str | None:
    """The skip reason of a test that only rustup can run, decided now; ``None`` when rustup
    is on PATH (as on CI: then every test runs)."""
    if shutil.which("rustup") is None:
        return f"needs rustup (not on PATH): {why}"
    return None


def stable_without(dest: Path, *, bpf_core: bool = False, rust_src: bool = False,
                   nightly: bool = False) -> Path:
    """A ``bin`` directory (put it first on PATH) with ``rustc`` and ``cargo``: Debian's, on a
    sysroot in ``dest`` without the BPF targets' core (unless ``bpf_core``) and without the
    library sources (unless ``rust_src``). Returns the ``bin`` directory; the sysroot is its
    parent. ``nightly``: both act as a nightly (``RUSTC_BOOTSTRAP=1``), as a rustup nightly with
    rust-src and no prebuilt BPF core does."""
    for tool in (DEBIAN_RUSTC, DEBIAN_CARGO):
        assert tool.is_file(), f"{tool} missing: run scripts/setup.sh (rustc-web, cargo-web)"
    rustlib = dest / "lib" / "rustlib"
    rustlib.mkdir(parents=True)
    for entry in DEBIAN_RUSTLIB.iterdir():
        if entry.name.startswith("bpf") and not bpf_core:
            continue
        if entry.name == "src" and not rust_src:
            continue
        (rustlib / entry.name).symlink_to(entry)
    bindir = dest / "bin"
    bindir.mkdir()
    bootstrap = "export RUSTC_BOOTSTRAP=1\n" if nightly else ""
    (bindir / "rustc").write_text(
        f'#!/bin/sh\n{bootstrap}exec {DEBIAN_RUSTC} --sysroot "{dest}" "$@"\n')
    (bindir / "cargo").write_text(f'#!/bin/sh\n{bootstrap}export RUSTC="{bindir / "rustc"}"\n'
                                  f'exec {DEBIAN_CARGO} "$@"\n')
    for tool in bindir.iterdir():
        tool.chmod(0o755)
    sysroot = subprocess.run([str(bindir / "rustc"), "--print", "sysroot"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert sysroot == str(dest), sysroot
    assert (rustlib / "bpfel-unknown-none").exists() == bpf_core
    assert (rustlib / "src" / "rust" / "library" / "Cargo.lock").exists() == rust_src
    return bindir
