"""Debian's package indexes, read without apt: which ``.deb`` holds a kernel, and its download.

Why Debian 12 (bookworm): its archive holds both kernels the VM tests boot as prebuilt, signed
amd64 packages with their modules: 6.1 (bookworm's own, ``linux-image-amd64``) and 6.12 (the
backport, ``linux-image-6.12-amd64``, only in bookworm-security). A meta package's newest version
may be in any of bookworm-security (the debian-security archive), bookworm-updates or bookworm
(the debian archive), so :func:`resolve` reads all three ``main/binary-amd64/Packages.xz``
indexes, takes the meta package's highest version (Debian version order) and follows its
``Depends: linux-image-<abi>-amd64 (= <version>)`` to the package that holds the kernel.

Why not apt: users run Ubuntu or Fedora too, and apt's own lists may be stale or absent, so the
indexes are fetched over HTTP(S) from the mirrors in :data:`ARCHIVES` (``deb.debian.org`` over
https unless ``$PYTEST_EBPF_DEBIAN_MIRROR`` / ``$PYTEST_EBPF_DEBIAN_SECURITY_MIRROR`` name
another). The ``.deb`` is checked against the index's ``Size`` and ``SHA256``; the index itself
is trusted as TLS delivers it (checking ``InRelease``'s signature would need gpgv and Debian's
keyring, which other distributions do not ship). python-debian parses the stanzas (deb822) and
compares versions. Every request times out (:data:`TIMEOUT`, per socket operation, so a slow
but moving download of 100 MB is fine and a stalled one is not).

:class:`KernelImageError` lives here, the lowest module of :mod:`pytest_ebpf.vm`, so the index
reader raises the same one error type as :mod:`pytest_ebpf.vm.images`, which re-exports it.
"""

from __future__ import annotations

import hashlib
import http.client
import lzma
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from debian.deb822 import Packages
from debian.debian_support import Version

from pytest_ebpf.errors import EbpfError

__all__ = [
    "ARCHIVES",
    "MIRROR_ENV",
    "SECURITY_MIRROR_ENV",
    "TIMEOUT",
    "Archive",
    "DebPackage",
    "KernelImageError",
    "download",
    "resolve",
]

MIRROR_ENV = "PYTEST_EBPF_DEBIAN_MIRROR"
SECURITY_MIRROR_ENV = "PYTEST_EBPF_DEBIAN_SECURITY_MIRROR"
TIMEOUT = 60.0
"""Seconds any one socket operation of a request may take."""
ARCH = "amd64"
_INDEX = f"main/binary-{ARCH}/Packages.xz"
_IMAGE_PREFIX = "linux-image-"  # only these stanzas are parsed (25 of bookworm's 63,000)
_CHUNK = 1 << 20


class KernelImageError(EbpfError):
    """A kernel image could not be resolved, downloaded, checked or unpacked.

    ``str(err)`` is one line: ``kernel NAME: CAUSE; FIX``.
    """

    def __init__(self, name: str, cause: str, fix: str) -> None:
        self.name = name
        self.cause = " ".join(cause.split())
        self.fix = " ".join(fix.split())
        super().__init__(f"kernel {name}: {self.cause}; {self.fix}")


@dataclass(frozen=True)
class Archive:
    """A Debian archive (mirror root) and the suites read from it."""

    env: str
    """The environment variable that overrides :attr:`default`."""
    default: str
    suites: tuple[str, ...]

    @property
    def url(self) -> str:
        return (os.environ.get(self.env) or self.default).rstrip("/")

    @property
    def fix(self) -> str:
        return f"check the network, or set {self.env} to a reachable Debian mirror"


ARCHIVES = (
    Archive(SECURITY_MIRROR_ENV, "https://deb.debian.org/debian-security", ("bookworm-security",)),
    Archive(MIRROR_ENV, "https://deb.debian.org/debian", ("bookworm-updates", "bookworm")),
)


@dataclass(frozen=True)
class DebPackage:
    """One binary package as an index describes it."""

    package: str
    version: str
    url: str
    """Where to download the ``.deb``."""
    size: int
    sha256: str
    archive: Archive
    """The archive it is downloaded from (for the fix of an error)."""


def resolve(name: str, meta: str) -> DebPackage:
    """The newest kernel image package that *meta* (a meta package) depends on.

    *name* is the kernel's short name, for error messages."""
    stanzas = list(_stanzas(name))
    meta_pkg, _ = _newest(name, stanzas, meta, None)
    image, exact = _image_dependency(name, meta_pkg)
    pkg, archive = _newest(name, stanzas, image, exact)
    try:
        return DebPackage(package=image, version=pkg["Version"],
                          url=f"{archive.url}/{pkg['Filename']}", size=int(pkg["Size"]),
                          sha256=pkg["SHA256"].lower(), archive=archive)
    except (KeyError, ValueError) as exc:
        raise KernelImageError(name, f"the index entry of {image} has no valid {exc}",
                               archive.fix) from exc


def download(name: str, pkg: DebPackage, dest: Path) -> None:
    """Stream *pkg* into *dest*, checking its size and SHA256 against the index."""
    digest = hashlib.sha256()
    size = 0
    with _open(name, pkg.url, pkg.archive) as resp, dest.open("wb") as out:
        while chunk := _read(name, resp, pkg.url, pkg.archive):
            size += len(chunk)
            if size > pkg.size:
                break
            digest.update(chunk)
            out.write(chunk)
    retry = f"retry later (the mirror may be syncing), or {pkg.archive.fix}"
    if size != pkg.size:
        got = "longer" if size > pkg.size else f"{size} bytes"
        raise KernelImageError(name, f"{pkg.url} is {got}, the index says {pkg.size} bytes",
                               retry)
    if digest.hexdigest() != pkg.sha256:
        raise KernelImageError(
            name, f"{pkg.url} has SHA256 {digest.hexdigest()}, the index says {pkg.sha256}",
            retry)


def _stanzas(name: str) -> Iterator[tuple[Packages, Archive]]:
    """The ``linux-image-*`` stanzas of every suite's index, with their archive."""
    for archive in ARCHIVES:
        for suite in archive.suites:
            url = f"{archive.url}/dists/{suite}/{_INDEX}"
            with _open(name, url, archive) as resp:
                chunks = []
                while chunk := _read(name, resp, url, archive):
                    chunks.append(chunk)
            packed = b"".join(chunks)
            try:
                text = lzma.decompress(packed).decode("utf-8")
            except (lzma.LZMAError, UnicodeDecodeError) as exc:
                raise KernelImageError(name, f"{url} is not an xz-compressed index ({exc})",
                                       archive.fix) from exc
            for stanza in text.split("\n\n"):
                if stanza.lstrip("\n").startswith(f"Package: {_IMAGE_PREFIX}"):
                    yield Packages(stanza), archive


def _newest(name: str, stanzas: list[tuple[Packages, Archive]], package: str,
            exact: str | None) -> tuple[Packages, Archive]:
    found = [(s, a) for s, a in stanzas if s.get("Package") == package
             and (exact is None or s.get("Version") == exact)]
    if not found:
        where = ", ".join(f"{a.url} {s}" for a in ARCHIVES for s in a.suites)
        what = package if exact is None else f"{package} {exact}"
        raise KernelImageError(name, f"no package {what} in {where}",
                               f"{ARCHIVES[-1].fix} that carries Debian 12 (bookworm)")
    return max(found, key=lambda sa: Version(sa[0]["Version"]))


def _image_dependency(name: str, meta: Packages) -> tuple[str, str | None]:
    """The ``linux-image-*`` package *meta* depends on, and the exact version it asks for."""
    for alternatives in meta.relations["depends"] or []:
        for rel in alternatives:
            if rel["name"].startswith(_IMAGE_PREFIX):
                version = rel.get("version")
                return rel["name"], version[1] if version and version[0] == "=" else None
    raise KernelImageError(
        name, f"{meta['Package']} {meta['Version']} depends on no {_IMAGE_PREFIX}* package",
        "report this to pytest-ebpf (Debian changed its kernel packaging)")


def _open(name: str, url: str, archive: Archive) -> BinaryIO:
    try:
        resp: BinaryIO = urllib.request.urlopen(url, timeout=TIMEOUT)
    except urllib.error.HTTPError as exc:
        raise KernelImageError(name, f"cannot download {url} (HTTP {exc.code} {exc.reason})",
                               archive.fix) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise KernelImageError(name, f"cannot download {url} ({_reason(exc)})",
                               archive.fix) from exc
    return resp


def _read(name: str, resp: BinaryIO, url: str, archive: Archive) -> bytes:
    try:
        return resp.read(_CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise KernelImageError(name, f"download of {url} broke off ({_reason(exc)})",
                               archive.fix) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    if isinstance(reason, BaseException):
        return _reason(reason)
    return str(reason or exc) or type(exc).__name__
