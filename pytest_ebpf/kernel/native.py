"""The native loader: link each program ourselves and load it with ``bpf()`` (no libbpf).

Per program: linked by :mod:`pytest_ebpf.kernel.link` (calls, function pointers, kfuncs,
``func_info``/``line_info``), then:

* map references become ``src = BPF_PSEUDO_MAP_FD, imm = map fd``; global data (``.data``,
  ``.rodata``, ``.bss`` and their ``.name`` variants) lives in one-entry array maps initialised
  with the section bytes (``.rodata`` frozen and read-only for programs), referenced with
  ``src = BPF_PSEUDO_MAP_VALUE, imm = fd`` and the byte offset in the next slot's ``imm``;
* the object's ``.BTF`` is loaded once (after fixing what clang/bpf-linker leave for the loader
  to fill in: DATASEC sizes and variable offsets), and every program gets ``func_info`` and
  ``line_info`` re-based to instruction indices of its own stream, so verifier logs show source
  lines. When the kernel refuses the BTF, programs load without it and say so in their notes.

Maps are created once per object, only when a loaded program references them.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
import sys
from pathlib import Path

from pytest_ebpf.abi import MapType, ProgType, PseudoSrc
from pytest_ebpf.kernel.bpf import (
    BPF_F_RDONLY_PROG,
    Fd,
    KernelError,
    btf_load,
    map_create,
    map_freeze,
    map_info,
    map_update,
    obj_get,
    obj_pin,
    parse_verifier_log,
    possible_cpus,
    prog_info,
    prog_load,
)
from pytest_ebpf.kernel.kconfig import (
    KconfigError,
    KconfigVar,
    kconfig_data,
    kconfig_layout,
    version_code,
)
from pytest_ebpf.kernel.layout import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS
from pytest_ebpf.kernel.link import (
    CoreInputs,
    Extras,
    LinkError,
    fix_btf,
    link_program,
    read_extras,
)
from pytest_ebpf.kernel.pins import PinError, pin_name, session_pin_dir
from pytest_ebpf.kernel.results import Cause, LoadedObject, LoadResult, MapHandle
from pytest_ebpf.kernel.sys import has_admin, permission_message
from pytest_ebpf.kernel.targets import TargetError, attach_target, needs_target
from pytest_ebpf.obj.core import POISON_HELPER
from pytest_ebpf.obj.model import DataSection, EbpfObject, Map, Program

__all__ = ["load_native"]

_INSN = 8
_LD_IMM64 = 0x18

# Programs the kernel attaches through a BPF trampoline: a kernel (or a guest) without
# trampolines refuses their load with EPERM before the verifier runs, even for root.
_TRAMPOLINES = frozenset({"fentry", "fexit", "fmod_ret", "fsession", "lsm", "lsm_cgroup"})
_TRAMPOLINE_REFUSED = (
    "the kernel refused to attach a trampoline (EPERM before verification, with every "
    "capability): this kernel cannot run {label} programs here (no BPF trampolines on this "
    "machine, e.g. a guest without them); the verifier never saw the program, so this is no "
    "verdict; fix: check it on a kernel that has trampolines (a VM)"
)


# --- maps ---------------------------------------------------------------------------------------

# Maps the kernel creates without key/value types (a ring buffer's records are not values).
_NO_BTF_TYPES = frozenset({MapType.RINGBUF, MapType.USER_RINGBUF})


class _Maps:
    """Creates the object's maps on first use and remembers failures."""

    def __init__(self, loaded: LoadedObject, btf_fd: Fd | None, pin_dir: Path | None,
                 sizes: dict[str, int]) -> None:
        self.sizes = sizes
        self.loaded = loaded
        self.obj = loaded.object
        self.btf_fd = btf_fd
        self.pin_dir = pin_dir
        self.errors: dict[str, str] = {}

    def get(self, name: str) -> MapHandle:
        handle = self.loaded.maps.get(name)
        if handle is not None:
            return handle
        if name in self.errors:
            raise LinkError(self.errors[name])
        try:
            shared = self._by_name_pin(name)
            handle = shared if shared is not None else self._create(name)
        except (KernelError, LookupError, ValueError, KconfigError, PinError) as exc:
            self.errors[name] = f"cannot create map {name}: {exc}"
            raise LinkError(self.errors[name]) from exc
        self.loaded.maps[name] = handle
        if self.pin_dir is not None:
            maps_dir = self.pin_dir / "maps"
            if not maps_dir.exists():
                maps_dir.mkdir(parents=True)
                self.loaded._made_dir(maps_dir)
            path = maps_dir / pin_name(name.replace(".", "_"))
            obj_pin(handle.fd, path)
            self.loaded._pinned(path)
        return handle

    def _by_name_pin(self, name: str) -> MapHandle | None:
        """A map the object pins by name (Aya's ``PinningType::ByName``, libbpf's
        ``LIBBPF_PIN_BY_NAME``): shared by every load of the session through one pin in the
        session's private pin directory, made by the first load, reused by the others (as Aya
        and libbpf reuse a pinned map). None for other maps."""
        m = next((m for m in self.obj.maps if m.name == name), None)
        if m is None or m.pinning != 1:
            return None
        directory = session_pin_dir() / "by-name"
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / pin_name(name)
        if path.exists():
            fd = obj_get(path)
            info = map_info(fd)
            want = (m.type_id, m.key_size, m.value_size,
                    self.sizes.get(m.name, m.max_entries))
            got = (info.type, info.key_size, info.value_size, info.max_entries)
            if got != want and not (m.max_entries == 0 and got[:3] == want[:3]):
                fd.close()
                raise ValueError(f"the map pinned by name at {path} is (type, key, value, "
                                 f"entries) {got}, this object declares {want}")
            return MapHandle(name, fd, info.type, info.key_size, info.value_size,
                             info.max_entries)
        handle = self._create(name)
        obj_pin(handle.fd, path)
        return handle

    def _create(self, name: str) -> MapHandle:
        data = next((d for d in self.obj.data_sections if d.name == name), None)
        if data is not None:
            return self._data_map(data)
        return self._btf_or_legacy_map(self.obj.map(name))

    def _data_map(self, sec: DataSection) -> MapHandle:
        initial = sec.data if sec.kind not in ("bss", "kconfig") else b""
        size = sec.size
        if sec.kind == "kconfig":  # filled from the running kernel, read-only, as libbpf
            initial = kconfig_data(self.obj)
            size = len(initial)
        if size <= 0:
            raise ValueError(f"data section {sec.name} is empty")
        rodata = sec.kind in ("rodata", "kconfig")
        map_type = int(MapType.ARRAY)
        fd = map_create(
            map_type, 4, size, 1, BPF_F_RDONLY_PROG if rodata else 0,
            name=_data_map_name(self.obj, sec.name),
        )  # fmt: skip
        try:
            map_update(fd, b"\0\0\0\0", initial.ljust(size, b"\0")[:size])
            if rodata:
                map_freeze(fd)
        except BaseException:
            fd.close()
            raise
        return MapHandle(sec.name, fd, map_type, 4, size, 1)

    def _btf_or_legacy_map(self, m: Map) -> MapHandle:
        max_entries = self.sizes.get(m.name, m.max_entries)
        if m.type_id == MapType.PERF_EVENT_ARRAY and max_entries == 0:
            max_entries = possible_cpus()
        if max_entries == 0:
            raise ValueError(
                f"{m.type} map {m.name} has max_entries 0 in the object: Aya sizes such maps "
                "at load time (EbpfLoader::set_max_entries); fix: size it, "
                f"--ebpf-map-sizes={m.name}=4096 (ini ebpf_map_sizes), "
                f"ebpf_load(..., max_entries={{{m.name!r}: 4096}}) or load_all(..., "
                f"max_entries=...)" + (" (a ring buffer: a power of 2 times the page size)"
                                       if m.type_id == MapType.RINGBUF else ""))
        inner: Fd | None = None
        if m.inner is not None:
            i = m.inner
            inner = map_create(i.type_id, i.key_size, i.value_size, max(i.max_entries, 1),
                               i.flags, name=i.name)
        try:
            fd: Fd | None = None
            if (
                self.btf_fd is not None
                and m.source == "btf"
                and (m.key_type_id or m.value_type_id)
                and m.type_id not in _NO_BTF_TYPES
            ):
                try:
                    fd = map_create(
                        m.type_id, m.key_size, m.value_size, max_entries, m.flags, name=m.name,
                        btf_fd=self.btf_fd, btf_key_type_id=m.key_type_id or 0,
                        btf_value_type_id=m.value_type_id or 0, inner_map_fd=inner,
                    )  # fmt: skip
                except KernelError:
                    fd = None  # retry without BTF types
            if fd is None:
                fd = map_create(
                    m.type_id, m.key_size, m.value_size, max_entries, m.flags, name=m.name,
                    inner_map_fd=inner,
                )  # fmt: skip
        finally:
            if inner is not None:
                inner.close()
        typed = m.source == "btf" and bool(m.value_type_id)
        return MapHandle(m.name, fd, m.type_id, m.key_size, m.value_size, max_entries,
                         btf=self.obj.btf if typed else None,
                         key_type_id=m.key_type_id or 0, value_type_id=m.value_type_id or 0)


def _data_map_name(obj: EbpfObject, section: str) -> str:
    stem = Path(obj.path).stem if obj.path else "obj"
    room = max(15 - len(section), 0)
    return (stem[: min(room, 8)] + section)[:15]


# --- loading ------------------------------------------------------------------------------------


DEFAULT_LICENSE = "GPL"
"""The license of an object without a ``license`` section: aya-obj's default, so that the
kernel judges GPL-only helpers as it does when Aya loads the object."""


def _license(obj: EbpfObject) -> str:
    return obj.license if obj.license is not None else DEFAULT_LICENSE


def _kernel_version_code() -> int:
    """The running kernel's version code (kprobe programs must pass it); 0 when unreadable."""
    try:
        return version_code(os.uname().release)
    except KconfigError:
        return 0


def _failed(prog: Program, error: str, log: str = "", notes: tuple[str, ...] = (),
            cause: Cause = "loader") -> LoadResult:
    summary = parse_verifier_log(log, failed=True) if log else None
    return LoadResult(
        program=prog.name,
        section=prog.section,
        loaded=False,
        error=error,
        log=log,
        processed_insns=summary.processed_insns if summary else None,
        stack_depth=summary.stack_depth if summary else (),
        verified_insns=None,
        prog_id=None,
        loader="native",
        notes=notes,
        cause=cause,
    )


def load_native(
    loaded: LoadedObject, only: str | None, pin_dir: Path | None, log_level: int,
    max_entries: dict[str, int] | None = None,
) -> None:
    """Fill *loaded* with one result per program (all, or just *only*); *max_entries* sizes
    maps by name (checked by the caller)."""
    obj = loaded.object
    programs = [p for p in obj.programs
                if p.name == only or (only is None and p.kind.autoload)]
    if only is None:
        for prog in obj.programs:
            if not prog.kind.autoload:
                loaded._add_program(_failed(
                    prog, f"not loaded: section {prog.section!r} starts with '?', which loaders "
                          "leave out unless the program is asked for by name (ebpf_load(NAME), "
                          "load_program)", cause="optional"), None)
    if obj.byteorder != sys.byteorder:
        for prog in programs:
            loaded._add_program(
                _failed(prog, f"object is {obj.byteorder}-endian, this kernel {sys.byteorder}"),
                None,
            )
        return
    extras, common_notes = read_extras(obj)
    try:
        kconfig, kconfig_size = kconfig_layout(obj)
    except KconfigError as exc:
        kconfig, kconfig_size = {}, 0
        common_notes.append(str(exc))
    btf_fd: Fd | None = None
    if extras.btf_raw is not None and extras.image is not None:
        fixed, fix_notes = fix_btf(extras.btf_raw, extras.image, (kconfig, kconfig_size))
        common_notes += fix_notes
        try:
            btf_fd = btf_load(fixed)
            loaded._keep(btf_fd)
        except KernelError as exc:
            last = next((ln for ln in reversed(exc.log.splitlines()) if ln.strip()), str(exc))
            common_notes.append(f"the kernel refused the object's BTF ({last.strip()}): "
                                "programs loaded without BTF (no source lines in the log)")
    if pin_dir is not None and not pin_dir.exists():
        pin_dir.mkdir(parents=True)
        loaded._made_dir(pin_dir)
    maps = _Maps(loaded, btf_fd, pin_dir, max_entries or {})
    for prog in programs:
        result, fd = _load_one(prog, obj, extras if btf_fd else None, kconfig, btf_fd, maps,
                               log_level,
                               tuple(common_notes))
        loaded._add_program(result, fd)
        if fd is not None and pin_dir is not None:
            path = pin_dir / pin_name(prog.name)
            obj_pin(fd, path)
            loaded._pinned(path)


def _load_one(
    prog: Program,
    obj: EbpfObject,
    extras: Extras | None,
    kconfig: dict[str, KconfigVar],
    btf_fd: Fd | None,
    maps: _Maps,
    log_level: int,
    notes: tuple[str, ...],
) -> tuple[LoadResult, Fd | None]:
    kind = prog.kind
    prog_type = kind.prog_type_id
    attach_btf_id = 0
    if needs_target(kind):
        try:
            attach_btf_id, target = attach_target(kind)
        except TargetError as exc:
            return _failed(prog, str(exc), notes=notes), None
        notes = (*notes, f"attach target: {target} (kernel BTF type {attach_btf_id})")
    try:
        core = (CoreInputs(obj.btf, obj.btf_ext.core_relos)
                if obj.btf is not None and obj.btf_ext is not None and obj.btf_ext.core_relos
                else None)
        linked = link_program(prog, extras, kconfig, core)
        insns = bytearray(linked.insns)
        for slot, name in linked.map_slots:
            _patch_ld(insns, slot, PseudoSrc.MAP_FD, maps.get(name).fd.fileno(), 0)
        for slot, section, offset in linked.data_slots:
            _patch_ld(insns, slot, PseudoSrc.MAP_VALUE, maps.get(section).fd.fileno(), offset)
    except LinkError as exc:
        return _failed(prog, str(exc), notes=notes), None
    notes = notes + linked.notes
    attach = kind.attach_type_id or 0
    flags = (BPF_F_SLEEPABLE if kind.sleepable else 0) | (BPF_F_XDP_HAS_FRAGS if kind.frags else 0)
    kprobe = prog_type == ProgType.KPROBE
    kern_version = obj.kernel_version or (_kernel_version_code() if kprobe else 0)

    refused = ""  # the kernel's refusal when it gave no log
    # One load, and its answer is the verdict: no retry in another mode (a program the kernel
    # refuses with BTF, e.g. a global function that breaks its prototype, must not "load"
    # without it). Aya does the same: only the object's BTF itself may be dropped, when the
    # kernel refuses BTF_LOAD, and the results say so.
    try:
        out = prog_load(
            prog_type, bytes(insns), _license(obj), name=prog.name,
            expected_attach_type=attach, log_level=log_level, btf_fd=btf_fd,
            func_info=linked.func_info if btf_fd is not None else b"",
            line_info=linked.line_info if btf_fd is not None else b"",
            kern_version=kern_version, prog_flags=flags, attach_btf_id=attach_btf_id,
        )  # fmt: skip
        fd, log, err = out.fd, out.log, out.errno
    except KernelError as exc:
        fd, log, err = None, exc.log or "", exc.errno
        if not log:
            refused = str(exc)
    summary = parse_verifier_log(log, failed=fd is None)
    if fd is None:
        if err == _errno.EPERM:
            if kind.label in _TRAMPOLINES and not log.strip() and has_admin():
                return _failed(prog, _TRAMPOLINE_REFUSED.format(label=kind.label), log, notes,
                               cause="permission"), None
            return _failed(prog, permission_message(kind.prog_type), log or refused, notes,
                           cause="permission"), None
        error = summary.error_line or refused or \
            f"load failed: {os.strerror(err) if err else 'unknown'}"
        if linked.poisoned and error.endswith(f"unknown#{POISON_HELPER}"):
            # libbpf rewrites this line of the log the same way: the poisoned relocation
            error = (f"failed to resolve CO-RE relocation {'; '.join(linked.poisoned)}: the "
                     f"kernel's BTF has no such type or field (the verifier: {error})")
        return _failed(prog, error, log, notes, cause="verifier"), None
    info = prog_info(fd)
    return (
        LoadResult(
            program=prog.name,
            section=prog.section,
            loaded=True,
            error=None,
            log=log,
            processed_insns=summary.processed_insns,
            stack_depth=summary.stack_depth,
            verified_insns=info.verified_insns,
            prog_id=info.id,
            loader="native",
            notes=notes,
        ),
        fd,
    )


def _patch_ld(insns: bytearray, slot: int, src: int, imm: int, second_imm: int) -> None:
    at = slot * _INSN
    if insns[at] != _LD_IMM64:
        raise LinkError(f"relocated instruction {slot} is not an ld_imm64")
    insns[at + 1] = (src << 4) | (insns[at + 1] & 0x0F)
    struct.pack_into("<i", insns, at + 4, imm)
    struct.pack_into("<I", insns, at + 12, second_imm & 0xFFFFFFFF)
