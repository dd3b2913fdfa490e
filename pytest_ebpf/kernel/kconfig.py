"""``.kconfig`` externs: the values libbpf (and Aya) fill in from the running kernel.

A program declares ``extern unsigned int LINUX_KERNEL_VERSION __kconfig;`` or
``extern bool CONFIG_BPF_JIT __kconfig __weak;``: the object has no bytes for them, only BTF
(the ``.kconfig`` DATASEC) and relocations. The loader lays the variables out in one read-only
map, fills each from the kernel (its release, its build config from ``/proc/config.gz`` or
``/boot/config-RELEASE``) as libbpf does, and points the instructions at it:

=================== ============================================================
type (BTF)          value
=================== ============================================================
bool                ``y`` 1, ``n`` or unset 0 (``m`` is an error)
enum tristate       ``y`` 1, ``m`` 2, ``n`` or unset 0 (libbpf's ``libbpf_tristate``)
char                the character ``y``/``m``/``n``
integers            the number (decimal or ``0x`` hex), which must fit
char arrays         the string, NUL-terminated, cut to the array
=================== ============================================================

``LINUX_KERNEL_VERSION`` is ``KERNEL_VERSION(a, b, c)`` of the release (``c`` capped at 255).
A ``CONFIG_*`` the kernel's config does not set is 0 when the extern is ``__weak``, and an
error otherwise (as libbpf).
"""

from __future__ import annotations

import gzip
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_ebpf.errors import EbpfError
from pytest_ebpf.obj.model import EbpfObject

__all__ = ["KconfigError", "KconfigVar", "kconfig_data", "kconfig_layout", "kernel_config",
           "version_code"]

SECTION = ".kconfig"


class KconfigError(EbpfError):
    """A ``.kconfig`` extern cannot be filled in; the message names it and the fix."""


@dataclass(frozen=True)
class KconfigVar:
    """One extern: where it sits in the ``.kconfig`` map and what it holds."""

    name: str
    offset: int
    size: int
    kind: str
    """``bool``, ``tristate``, ``char``, ``int``, ``uint`` or ``str``."""
    weak: bool


def _kind(obj: EbpfObject, type_id: int, name: str) -> tuple[str, int]:
    btf = obj.btf
    assert btf is not None
    t = btf.resolve(type_id)
    if t.kind == "int" and t.int_info is not None and t.size is not None:
        if t.int_info.is_bool:
            return "bool", t.size
        if t.size == 1 and t.name in ("char", "unsigned char", "signed char"):
            return "char", 1
        return ("int" if t.int_info.signed else "uint"), t.size
    if t.kind == "enum" and t.size is not None:
        return "tristate", t.size
    if t.kind == "array" and t.array is not None:
        elem = btf.resolve(t.array.type)
        if elem.kind == "int" and elem.size == 1:
            return "str", t.array.nelems
    raise KconfigError(f".kconfig extern {name}: its type ({t.kind} {t.name!r}) is not one "
                       "libbpf fills in (bool, tristate, char, integers, char arrays)")


def kconfig_layout(obj: EbpfObject) -> tuple[dict[str, KconfigVar], int]:
    """The ``.kconfig`` externs of *obj*, laid out as libbpf lays them out (each aligned to its
    size, at most 8), and the map's size; empty when there are none."""
    sec = obj.btf.find(SECTION, "datasec") if obj.btf is not None else None
    data = next((d for d in obj.data_sections if d.kind == "kconfig"), None)
    if data is None:
        return {}, 0
    if sec is None or obj.btf is None:
        raise KconfigError(f"{SECTION} externs ({', '.join(s.name for s in data.symbols)}) need "
                           "the object's BTF (their types); fix: build with BTF")
    weak = {s.name for s in obj.image.symbols if s.bind == "weak"} if obj.image else set()
    out: dict[str, KconfigVar] = {}
    offset = 0
    for member in sec.datasec_vars:
        var = obj.btf.type(member.type)
        if var.kind != "var" or var.type is None:
            continue
        kind, size = _kind(obj, var.type, var.name)
        align = 1 if kind == "str" else min(size, 8)
        offset = (offset + align - 1) // align * align
        out[var.name] = KconfigVar(var.name, offset, size, kind, var.name in weak)
        offset += size
    return out, max(offset, 1)


def kernel_config(release: str | None = None) -> dict[str, str]:
    """``CONFIG_X`` -> its value as written (``y``, ``m``, ``250``, ``"text"``) from
    ``/proc/config.gz``, else ``/boot/config-RELEASE``."""
    release = release or platform.release()
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{release}")):
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode(errors="replace")
        config = {}
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.startswith("CONFIG_"):
                config[name] = value
        return config
    raise KconfigError("the kernel's build config is not readable (/proc/config.gz, "
                       f"/boot/config-{release}): CONFIG_* externs cannot be filled in; fix: "
                       "CONFIG_IKCONFIG_PROC=y, or install the kernel's config file")


def version_code(release: str) -> int:
    """``KERNEL_VERSION(a, b, c)`` of a release (``6.18.44-fc`` -> 0x0612ff, c capped at
    255), as the kernel and libbpf compute it."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if m is None:
        raise KconfigError(f"LINUX_KERNEL_VERSION: cannot read a version from {release!r}")
    a, b, c = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    return (a << 16) + (b << 8) + min(c, 255)


def _encode(var: KconfigVar, value: str | None) -> bytes:
    def bad(why: str) -> KconfigError:
        return KconfigError(f".kconfig extern {var.name} ({var.kind}): {why}")

    if value is None or value == "n":
        if value is None and not var.weak:
            raise bad("not set in this kernel's config; fix: declare it __weak (it reads 0 "
                      "then) or drop it")
        return b"n" if var.kind == "char" else bytes(var.size)
    if var.kind == "bool":
        if value != "y":
            raise bad(f"value {value!r} is not a bool (y or n)")
        return (1).to_bytes(var.size, "little")
    if var.kind == "tristate":
        if value not in ("y", "m"):
            raise bad(f"value {value!r} is not a tristate (y, m or n)")
        return (1 if value == "y" else 2).to_bytes(var.size, "little")
    if var.kind == "char":
        if value not in ("y", "m"):
            raise bad(f"value {value!r} is not y, m or n")
        return value.encode()
    if var.kind == "str":
        if not (len(value) >= 2 and value[0] == value[-1] == '"'):
            raise bad(f"value {value!r} is not a string")
        return value[1:-1].encode()[: var.size - 1].ljust(var.size, b"\0")
    try:
        number = int(value, 0)
    except ValueError as exc:
        raise bad(f"value {value!r} is not a number") from exc
    try:
        return number.to_bytes(var.size, "little", signed=var.kind == "int")
    except OverflowError as exc:
        raise bad(f"value {number} does not fit in {var.size} bytes") from exc


def kconfig_data(obj: EbpfObject, config: Mapping[str, str] | None = None,
                 release: str | None = None) -> bytes:
    """The bytes of the ``.kconfig`` map of *obj* for the running kernel (or *config* and
    *release*, for tests). Little-endian: the host's order on every machine that loads."""
    layout, size = kconfig_layout(obj)
    release = release or platform.release()
    blob = bytearray(size)
    for var in layout.values():
        if var.name == "LINUX_KERNEL_VERSION":
            value = version_code(release).to_bytes(var.size, "little")
        elif var.name.startswith("LINUX_HAS_"):
            value = (1).to_bytes(var.size, "little")  # BPF cookies, syscall wrappers: 5.15+
        else:
            if config is None:
                config = kernel_config(release)
            value = _encode(var, config.get(var.name))
        blob[var.offset:var.offset + var.size] = value.ljust(var.size, b"\0")
    return bytes(blob)
