"""Load a built eBPF object's programs into the running kernel (needs root or CAP_BPF).

Two loaders return the same :class:`LoadedObject`:

* ``bpftool`` (:mod:`pytest_ebpf.kernel.bpftool`): ``bpftool -d prog loadall``, i.e. libbpf. Right
  for C/libbpf-style objects (BTF ``.maps``); libbpf 1.0+ refuses legacy ``maps`` sections and
  Aya's wrapped BTF map definitions.
* ``native`` (:mod:`pytest_ebpf.kernel.native`): this project's own linker and ``bpf()`` calls
  (ctypes), which understands Aya objects (legacy ``maps``, BTF that needs fixing up).

:func:`choose_loader` picks one (``auto``); :func:`load_all` / :func:`load_program` load. Every
program gets a :class:`LoadResult` (loaded or rejected, with the verifier's log and figures);
rejections are results, not exceptions. Each verdict is the kernel's answer for that program: a
program the kernel accepts is loaded even when another program of the object is rejected (both
loaders; bpftool by loading again without the rejected ones). :meth:`LoadedObject.close` (or
leaving the ``with``) unloads everything: closes every program and map fd and removes every pin
it made.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pytest_ebpf.kernel.bpftool import bpftool_path
from pytest_ebpf.kernel.pins import (
    BPFFS,
    PIN_PREFIX,
    PinError,
    ensure_bpffs,
    remove_stale_pin_dirs,
    session_pin_dir,
    stale_pin_dirs,
)
from pytest_ebpf.kernel.results import (
    DEFAULT_LOG_LEVEL,
    LoadedObject,
    LoaderError,
    LoaderName,
    LoadResult,
    MapHandle,
    UnknownNameError,
    nearest,
)
from pytest_ebpf.obj.model import EbpfObject

__all__ = [
    "BPFFS",
    "PIN_PREFIX",
    "LoadResult",
    "LoadedObject",
    "LoaderError",
    "MapHandle",
    "PinError",
    "UnknownNameError",
    "bpftool_path",
    "choose_loader",
    "ensure_bpffs",
    "load_all",
    "load_program",
    "nearest",
    "remove_stale_pin_dirs",
    "session_pin_dir",
    "stale_pin_dirs",
]

Requested = Literal["auto", "bpftool", "native"]



# --- choosing and dispatching -------------------------------------------------------------------


def _aya_btf_maps(obj: EbpfObject) -> list[str]:
    """BTF ``.maps`` variables whose type is not a libbpf-style definition (a struct with a
    ``type`` member): Aya wraps the definition (``HashMap(UnsafeCell<HashMapDef<..>>)``)."""
    btf = obj.btf
    if btf is None:
        return []
    out: list[str] = []
    for sec in btf.datasecs():
        if not (sec.name == ".maps" or sec.name.startswith(".maps.")):
            continue
        for var in sec.datasec_vars:
            vt = btf.type(var.type)
            if vt.kind != "var" or vt.type is None:
                continue
            st = btf.resolve(vt.type)
            if st.kind != "struct" or not any(m.name == "type" for m in st.members):
                out.append(vt.name)
    return out


def _optional(obj: EbpfObject) -> list[str]:
    """Programs of ``?`` sections (libbpf's "do not load unless asked")."""
    return [p.name for p in obj.programs if not p.kind.autoload]


def unsafe_pin_names(obj: EbpfObject) -> list[str]:
    """Program and map names that libbpf would turn into pin paths outside its directory, and
    maps pinned by name (libbpf pins those under /sys/fs/bpf itself, not in our private
    directory)."""
    names = [p.name for p in obj.programs] + [m.name for m in obj.maps]
    bad = [n for n in names if "/" in n or n in ("", ".", "..")]
    return bad + [f"{m.name} (pinned by name)" for m in obj.maps if m.pinning == 1]


def choose_loader(obj: EbpfObject, requested: str = "auto") -> tuple[LoaderName, str]:
    """Which loader to use, and why. ``auto``: bpftool when the object has no legacy ``maps``
    section, no Aya-style BTF maps and bpftool is installed; else native."""
    if requested == "native":
        return "native", "native: requested"
    if requested == "bpftool":
        if bpftool_path() is None:
            raise LoaderError("bpftool was requested but is not installed (not on $PATH)")
        optional = _optional(obj)
        if optional:
            raise LoaderError(
                f"bpftool cannot load this object: {', '.join(optional)} in '?' sections "
                "(libbpf leaves them unloaded, then bpftool cannot pin them); fix: "
                "--ebpf-loader=native (--loader native), which loads them on request"
            )
        unsafe = unsafe_pin_names(obj)
        if unsafe:
            raise LoaderError(
                f"bpftool would pin {', '.join(map(repr, unsafe))} outside its pin directory "
                "(libbpf pins under the raw name, '/' or '..' in it, and maps pinned by name at "
                "/sys/fs/bpf itself); fix: --ebpf-loader=native (--loader native), which "
                "escapes pin names and pins in its private directory"
            )
        return "bpftool", "bpftool: requested"
    if requested != "auto":
        raise ValueError(f"loader must be 'auto', 'bpftool' or 'native', not {requested!r}")
    legacy = [m.name for m in obj.maps if m.source == "legacy"]
    if legacy:
        return "native", (
            f"native: legacy `maps` section (Aya) that libbpf 1.0+ refuses "
            f"({', '.join(legacy)})"
        )
    aya = _aya_btf_maps(obj)
    if aya:
        return "native", (
            f"native: Aya-style BTF map definitions that libbpf refuses ({', '.join(aya)})"
        )
    optional = _optional(obj)
    if optional:
        return "native", (f"native: programs in '?' sections that bpftool cannot pin "
                          f"({', '.join(optional)})")
    unsafe = unsafe_pin_names(obj)
    if unsafe:
        return "native", (f"native: names that libbpf would pin outside its directory "
                          f"({', '.join(map(repr, unsafe))})")
    if bpftool_path() is None:
        return "native", "native: bpftool is not installed"
    return "bpftool", "bpftool: libbpf can open this object"


def load_all(
    obj: EbpfObject,
    loader: str = "auto",
    pin_dir: Path | None = None,
    log_level: int = DEFAULT_LOG_LEVEL,
    max_entries: Mapping[str, int] | None = None,
) -> LoadedObject:
    """Load every program of *obj* (and the maps they use). ``pin_dir``: also pin programs
    there (``<pin_dir>/<prog>``) and maps (``<pin_dir>/maps/<map>``); by default the native
    loader pins nothing and bpftool pins under a private directory of
    :func:`session_pin_dir`. ``log_level`` is the native loader's verifier log level (bpftool's
    ``-d`` always asks libbpf for level 1, which includes the statistics). ``max_entries``
    sizes maps at load time, by name, as Aya's ``EbpfLoader::set_max_entries`` (a ring buffer
    an Aya program declares with size 0); only the native loader can."""
    return _load(obj, None, loader, pin_dir, log_level, max_entries)


def load_program(
    obj: EbpfObject,
    program_name: str,
    loader: str = "auto",
    pin_dir: Path | None = None,
    log_level: int = DEFAULT_LOG_LEVEL,
    max_entries: Mapping[str, int] | None = None,
) -> LoadedObject:
    """Load one program (and only the maps it uses). With bpftool, libbpf loads the whole
    object (without the programs the kernel rejects); the other programs are unloaded again
    before this returns."""
    try:
        prog = obj.program(program_name)
    except LookupError as exc:
        raise LookupError(f"{exc}{nearest(program_name, obj.program_names)}") from None
    return _load(obj, prog.name, loader, pin_dir, log_level, max_entries)


def _load(
    obj: EbpfObject, only: str | None, loader: str, pin_dir: Path | None, log_level: int,
    max_entries: Mapping[str, int] | None = None,
) -> LoadedObject:
    sizes = dict(max_entries or {})
    known = {m.name for m in obj.maps}
    for name, value in sizes.items():
        if name not in known:
            raise UnknownNameError("map", name, sorted(known))
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"max_entries for map {name!r} must be a positive int, not "
                             f"{value!r}")
    if sizes and loader == "bpftool":
        raise LoaderError("bpftool cannot size maps at load time (max_entries); fix: "
                          "--ebpf-loader=native (--loader native)")
    chosen: LoaderName
    if sizes and loader == "auto":
        chosen, reason = "native", f"native: maps sized at load time ({', '.join(sizes)})"
    else:
        chosen, reason = choose_loader(obj, loader)
    loaded = LoadedObject(obj, chosen, reason)
    try:
        if chosen == "native":
            from pytest_ebpf.kernel.native import load_native

            load_native(loaded, only, pin_dir, log_level, sizes)
        else:
            from pytest_ebpf.kernel.bpftool import load_bpftool

            load_bpftool(loaded, only, pin_dir)
    except BaseException:
        loaded.close()
        raise
    return loaded
