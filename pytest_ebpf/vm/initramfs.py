"""The guest's initramfs: a static busybox, the 9p modules of the kernel, and ``/init``.

The archive is the kernel's "newc" cpio format (``Documentation/driver-api/early-userspace``),
gzip-compressed; it is small (about 1.5 MB) and built per kernel in a second, so it is not
cached. Writing it here instead of running ``cpio`` keeps one host tool fewer to install; the
format is a fixed table of ASCII-hex fields.

``/init`` loads the modules, mounts the host's root (read-only 9p, tag :data:`ROOT_TAG`) and the
session's job directory (read-write 9p, tag :data:`JOB_TAG`) at its own path inside it, mounts
proc, sysfs, devtmpfs, bpffs, tracefs and tmpfs there, and runs the job (``python -m
pytest_ebpf.vm.guest JOB``) chrooted into the host's root as the guest's root user. It writes
one status line per step to the second serial port (the result channel); the host reads
``EXIT <rc>`` or the step that failed.
"""

from __future__ import annotations

import gzip
import io
import stat
from dataclasses import dataclass
from pathlib import Path

from pytest_ebpf.errors import EbpfError
from pytest_ebpf.vm.guest import PYTHON

ROOT_TAG = "hostroot"
JOB_TAG = "ebpfjob"
NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"

#: The newc header: the magic, then these fields as 8 ASCII hex digits each, in this order.
NEWC_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devmajor",
               "devminor", "rdevmajor", "rdevminor", "namesize", "check")


WITHOUT_VMS = ("name only host (in pytest, --ebpf-vm=no judges the other kernels by their "
               "profiles only)")
"""The way out without VMs, for the command (``verify --kernel``) and the plugin alike."""


class InitramfsError(EbpfError):
    """A part of the guest's initramfs is missing or unusable (names the part and the fix)."""


@dataclass(frozen=True)
class Entry:
    name: str
    """The path inside the archive, without a leading slash."""
    mode: int
    data: bytes = b""


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def newc(entries: list[Entry]) -> bytes:
    """A newc cpio archive of *entries* (directories before what they contain)."""
    out = io.BytesIO()
    for ino, e in enumerate([*entries, Entry(TRAILER, 0)], start=1):
        name = e.name.encode() + b"\0"
        values = {"ino": ino if e.name != TRAILER else 0, "mode": e.mode, "uid": 0, "gid": 0,
                  "nlink": 2 if stat.S_ISDIR(e.mode) else 1, "mtime": 0,
                  "filesize": len(e.data), "devmajor": 0, "devminor": 0, "rdevmajor": 0,
                  "rdevminor": 0, "namesize": len(name), "check": 0}
        header = NEWC_MAGIC + b"".join(b"%08X" % values[f] for f in NEWC_FIELDS)
        out.write(header + name + _pad4(len(header) + len(name)))
        out.write(e.data + _pad4(len(e.data)))
    return out.getvalue()


def _is_static(path: Path) -> bool:
    """An ELF executable without a program interpreter (``PT_INTERP``) is statically linked."""
    import struct

    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit ELF only (x86-64 hosts)
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    pt_interp = 3
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != pt_interp
               for i in range(phnum))


def find_busybox() -> Path:
    """A statically linked busybox on this machine (the guest's only program before the host's
    root is mounted)."""
    import shutil

    for candidate in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if candidate and Path(candidate).is_file():
            path = Path(candidate).resolve()
            if _is_static(path):
                return path
            raise InitramfsError(f"{path} is dynamically linked and cannot run in the VM's "
                                 "initramfs; fix: install busybox-static (apt-get install "
                                 f"busybox-static), or {WITHOUT_VMS}")
    raise InitramfsError("busybox is not installed, and the VMs need it to start; fix: apt-get "
                         f"install busybox-static, or {WITHOUT_VMS}")


def init_script(modules: list[str]) -> str:
    """``/init``: every step reports to the result channel; a failed step ends the VM."""
    insmods = "\n".join(f"step 'loading module {m}' insmod /modules/{m}" for m in modules)
    return f"""#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s /bin
export PATH=/bin
exec </dev/console >/dev/console 2>&1
OUT=/dev/console
[ -e /dev/ttyS1 ] && stty -F /dev/ttyS1 raw -echo && OUT=/dev/ttyS1
say() {{ echo "$*" >$OUT; }}
step() {{ what="$1"; shift; "$@" || {{ say "FAILED $what"; poweroff -f; }}; }}
say "BOOTED $(uname -r)"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
{insmods}
for word in $(cat /proc/cmdline); do
  case "$word" in pytest_ebpf.job=*) JOB="${{word#pytest_ebpf.job=}}";; esac
done
[ -n "$JOB" ] || {{ say "FAILED no pytest_ebpf.job= on the kernel command line"; poweroff -f; }}
R=/host
step 'mounting the host root over 9p' mount -t 9p -o \
  trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 {ROOT_TAG} $R
step 'mounting proc' mount -t proc proc $R/proc
step 'mounting sysfs' mount -t sysfs sysfs $R/sys
step 'mounting devtmpfs' mount -t devtmpfs devtmpfs $R/dev
mount -t tmpfs tmpfs $R/dev/shm 2>/dev/null
step 'mounting /run' mount -t tmpfs tmpfs $R/run
step 'mounting bpffs' mount -t bpf bpf $R/sys/fs/bpf
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs $R/sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup 2>/dev/null
step 'mounting the job directory over 9p' mount -t 9p -o \
  trans=virtio,version=9p2000.L,rw,cache=none,msize=512000 {JOB_TAG} "$R$JOB"
ip link set lo up 2>/dev/null
say "READY $(cut -d' ' -f1 /proc/uptime)"
chroot $R "$(cat "$R$JOB/{PYTHON}")" -m pytest_ebpf.vm.guest "$JOB"
say "EXIT $? $(cut -d' ' -f1 /proc/uptime)"
sync
poweroff -f
"""


def build_initramfs(busybox: Path, modules: tuple[Path, ...]) -> bytes:
    """The gzip-compressed initramfs for a kernel whose 9p needs *modules* (in load order)."""
    names = [m.name for m in modules]
    entries = [Entry(d, stat.S_IFDIR | 0o755)
               for d in ("bin", "dev", "proc", "sys", "host", "modules")]
    entries.append(Entry("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes()))
    entries += [Entry(f"modules/{m.name}", stat.S_IFREG | 0o644, m.read_bytes())
                for m in modules]
    entries.append(Entry("init", stat.S_IFREG | 0o755, init_script(names).encode()))
    return gzip.compress(newc(entries), compresslevel=1, mtime=0)
