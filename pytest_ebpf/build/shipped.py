"""How the workspace itself builds the eBPF crate, so the plugin builds the object that ships.

In the aya-template layout the user-space crate's ``build.rs`` builds the eBPF crate through
``aya_build::build_ebpf`` and embeds the object. aya-build (0.2) runs, from the user-space crate's
directory (so the eBPF crate's own ``.cargo/config.toml`` is not read)::

    cargo build --package NAME --bins --message-format=json --release --target bpfel-unknown-none
    CARGO_ENCODED_RUSTFLAGS = --cfg=bpf_target_arch="<host arch>" -Cdebuginfo=2 -Clink-arg=--btf

(bpfeb for a big-endian host; ``-Z build-std=core`` when the toolchain is a nightly or
``RUSTC_BOOTSTRAP`` is ``1`` or the package name). Built any other way the object differs: without
those flags it has no ``.BTF``/``.BTF.ext``. Nothing here runs cargo: the manifests are read.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

from pytest_ebpf.build.project import Crate, CrateError, load_manifest, manifests_below

AYA_BUILD = "aya-build"
SEPARATOR = "\x1f"  # CARGO_ENCODED_RUSTFLAGS separates flags with ASCII unit separator

#: ``platform.machine()`` -> Rust's ``target_arch`` (aya-build takes CARGO_CFG_TARGET_ARCH,
#: with riscv64* folded to riscv64).
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
         "armv7l": "arm", "armv6l": "arm", "ppc64le": "powerpc64", "ppc64": "powerpc64",
         "s390x": "s390x", "loongarch64": "loongarch64", "mips64": "mips64", "mips": "mips"}


@dataclass(frozen=True)
class ShippedBuild:
    """The build script that builds the eBPF crate, and the flags it gives cargo."""

    builder: str
    """The package whose build script builds the eBPF crate (``lock``)."""
    build_script: Path
    rustflags: tuple[str, ...]

    @property
    def encoded(self) -> str:
        return SEPARATOR.join(self.rustflags)

    def describe(self) -> str:
        return f"{AYA_BUILD} in {self.build_script}"


def bpf_target_arch(machine: str | None = None) -> str:
    """The ``bpf_target_arch`` cfg aya-build passes: the host's Rust ``target_arch``."""
    machine = machine or platform.machine()
    if machine.startswith("riscv64"):
        return "riscv64"
    return _ARCH.get(machine, machine)


def aya_build_rustflags(machine: str | None = None) -> tuple[str, ...]:
    return (f'--cfg=bpf_target_arch="{bpf_target_arch(machine)}"', "-Cdebuginfo=2",
            "-Clink-arg=--btf")


def _build_script(manifest: Path, data: dict[str, object]) -> Path | None:
    package = data.get("package")
    custom = package.get("build") if isinstance(package, dict) else None
    if custom is False:
        return None
    script = manifest.parent / (custom if isinstance(custom, str) else "build.rs")
    return script if script.is_file() else None


def find_shipped_build(crate: Crate) -> ShippedBuild | None:
    """The workspace member whose build script builds ``crate`` with aya-build, if any.

    A member counts when it has ``aya-build`` among its build-dependencies and its build script
    calls ``build_ebpf`` and names the eBPF crate (or has it as a build-dependency, as the
    aya-template does)."""
    word = re.compile(rf"(?<![\w-]){re.escape(crate.name)}(?![\w-])")
    for manifest in manifests_below(crate.workspace_root):
        if manifest.parent == crate.directory:
            continue
        try:
            data = load_manifest(manifest)
        except CrateError:
            continue
        build_deps = data.get("build-dependencies")
        if not isinstance(build_deps, dict) or AYA_BUILD not in build_deps:
            continue
        script = _build_script(manifest, data)
        if script is None:
            continue
        try:
            source = script.read_text(errors="replace")
        except OSError:
            continue
        if "build_ebpf" not in source:
            continue
        if crate.name in build_deps or word.search(source):
            package = data.get("package")
            name = package.get("name") if isinstance(package, dict) else None
            return ShippedBuild(builder=str(name or manifest.parent.name),
                                build_script=script, rustflags=aya_build_rustflags())
    return None
