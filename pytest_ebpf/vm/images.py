"""Debian kernel images for throwaway VMs, downloaded once and kept in a small cache.

The VM tests boot another kernel under qemu with the host's root filesystem mounted over 9p, so
from a kernel's ``.deb`` (70-110 MB) they need only the bzImage, its ``config`` and the few
modules that mount that root: :data:`ROOT_MODULES` plus what they depend on, minus what is built
in (``modules.builtin``). Debian's packages do not ship ``modules.dep`` (``depmod`` runs at
install time), so each module's dependencies come from its own ``.modinfo`` ``depends=`` entry,
which is what ``depmod`` and ``modinfo -F depends`` read too. Modules are kept uncompressed (the
VM's ``insmod`` may lack xz support), in :attr:`KernelImage.modules` order: dependencies first.

The archive's members are sorted by name, so a dependency can come before the module that
needs it (6.1's ``drivers/virtio/virtio.ko`` precedes ``virtio_pci.ko``): the unpacker streams
the data tar once, keeping the wanted modules as it meets them, and reads it again, up to the
last one missing, only when an earlier module turned out to be needed (6.12: one pass; 6.1: one
and a part). The ``.deb`` is then deleted; a cache entry is about 10-15 MB.

Cache layout (:func:`cache_dir`)::

    <cache>/<name>.lock           flock'ed by fetch(): one download per kernel at a time
    <cache>/<name> -> .<name>.X   symlink, swapped atomically when an image is (re)fetched
    <cache>/.<name>.X/manifest.json, vmlinuz-<release>, config-<release>, modules/<m>.ko

``manifest.json`` records the package, its version, the release and the SHA256 of every kept
file; :func:`cached` trusts an entry only when they all check out.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import lzma
import os
import shutil
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from debian.arfile import ArError
from debian.debfile import DebFile

from pytest_ebpf.vm.debian import DebPackage, KernelImageError, download, resolve

__all__ = [
    "CACHE_ENV",
    "KNOWN",
    "ROOT_MODULES",
    "KernelImage",
    "KernelImageError",
    "cache_dir",
    "cached",
    "fetch",
]

KNOWN: dict[str, str] = {"6.1": "linux-image-amd64", "6.12": "linux-image-6.12-amd64"}
"""Kernel name (as in ``--ebpf-kernel``) -> the Debian 12 meta package that tracks it."""
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
"""What mounting the host's root over virtio-9p needs (each one's dependencies follow)."""
CACHE_ENV = "PYTEST_EBPF_KERNEL_CACHE"
MANIFEST = "manifest.json"
_FORMAT = 1  # manifest format; another number is a cache miss
_MODULES = "modules"
_REPORT = "report this to pytest-ebpf (the package is not laid out as this version expects)"

# --- byte layouts ------------------------------------------------------------------------------
_BZIMAGE_MAGIC, _BZIMAGE_MAGIC_AT = b"HdrS", 0x202  # x86 boot protocol: setup header signature
_ELF64_LE = b"\x7fELF\x02\x01"  # e_ident: magic, ELFCLASS64, ELFDATA2LSB (x86-64 modules)
#: after e_ident: e_type e_machine e_version e_entry e_phoff e_shoff e_flags e_ehsize
#: e_phentsize e_phnum e_shentsize e_shnum e_shstrndx
_EHDR = struct.Struct("<16xHHIQQQIHHHHHH")
#: sh_name sh_type sh_flags sh_addr sh_offset sh_size sh_link sh_info sh_addralign sh_entsize
_SHDR = struct.Struct("<IIQQQQIIQQ")
_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    ".ko": bytes, ".ko.xz": lzma.decompress, ".ko.gz": gzip.decompress}
_MODULE_FILES = (*_DECOMPRESS, ".ko.zst")  # .zst: Ubuntu's, which Python reads only from 3.14


@dataclass(frozen=True)
class KernelImage:
    """A kernel ready to boot: what :func:`fetch` unpacked and :func:`cached` checked."""

    name: str
    """The short name the user writes in ``--ebpf-kernel``: ``6.1``, ``6.12``."""
    package: str
    """The Debian package it came from, e.g. ``linux-image-6.1.0-57-amd64``."""
    version: str
    """That package's Debian version, e.g. ``6.1.192-3``."""
    release: str
    """``uname -r`` inside the VM, e.g. ``6.1.0-57-amd64``."""
    vmlinuz: Path
    """The bzImage."""
    config: Path
    """The kernel's ``/boot/config-<release>``."""
    modules: tuple[Path, ...]
    """Uncompressed ``.ko`` files in ``insmod`` order (every module after its dependencies)."""


def cache_dir() -> Path:
    """``$PYTEST_EBPF_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/pytest-ebpf/kernels``, else
    ``~/.cache/pytest-ebpf/kernels``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # as the XDG spec says
    return base / "pytest-ebpf" / "kernels"


def cached(name: str, cache: Path | None = None) -> KernelImage | None:
    """The cached image of kernel *name* when present and every file matches its manifest,
    else None. Offline: never downloads."""
    _meta(name)
    try:  # the entry the symlink names now, even if a fetch swaps it meanwhile
        entry = ((cache or cache_dir()) / name).resolve(strict=True)
        return _image(name, entry, json.loads((entry / MANIFEST).read_text()))
    except (OSError, ValueError):
        return None


def fetch(name: str, cache: Path | None = None, *, refresh: bool = False) -> KernelImage:
    """The image of kernel *name*: the cached one unless *refresh* or it does not check out,
    else the newest Debian package's, downloaded, checked and unpacked into the cache (10-60 s).

    Safe to call from several processes at once: one downloads, the others wait and reuse it.
    Raises :class:`KernelImageError`."""
    meta = _meta(name)
    root = cache or cache_dir()
    if not refresh and (image := cached(name, root)) is not None:
        return image
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _locked(name, root):
            if not refresh and (image := cached(name, root)) is not None:
                return image  # another process fetched it while this one waited
            package = resolve(name, meta)
            _remove_stale(name, root)
            work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
            try:
                deb = work / "package.deb"
                download(name, package, deb)
                doc = _unpack(name, package, deb, work)
                deb.unlink()
                (work / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")
                work.chmod(0o755)  # mkdtemp's 0700 would hide the kernel from other users
                _publish(name, root, work)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            _remove_stale(name, root)
            image = cached(name, root)
    except OSError as exc:
        raise KernelImageError(name, f"cannot write the cache {root} ({exc})",
                               f"free some space, or set {CACHE_ENV} to a writable "
                               "directory") from exc
    if image is None:  # pragma: no cover - _unpack wrote exactly what cached() checks
        raise KernelImageError(name, f"the image unpacked into {work} does not check out",
                               _REPORT)
    return image


def _publish(name: str, root: Path, work: Path) -> None:
    """Point ``<root>/<name>`` at *work* in one step (rename(2) of a symlink), so a reader
    sees the old entry or the new one, never a mixture."""
    link = root / f".{name}.link"
    link.unlink(missing_ok=True)
    link.symlink_to(work.name)  # relative: the cache directory may be moved
    if (root / name).is_dir() and not (root / name).is_symlink():
        shutil.rmtree(root / name)  # not made by this module
    os.replace(link, root / name)


def _meta(name: str) -> str:
    if name not in KNOWN:
        raise KernelImageError(name, "not a kernel pytest-ebpf can boot",
                               f"use one of {', '.join(KNOWN)}")
    return KNOWN[name]


@contextmanager
def _locked(name: str, root: Path) -> Iterator[None]:
    with (root / f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _remove_stale(name: str, root: Path) -> None:
    """Remove this kernel's entries other than the current one: replaced or half-written (a
    fetch that was killed). Call with the lock held."""
    current = os.path.realpath(root / name)
    for path in root.glob(f".{name}.*"):
        if path.is_dir() and not path.is_symlink() and os.path.realpath(path) != current:
            shutil.rmtree(path, ignore_errors=True)


def _image(name: str, entry: Path, doc: Any) -> KernelImage | None:
    """The image *doc* (a manifest) describes in *entry*, if every file checks out."""
    keys = ("package", "version", "release", "vmlinuz", "config")
    if (not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("name") != name
            or not all(isinstance(doc.get(k), str) for k in keys)):
        return None
    sums, modules = doc.get("sha256"), doc.get("modules")
    if not isinstance(sums, dict) or not isinstance(modules, list):
        return None
    kept = [doc["vmlinuz"], doc["config"], *modules]
    if (not all(isinstance(rel, str) for rel in kept) or set(sums) != set(kept)
            or len(kept) != len(set(kept))):
        return None
    for rel in kept:
        path = entry / rel
        if ".." in Path(rel).parts or not path.is_file() or _sha256(path) != sums[rel]:
            return None
    return KernelImage(name=name, package=doc["package"], version=doc["version"],
                       release=doc["release"], vmlinuz=entry / doc["vmlinuz"],
                       config=entry / doc["config"],
                       modules=tuple(entry / rel for rel in modules))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack(name: str, package: DebPackage, deb: Path, work: Path) -> dict[str, Any]:
    """Write the bzImage, config and modules of *deb* into *work*; return the manifest."""
    release = package.package.removeprefix("linux-image-")
    boot = {f"boot/vmlinuz-{release}": b"", f"boot/config-{release}": b""}
    moddir = f"lib/modules/{release}/"
    builtin: set[str] = set()
    kept: dict[str, tuple[bytes, tuple[str, ...]]] = {}  # module -> (.ko, its dependencies)
    want = set(ROOT_MODULES)
    try:
        with DebFile(deb) as debfile:
            tar = debfile.data.tgz()
            first = True
            while True:  # see the module docstring: usually one pass, sometimes a part more
                found = len(kept)
                for member in tar:
                    path = member.name.removeprefix("./").removeprefix("usr/")  # merged /usr
                    if first and path in boot:
                        boot[path] = _member(name, tar, member)
                    elif first and path == moddir + "modules.builtin":
                        text = _member(name, tar, member).decode()
                        builtin = {_module_name(line) for line in text.split()}
                    elif (path.startswith(moddir + "kernel/") and path.endswith(_MODULE_FILES)
                          and (module := _module_name(path)) in want and module not in kept):
                        ko = _decompress(name, path, _member(name, tar, member))
                        depends = _depends(name, release, path, ko)
                        kept[module] = (ko, depends)
                        want.update(depends)
                        if not first and not want - kept.keys() - builtin:
                            break
                missing = want - kept.keys() - builtin
                if not missing or (not first and len(kept) == found):
                    break
                first = False
    except (ArError, tarfile.TarError, EOFError, lzma.LZMAError, OSError, UnicodeError) as exc:
        raise KernelImageError(name, f"cannot unpack {package.package} {package.version} "
                               f"({exc})", _REPORT) from exc
    for path, data in boot.items():
        if not data:
            raise KernelImageError(name, f"{package.package} {package.version} has no {path}",
                                   _REPORT)
    vmlinuz, config = boot[f"boot/vmlinuz-{release}"], boot[f"boot/config-{release}"]
    if vmlinuz[_BZIMAGE_MAGIC_AT:_BZIMAGE_MAGIC_AT + len(_BZIMAGE_MAGIC)] != _BZIMAGE_MAGIC:
        raise KernelImageError(name, f"boot/vmlinuz-{release} of {package.package} is not an "
                               "x86 bzImage", _REPORT)
    if missing:
        raise KernelImageError(name, f"{package.package} {package.version} has no module "
                               f"{', '.join(sorted(missing))} (needed to mount the root over "
                               "9p), and it is not built in", _REPORT)
    files = {f"vmlinuz-{release}": vmlinuz, f"config-{release}": config}
    order = _insmod_order(name, {m: d for m, (_, d) in kept.items()}, builtin)
    files.update((f"{_MODULES}/{m}.ko", kept[m][0]) for m in order)
    (work / _MODULES).mkdir()
    for rel, data in files.items():
        (work / rel).write_bytes(data)
    return {"format": _FORMAT, "name": name, "meta": KNOWN[name], "package": package.package,
            "version": package.version, "release": release, "vmlinuz": f"vmlinuz-{release}",
            "config": f"config-{release}", "modules": [f"{_MODULES}/{m}.ko" for m in order],
            "sha256": {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}}


def _member(name: str, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member) if member.isfile() else None
    if f is None:
        raise KernelImageError(name, f"{member.name} in the package is not a regular file",
                               _REPORT)
    return f.read()


def _module_name(path: str) -> str:
    """``kernel/fs/9p/9p.ko.xz`` -> ``9p`` (the kernel spells ``-`` in names as ``_``)."""
    return path.rsplit("/", 1)[-1].split(".ko", 1)[0].replace("-", "_")


def _decompress(name: str, path: str, data: bytes) -> bytes:
    suffix = path[path.rindex(".ko"):]
    if suffix not in _DECOMPRESS:
        raise KernelImageError(name, f"{path} is compressed as {suffix}, which Python's "
                               "standard library cannot read", _REPORT)
    return _DECOMPRESS[suffix](data)


def _depends(name: str, release: str, path: str, ko: bytes) -> tuple[str, ...]:
    """The ``depends=`` of *ko*'s ``.modinfo`` section, after checking its ``vermagic=``."""
    info = _modinfo(ko)
    if info is None:
        raise KernelImageError(name, f"{path} is not an x86-64 kernel module with a .modinfo "
                               "section", _REPORT)
    vermagic = info.get("vermagic", "")
    if not vermagic.startswith(release + " "):
        raise KernelImageError(name, f"{path} is built for {vermagic.split(' ')[0] or '?'}, "
                               f"not {release}", _REPORT)
    return tuple(_module_name(d) for d in info.get("depends", "").split(",") if d)


def _modinfo(ko: bytes) -> dict[str, str] | None:
    """The ``key=value`` entries of an ELF64 little-endian object's ``.modinfo``, or None."""
    if not ko.startswith(_ELF64_LE) or len(ko) < _EHDR.size:
        return None
    shoff, shentsize, shnum, shstrndx = (_EHDR.unpack_from(ko)[i] for i in (5, 10, 11, 12))
    if shentsize != _SHDR.size or shoff + shnum * _SHDR.size > len(ko) or shstrndx >= shnum:
        return None
    headers = [_SHDR.unpack_from(ko, shoff + i * _SHDR.size) for i in range(shnum)]
    if any(h[4] + h[5] > len(ko) for h in headers if h[1] != 8):  # 8: SHT_NOBITS
        return None
    names = ko[headers[shstrndx][4]:headers[shstrndx][4] + headers[shstrndx][5]]
    for h in headers:
        if names[h[0]:names.find(b"\0", h[0])] == b".modinfo":
            entries = ko[h[4]:h[4] + h[5]].decode("utf-8", "replace").split("\0")
            return dict(e.split("=", 1) for e in reversed(entries) if "=" in e)
    return None


def _insmod_order(name: str, depends: dict[str, tuple[str, ...]],
                  builtin: set[str]) -> list[str]:
    """The modules of *depends*, each after its dependencies (a depth-first post-order from
    :data:`ROOT_MODULES`, dependencies in name order, so the order is reproducible)."""
    order: list[str] = []

    def visit(module: str, path: tuple[str, ...]) -> None:
        if module in order or module in builtin:
            return
        if module in path:
            raise KernelImageError(name, f"the modules depend on each other in a circle: "
                                   f"{' -> '.join((*path, module))}", _REPORT)
        for dep in sorted(depends[module]):
            visit(dep, (*path, module))
        order.append(module)

    for root in ROOT_MODULES:
        visit(root, ())
    return order
