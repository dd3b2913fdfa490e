"""The eBPF crate on disk: where it is, its workspace, and the cargo config that applies to it.

Nothing here runs cargo (so that counting cargo invocations counts builds): manifests and
``.cargo/config.toml`` files are read with ``tomllib`` the way cargo reads them, nearest first.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_ebpf.errors import EbpfError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

_SKIP_DIRS = {"target", ".git", ".venv", ".tox", "node_modules", "__pycache__", ".mypy_cache"}
_SEARCH_DEPTH = 4


class CrateError(EbpfError):
    """The crate could not be found or its manifest/config could not be read."""


@dataclass(frozen=True)
class CargoConfig:
    """The settings of the ``.cargo/config.toml`` chain that matter for an eBPF build."""

    files: tuple[Path, ...] = ()
    """Config files that apply, nearest first."""
    target: str | None = None
    target_file: Path | None = None
    """Which file set ``build.target``."""
    rustflags: tuple[str, ...] = ()
    build_std: tuple[str, ...] = ()
    """``[unstable] build-std`` (empty: not set)."""


@dataclass(frozen=True)
class Crate:
    """An eBPF crate found on disk."""

    name: str
    directory: Path
    manifest: Path
    workspace_root: Path
    """The directory of the workspace manifest (the crate's own directory when standalone)."""
    config: CargoConfig = field(default_factory=CargoConfig)
    toolchain_file: Path | None = None
    """The ``rust-toolchain.toml``/``rust-toolchain`` rustup will read, if any."""


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CrateError(f"{path}: cannot be read as TOML: {exc}") from exc


def load_manifest(manifest: Path) -> dict[str, Any]:
    """A ``Cargo.toml`` as data (CrateError when it cannot be read)."""
    return _load_toml(manifest)


def _package_name(manifest: Path) -> str | None:
    package = _load_toml(manifest).get("package")
    if isinstance(package, dict) and isinstance(package.get("name"), str):
        return str(package["name"])
    return None


def manifests_below(root: Path) -> list[Path]:
    """Every ``Cargo.toml`` below ``root`` (``target/`` and hidden tool dirs skipped)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and depth < _SEARCH_DEPTH)
        if "Cargo.toml" in filenames:
            found.append(Path(dirpath) / "Cargo.toml")
    return found


def _packages_below(root: Path, skip_unreadable: bool = False) -> dict[str, Path]:
    """Package name -> manifest, for every package below ``root`` (the first of a name wins).
    An unreadable manifest raises CrateError unless ``skip_unreadable``."""
    names: dict[str, Path] = {}
    for path in manifests_below(root):
        try:
            found = _package_name(path)
        except CrateError:
            if skip_unreadable:
                continue
            raise
        if found is not None:
            names.setdefault(found, path)
    return names


def _workspace_root(crate_dir: Path) -> Path:
    for parent in [crate_dir, *crate_dir.parents]:
        manifest = parent / "Cargo.toml"
        if manifest.is_file() and "workspace" in _load_toml(manifest):
            return parent
    return crate_dir


def _toolchain_file(start: Path) -> Path | None:
    for parent in [start, *start.parents]:
        for name in ("rust-toolchain.toml", "rust-toolchain"):
            if (parent / name).is_file():
                return parent / name
    return None


def _as_flags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


def read_cargo_config(start: Path) -> CargoConfig:
    """Merge the ``.cargo/config(.toml)`` files from ``start`` up to ``/`` and ``$CARGO_HOME``."""
    files: list[Path] = []
    for parent in [start, *start.parents]:
        for name in ("config.toml", "config"):
            candidate = parent / ".cargo" / name
            if candidate.is_file():
                files.append(candidate)
                break
    target: str | None = None
    target_file: Path | None = None
    rustflags: tuple[str, ...] = ()
    build_std: tuple[str, ...] = ()
    for path in files:  # nearest first: the first value found wins
        data = _load_toml(path)
        build = data.get("build", {})
        if target is None and isinstance(build.get("target"), str):
            target, target_file = build["target"], path
        if not rustflags and "rustflags" in build:
            rustflags = _as_flags(build["rustflags"])
        unstable = data.get("unstable", {})
        if not build_std and "build-std" in unstable:
            build_std = _as_flags(unstable["build-std"])
    if target is not None and not rustflags:
        for path in files:
            per_target = _load_toml(path).get("target", {}).get(target, {})
            if "rustflags" in per_target:
                rustflags = _as_flags(per_target["rustflags"])
                break
    return CargoConfig(
        files=tuple(files),
        target=target,
        target_file=target_file,
        rustflags=rustflags,
        build_std=build_std,
    )


def find_crate(spec: str, base: Path, search_root: Path | None = None) -> Crate:
    """Find the crate named by ``spec``: a directory (or its Cargo.toml), or a package name.

    Relative paths are taken from ``base``; package names are looked up in the Cargo
    manifests below ``search_root`` (default: ``base``). A name that is not found gets the
    nearest known names ("did you mean ...?").
    """
    root = search_root if search_root is not None else base
    candidate = Path(spec).expanduser()
    if not candidate.is_absolute():
        candidate = base / candidate
    if candidate.name == "Cargo.toml":
        candidate = candidate.parent
    manifest: Path | None = None
    if (candidate / "Cargo.toml").is_file():
        manifest = candidate / "Cargo.toml"
        name = _package_name(manifest)
        if name is None:
            members = ", ".join(sorted(_packages_below(manifest.parent, skip_unreadable=True))
                                ) or "none found"
            raise CrateError(
                f"{manifest} has no [package] (it is a workspace manifest); name the eBPF "
                f"crate's own directory or its package name (packages: {members})"
            )
    elif "/" in spec or spec in (".", ".."):
        raise CrateError(f"{candidate} has no Cargo.toml; give the eBPF crate's directory "
                         "or its package name")
    else:
        names = _packages_below(root)
        if spec not in names:
            known = ", ".join(sorted(names)) or "none"
            close = difflib.get_close_matches(spec, list(names), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CrateError(
                f"no crate directory or package named {spec!r} under {root}; {hint}"
                f"(packages found: {known})"
            )
        manifest, name = names[spec], spec
    directory = manifest.parent.resolve()
    return Crate(
        name=name,
        directory=directory,
        manifest=manifest.resolve(),
        workspace_root=_workspace_root(directory),
        config=read_cargo_config(directory),
        toolchain_file=_toolchain_file(directory),
    )


def root_bpf_config(crate: Crate) -> Path | None:
    """A config above the eBPF crate (at or over the workspace root) that sets a BPF target.

    Such a file makes every crate of the workspace, the user-space ones too, build for BPF.
    """
    if crate.workspace_root == crate.directory:
        return None
    above = read_cargo_config(crate.workspace_root)
    if above.target and above.target.startswith("bpf"):
        return above.target_file
    return None
