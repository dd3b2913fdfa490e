"""Shared fixtures of the pytest-ebpf test suite.

Sections:

* C objects: ``compile_c``, which compiles eBPF C sources with clang-19.
* The example crate: ``example_object(target)``, which builds lock-ebpf with cargo.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

# The plugin's generated checks (one item per program, rule and kernel) would change the outcome
# counts every pytester test asserts; the suite turns them off by default (the environment twin,
# so subprocess runs inherit it) and the tests of the generated checks turn them on with
# --ebpf-checks=yes (an option wins over the environment). Users get them on by default.
os.environ.setdefault("PYTEST_EBPF_CHECKS", "no")
# Named kernels are judged by their profiles only unless a test asks for VMs (--ebpf-vm=auto).
os.environ.setdefault("PYTEST_EBPF_VM", "no")

# ---------------------------------------------------------------------------------------------
# C objects
# ---------------------------------------------------------------------------------------------

C_DIR = Path(__file__).parent / "c"
CLANG = "clang-19"

CompileC = Callable[..., Path]


@pytest.fixture(scope="session")
def compile_c(tmp_path_factory: pytest.TempPathFactory) -> CompileC:
    """Factory ``compile_c(source, name, *flags) -> Path`` building an eBPF object.

    *source* is C source text (read a file of ``tests/c`` with ``(C_DIR / "x.c").read_text()``).
    It is compiled with ``clang-19 -target bpf -O2 -g -I tests/c -c``; *flags* come last, so
    ``"-target", "bpfeb"`` or ``"-g0"`` override the defaults. Objects are cached for the
    session by ``(name, source, flags)``; *name* is the object's file name stem. Fails the test when
    clang-19 is not installed; fails it with clang's output when compilation fails.
    """
    clang = shutil.which(CLANG)
    cache: dict[tuple[str, str, tuple[str, ...]], Path] = {}
    out_dir = tmp_path_factory.mktemp("c_objects")

    def compile_(source: str, name: str, *flags: str) -> Path:
        if clang is None:
            pytest.fail(f"{CLANG} is not on PATH: run scripts/setup.sh test", pytrace=False)
        # the name is part of the key: the source file's name is in the object's BTF strings,
        # so the same source under two names gives two objects of different sizes
        key = (name, source, tuple(flags))
        cached = cache.get(key)
        if cached is not None:
            return cached
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
        src = out_dir / f"{name}-{digest}.c"
        obj = out_dir / f"{name}-{digest}.o"
        src.write_text(source)
        cmd = [clang, "-target", "bpf", "-O2", "-g", "-I", str(C_DIR), *flags]
        cmd += ["-c", str(src), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stderr}", pytrace=False)
        cache[key] = obj
        return obj

    return compile_


# ---------------------------------------------------------------------------------------------
# The example crate
# ---------------------------------------------------------------------------------------------

EXAMPLE_CRATE = Path(__file__).resolve().parent.parent / "example_project" / "lock-ebpf"


@pytest.fixture(scope="session")
def example_object() -> Callable[[str], Path]:
    """Factory ``example_object(target="bpfel-unknown-none") -> Path``: lock-ebpf built by cargo
    (its own config and toolchain), the object taken from cargo's JSON messages."""
    built: dict[str, Path] = {}

    def build(target: str = "bpfel-unknown-none") -> Path:
        if target not in built:
            cmd = ["cargo", "build", "--release", "--target", target, "--message-format=json"]
            proc = subprocess.run(cmd, cwd=EXAMPLE_CRATE, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.fail(f"{' '.join(cmd)} in {EXAMPLE_CRATE} failed:\n{proc.stderr[-4000:]}",
                            pytrace=False)
            for line in proc.stdout.splitlines():
                message = json.loads(line) if line.startswith("{") else {}
                if message.get("reason") == "compiler-artifact" and message.get("executable"):
                    built[target] = Path(message["executable"])
        return built[target]

    return build
