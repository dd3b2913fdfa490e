"""The bpftool loader: ``bpftool -d prog loadall OBJECT PIN_DIR pinmaps PIN_DIR/maps`` (libbpf).

``-d`` makes libbpf print its debug output and ask the kernel for a full verifier log
(level 1|2|4) for every program, success or not; each program's log sits between
``libbpf: prog 'NAME': -- BEGIN PROG LOAD LOG --`` and ``-- END PROG LOAD LOG --``. The pinned
programs and maps are opened (``BPF_OBJ_GET``) for their fds; ids and ``verified_insns`` come
from ``BPF_OBJ_GET_INFO_BY_FD``. The pins are removed by :meth:`LoadedObject.close`.

libbpf loads an object all-or-nothing: when one program is rejected, the programs loaded before
it are unloaded again and the later ones are never tried. Their results say so.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
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
from pytest_ebpf.obj.model import EbpfObject

__all__ = ["BpftoolOutput", "load_bpftool", "parse_bpftool_output"]

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
    cmd = [tool, "-d", "prog", "loadall", str(obj.path), str(root), "pinmaps", str(maps_dir)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=_TIMEOUT, errors="replace"
    )
    out = BpftoolOutput(proc.stdout + proc.stderr)
    programs = [p for p in obj.programs if only is None or p.name == only]
    kept_map_ids: set[int] | None = None if only is None else set()

    for prog in programs:
        log = out.logs.get(prog.name, "")
        pin = root / prog.name
        if proc.returncode == 0 and pin.exists():
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
            )  # fmt: skip
            loaded._add_program(result, fd)
            continue
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
            culprit = ", ".join(out.failed) or "another program"
            error = (f"accepted by the verifier, but unloaded again: libbpf loads objects "
                     f"all-or-nothing and {culprit} was rejected")  # fmt: skip
        else:
            summary = parse_verifier_log("", failed=False)
            if out.failed:
                error = (f"not loaded: libbpf stopped when {', '.join(out.failed)} was "
                         "rejected")  # fmt: skip
            elif proc.returncode == 0:
                error = "bpftool loaded the object but did not pin this program"
            else:
                error = out.decisive_line()
                if out.open_failed:
                    cause = "open"
            log = out.text
        result = LoadResult(
            program=prog.name, section=prog.section, loaded=False, error=error, log=log,
            processed_insns=summary.processed_insns, stack_depth=summary.stack_depth,
            verified_insns=None, prog_id=None, loader="bpftool", cause=cause,
        )  # fmt: skip
        loaded._add_program(result, None)

    if proc.returncode != 0 or not maps_dir.is_dir():
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
