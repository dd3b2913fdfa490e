"""What the installed toolchain says about itself, for tests that check what the plugin
prints: read from the tools (``rustc -vV``, ``bpf-linker --version``), never written in as this
machine's versions."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

DEBIAN_RUSTC = "/usr/bin/rustc"  # what scripts/setup.sh installs (rustc-web), rustup's "debian"


@functools.cache
def rustc_release() -> str:
    """``1.96.0``: the release of Debian's rustc."""
    return _field("release")


@functools.cache
def rustc_llvm_major() -> str:
    """``22``: the LLVM major version of Debian's rustc."""
    return _field("LLVM version").split(".", 1)[0]


def _field(name: str) -> str:
    out = subprocess.run([DEBIAN_RUSTC, "-vV"], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(rf"^{re.escape(name)}: (\S+)$", out, re.M)
    assert match, out
    return match.group(1)


@functools.cache
def linker_version() -> str:
    """``0.13.0``: the bpf-linker the set-up installed (``$CARGO_HOME/bin``, else PATH)."""
    home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    linker = home / "bin" / "bpf-linker"
    exe = str(linker) if linker.is_file() else shutil.which("bpf-linker")
    assert exe, "bpf-linker is not installed: run scripts/setup.sh"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[-1]
