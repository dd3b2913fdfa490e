"""The bpftool loader: ``bpftool -d prog loadall OBJECT PIN_DIR pinmaps PIN_DIR/maps`` (libbpf).

``-d`` makes libbpf print its debug output and ask the kernel for a full verifier log
(level 1|2|4) for every program, success or not; each program's log sits between
``libbpf: prog 'NAME': -- BEGIN PROG LOAD LOG --`` and ``-- END PROG LOAD LOG --``. The pinned
programs and maps are opened (``BPF_OBJ_GET``) for their fds; ids and ``verified_insns`` come
from ``BPF_OBJ_GET_INFO_BY_FD``. The pins are removed by :meth:`LoadedObject.close`.

libbpf loads an object all-or-nothing: when one program is rejected, the programs loaded before
it are unloaded again and the later ones are never tried. So each program gets its own verdict,
as veristat gives it: after a failed load, the programs libbpf names as failed keep that load's
result (the kernel's answer for them, with its log), and bpftool runs again on a temporary copy
of the object in which they are hidden (:func:`hide_programs`), until a load succeeds or fails
without naming a new program. The last load holds every program the kernel accepts, sharing one
set of maps as usual.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Collection
from pathlib import Path

from pytest_ebpf.kernel.bpf import KernelError, map_info, obj_get, parse_verifier_log, prog_info
from pytest_ebpf.kernel.pins import new_load_dir
from pytest_ebpf.kernel.results import (
    Cause,
    LoadedObject,
    LoaderError,
    LoadResult,
    MapHandle,
)
from pytest_ebpf.kernel.sys import permission_message
from pytest_ebpf.obj.model import EbpfObject, Program

__all__ = ["BpftoolOutput", "hide_programs", "load_bpftool", "parse_bpftool_output"]

_BEGIN = re.compile(r"^libbpf: prog '(?P<name>[^']+)': -- BEGIN PROG LOAD LOG --\s*$")
_END = "-- END PROG LOAD LOG --"
_FAILED = re.compile(r"^libbpf: prog '(?P<name>[^']+)': failed to load: (?P<err>-?\d+)")
_GENERIC = re.compile(r"failed to (load|open) (BPF )?object|^libbpf: prog '[^']+': (pinned|-- )")

_TIMEOUT = 300


class BpftoolOutput:
    """What ``bpftool -d prog loadall`` printed, split up."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.logs: dict[str, str] = {}
        self.failed: dict[str, int] = {}
        self.libbpf_lines: list[str] = []
        self.error_lines: list[str] = []
        current: str | None = None
        buf: list[str] = []
        for line in text.splitlines():
            if current is not None:
                if line.strip() == _END:
                    self.logs[current] = "\n".join(buf) + "\n"
                    current, buf = None, []
                else:
                    buf.append(line)
                continue
            m = _BEGIN.match(line)
            if m:
                current, buf = m.group("name"), []
                continue
            m = _FAILED.match(line)
            if m:
                self.failed[m.group("name")] = int(m.group("err"))
            if line.startswith("libbpf: "):
                self.libbpf_lines.append(line)
            elif line.startswith("Error: "):
                self.error_lines.append(line)
        if current is not None:  # truncated output
            self.logs[current] = "\n".join(buf) + "\n"

    @property
    def open_failed(self) -> bool:
        """bpftool said libbpf could not open the object (before any load)."""
        return any("failed to open object" in line for line in self.error_lines)

    def decisive_line(self) -> str:
        """The libbpf line that explains a failure before any program was loaded."""
        for line in reversed(self.libbpf_lines):
            if not _GENERIC.search(line) and not _FAILED.match(line):
                return line
        if self.error_lines:
            return self.error_lines[-1]
        return "bpftool failed without a message"



def bpftool_path() -> str | None:
    """The bpftool executable (``$PATH``, then /usr/sbin and /sbin), or None."""
    found = shutil.which("bpftool")
    if found:
        return found
    for candidate in ("/usr/sbin/bpftool", "/sbin/bpftool", "/usr/local/sbin/bpftool"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None

def parse_bpftool_output(text: str) -> BpftoolOutput:
    return BpftoolOutput(text)


def _data_section_for(obj: EbpfObject, kernel_name: str) -> str | None:
    """libbpf names global-data maps ``<object prefix><section>`` (e.g. ``ld_globa.rodata``)."""
    best: str | None = None
    for d in obj.data_sections:
        if kernel_name.endswith(d.name) and (best is None or len(d.name) > len(best)):
            best = d.name
    return best


# --- hiding programs from libbpf: a copy of the object -------------------------------------------

# Byte layout (ELF64, either byte order; the gABI's Elf64_Ehdr, Elf64_Shdr and Elf64_Sym).
_E_SHOFF = 40  # Elf64_Ehdr.e_shoff: u64
_E_SHENTSIZE = 58  # Elf64_Ehdr.e_shentsize: u16
_SH_OFFSET = 24  # Elf64_Shdr.sh_offset: u64
_SYM_SIZE = 24  # sizeof(Elf64_Sym): st_name u32, st_info u8, st_other u8, st_shndx u16, ...
_ST_INFO = 4  # Elf64_Sym.st_info: bind << 4 | type
_STT_NOTYPE, _STT_FUNC = 0, 2


def hide_programs(obj: EbpfObject, names: Collection[str]) -> bytes:
    """The bytes of *obj*'s file with the programs *names* hidden from libbpf: the ``st_info``
    of each one's ``FUNC`` symbol says ``NOTYPE`` instead; not one other byte changes.

    libbpf makes a program of every ``FUNC`` symbol in an executable section and nothing else;
    code, relocations and ``.BTF.ext`` records of a range without one are skipped, as for a weak
    function that another object overrode ("probably overridden weak function, skipping"). So
    the copy loads exactly the other programs, with the same maps.

    Why not libbpf's own ``SEC("?name")`` (a section whose name starts with ``?`` is not
    autoloaded), by a rewritten section header string table: it works on whole sections, and a
    section often holds several programs (every ``SEC("xdp")`` of a C file); and ``bpftool prog
    loadall`` pins every program of the object, so with libbpf 1.1 a program that was not
    loaded fails the whole load ("can't pin program that wasn't loaded"). A hidden program is
    not a program for libbpf, so nothing tries to pin it.

    :class:`LoaderError` when the file no longer matches *obj* (changed since it was read)."""
    if obj.path is None or obj.image is None:
        raise LoaderError("cannot hide programs: the object model has no file or ELF image")
    label = os.fspath(obj.path)
    data = bytearray(Path(obj.path).read_bytes())
    order = obj.image.byteorder

    def number(at: int, size: int) -> int:
        if at < 0 or at + size > len(data):
            raise LoaderError(f"{label}: changed on disk since it was read (truncated); "
                              "fix: run again")  # fmt: skip
        return int.from_bytes(data[at : at + size], order)

    symtab = next((sec for sec in obj.image.sections if sec.type == "symtab"), None)
    if data[:4] != b"\x7fELF" or data[4] != 2 or symtab is None:
        raise LoaderError(f"{label}: changed on disk since it was read (no ELF64 symbol table); "
                          "fix: run again")  # fmt: skip
    header = number(_E_SHOFF, 8) + symtab.index * number(_E_SHENTSIZE, 2)
    symbols_at = number(header + _SH_OFFSET, 8)
    sections = {sec.index: sec.name for sec in obj.image.sections}
    for name in names:
        prog = obj.program(name)
        sym = next(
            (s for s in obj.image.symbols
             if s.type == "func" and s.name == prog.name and s.section_index is not None
             and sections.get(s.section_index) == prog.section),
            None,
        )  # fmt: skip
        at = symbols_at + sym.index * _SYM_SIZE + _ST_INFO if sym is not None else -1
        if sym is None or number(at, 1) & 0xF != _STT_FUNC:
            raise LoaderError(f"{label}: no FUNC symbol for program {name!r} in the file (changed "
                              "on disk since it was read?); fix: run again")  # fmt: skip
        data[at] = (data[at] & 0xF0) | _STT_NOTYPE
    return bytes(data)


# --- loading ------------------------------------------------------------------------------------


def _run_bpftool(
    tool: str, obj: EbpfObject, hidden: Collection[str], root: Path, maps_dir: Path
) -> tuple[int, BpftoolOutput]:
    """One ``bpftool -d prog loadall``: of the object itself, or of a copy with *hidden*
    programs hidden, in a private temporary directory under the same file name (libbpf names
    global-data maps after it)."""
    assert obj.path is not None
    with tempfile.TemporaryDirectory(prefix="pytest-ebpf-bpftool-") as tmp:
        path = Path(obj.path)
        if hidden:
            copy = Path(tmp) / path.name
            copy.write_bytes(hide_programs(obj, hidden))
            path = copy
        cmd = [tool, "-d", "prog", "loadall", str(path), str(root), "pinmaps", str(maps_dir)]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=_TIMEOUT, errors="replace"
        )
    return proc.returncode, BpftoolOutput(proc.stdout + proc.stderr)


def _not_loaded(prog: Program, out: BpftoolOutput, returncode: int) -> LoadResult:
    """The result of a program that *out*'s load did not leave loaded."""
    log = out.logs.get(prog.name, "")
    cause: Cause = "loader"
    if prog.name in out.failed and abs(out.failed[prog.name]) == errno.EPERM:
        summary = parse_verifier_log("", failed=False)
        error, cause = permission_message(prog.kind.prog_type), "permission"
    elif prog.name in out.failed:
        summary = parse_verifier_log(log, failed=True)
        error = summary.error_line or f"libbpf: failed to load ({out.failed[prog.name]})"
        cause = "verifier"
    elif log:
        summary = parse_verifier_log(log, failed=False)
        culprit = ", ".join(out.failed) or out.decisive_line()
        error = (f"accepted by the verifier, but unloaded again: libbpf loads objects "
                 f"all-or-nothing and this load failed ({culprit})")  # fmt: skip
    else:
        summary = parse_verifier_log("", failed=False)
        if out.failed:
            error = (f"not loaded: libbpf stopped when {', '.join(out.failed)} was "
                     "rejected")  # fmt: skip
        elif returncode == 0:
            error = "bpftool loaded the object but did not pin this program"
        else:
            error = out.decisive_line()
            if out.open_failed:
                cause = "open"
        log = out.text
    return LoadResult(
        program=prog.name, section=prog.section, loaded=False, error=error, log=log,
        processed_insns=summary.processed_insns, stack_depth=summary.stack_depth,
        verified_insns=None, prog_id=None, loader="bpftool", cause=cause,
    )  # fmt: skip


def load_bpftool(loaded: LoadedObject, only: str | None, pin_dir: Path | None) -> None:
    obj = loaded.object
    tool = bpftool_path()
    if tool is None:
        raise LoaderError("bpftool is not installed")
    if obj.path is None:
        raise LoaderError("the bpftool loader needs an object file (this object has no path)")
    if pin_dir is None:
        load_dir = new_load_dir()
        loaded._made_dir(load_dir)
        root = load_dir / "pins"
    else:
        root = pin_dir
        if not root.parent.exists():
            root.parent.mkdir(parents=True)
            loaded._made_dir(root.parent)
    if not root.exists():
        loaded._made_dir(root)  # bpftool creates it; we remove it on close
    maps_dir = root / "maps"
    # Load, leave out what failed, load again: one verdict per program (see the module doc).
    left_out: dict[str, LoadResult] = {}
    while True:
        returncode, out = _run_bpftool(tool, obj, left_out, root, maps_dir)
        if returncode == 0:
            break
        failed = [p for p in obj.programs if p.name in out.failed and p.name not in left_out]
        for prog in failed:
            left_out[prog.name] = _not_loaded(prog, out, returncode)
        if (not failed or len(left_out) == len(obj.programs) or obj.image is None
                or only in left_out):  # load_program: the one program wanted failed
            break
    hidden_note = (
        (f"loaded from a copy of the object without {', '.join(left_out)} (not loadable): "
         "libbpf loads an object all-or-nothing",)
        if left_out else ()
    )  # fmt: skip
    programs = [p for p in obj.programs if only is None or p.name == only]
    kept_map_ids: set[int] | None = None if only is None else set()

    for prog in programs:
        if prog.name in left_out:
            loaded._add_program(left_out[prog.name], None)
            continue
        log = out.logs.get(prog.name, "")
        pin = root / prog.name
        if returncode == 0 and pin.exists():
            loaded._pinned(pin)
            fd = obj_get(pin)
            info = prog_info(fd)
            if kept_map_ids is not None:
                kept_map_ids.update(info.map_ids)
            summary = parse_verifier_log(log, failed=False)
            result = LoadResult(
                program=prog.name, section=prog.section, loaded=True, error=None, log=log,
                processed_insns=summary.processed_insns, stack_depth=summary.stack_depth,
                verified_insns=info.verified_insns, prog_id=info.id, loader="bpftool",
                notes=hidden_note,
            )  # fmt: skip
            loaded._add_program(result, fd)
            continue
        loaded._add_program(_not_loaded(prog, out, returncode), None)

    if returncode != 0 or not maps_dir.is_dir():
        return
    # Unwanted programs (load_program): drop their pins now.
    for path in root.iterdir():
        if path.is_file() and path.name not in loaded.results:
            path.unlink()
    loaded._made_dir(maps_dir)
    names = {m.name for m in obj.maps}
    for path in sorted(maps_dir.iterdir()):
        try:
            fd = obj_get(path)
        except KernelError:
            continue
        minfo = map_info(fd)
        if kept_map_ids is not None and minfo.id not in kept_map_ids:
            fd.close()
            path.unlink()
            continue
        loaded._pinned(path)
        name = path.name if path.name in names else _data_section_for(obj, minfo.name)
        name = name or path.name
        loaded.maps[name] = MapHandle(
            name, fd, minfo.type, minfo.key_size, minfo.value_size, minfo.max_entries
        )
