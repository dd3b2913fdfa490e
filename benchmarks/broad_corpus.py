"""Build a broad corpus of third-party eBPF objects, for ``bench_recall.py --objects DIR``.

The suite's own corpus (``tests/c``) was written alongside the rules; this one was not. It takes
checkouts of public repositories (none of them is vendored here, and nothing built goes into the
repository) and builds, from each:

* C sources: the kernel's BPF selftests (``tools/testing/selftests/bpf/progs/*.c``) and, anywhere
  in the tree, every ``*.bpf.c`` (bcc's ``libbpf-tools``, libbpf-bootstrap's ``examples/c``,
  cloudflare/ebpf_exporter's ``examples``, eunomia-bpf/bpf-developer-tutorial...) and every
  ``*_kern.c`` (xdp-project/xdp-tutorial, xdp-project/bpf-examples...). Each is compiled with
  ``clang-19 -target bpf -O2 -g -D__TARGET_ARCH_x86``, with a ``vmlinux.h`` dumped from this
  machine's kernel (``bpftool btf dump file /sys/kernel/btf/vmlinux format c``) and libbpf's
  headers (``bpf/bpf_helpers.h``...) from a libbpf checkout's ``src/`` (``--libbpf``, or a
  checkout among the sources) or else the system's ``/usr/include/bpf`` (Debian: libbpf-dev).
  The include path is: those two (with an empty ``gnu/stubs-32.h``), the source's directory
  and its parent, the repository's ``include``/``headers`` directories, the system's headers.
  A source that fails to compile is skipped and counted (``-v`` names each, with clang's first
  error).
* Prebuilt objects: every ``*.o`` / ``*.elf`` that is a little-endian eBPF ELF file, copied
  (cilium/ebpf's ``testdata/*-el.elf`` and ``examples/*/bpf_bpfel.o``, vbpf/ebpf-samples' objects
  of Linux samples, Cilium, Falco, OVS, Suricata...).

Get the sources (any subset; shallow clones are enough)::

    mkdir -p ~/src && cd ~/src
    git clone --depth 1 https://github.com/torvalds/linux          # selftests (large)
    git clone --depth 1 https://github.com/iovisor/bcc
    git clone --depth 1 https://github.com/libbpf/libbpf-bootstrap
    git clone --depth 1 https://github.com/libbpf/libbpf           # headers only
    git clone --depth 1 https://github.com/cilium/ebpf
    git clone --depth 1 https://github.com/cloudflare/ebpf_exporter
    git clone --depth 1 https://github.com/eunomia-bpf/bpf-developer-tutorial
    git clone --depth 1 https://github.com/xdp-project/xdp-tutorial
    git clone --depth 1 https://github.com/xdp-project/bpf-examples
    git clone --depth 1 https://github.com/vbpf/ebpf-samples       # prebuilt objects

Build (the output directory is emptied of earlier objects first)::

    python benchmarks/broad_corpus.py --src ~/src            # every checkout under ~/src
    python benchmarks/broad_corpus.py ~/src/bcc ~/src/ebpf   # or name them
    python benchmarks/broad_corpus.py --src ~/src --every 4  # every 4th source of a checkout

then ``sudo .venv/bin/python benchmarks/bench_recall.py --objects
~/.cache/pytest-ebpf/broad-corpus``.

Deterministic: sources are taken in sorted order (``--every K`` keeps the 1st, (K+1)th... of
each checkout's sorted list); objects are named ``<checkout>/<path with '/' as '__', .c as .o>``;
``MANIFEST.txt`` lists every object with its source and the checkout's commit.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OUT = Path.home() / ".cache" / "pytest-ebpf" / "broad-corpus"
CLANG = "clang-19"
CFLAGS = ["-target", "bpf", "-O2", "-g", "-D__TARGET_ARCH_x86", "-w"]
SELFTESTS = "tools/testing/selftests/bpf/progs"
SYSTEM_INCLUDES = [Path("/usr/include/x86_64-linux-gnu"), Path("/usr/include")]
SKIP_DIRS = {".git", "node_modules", "vendor", "third_party"}


@dataclass(frozen=True)
class Source:
    checkout: Path
    path: Path

    @property
    def rel(self) -> str:
        return self.path.relative_to(self.checkout).as_posix()

    def out_name(self, compiled: bool) -> str:
        """``<checkout>/<path, '/' as '__'>``, ``.c`` replaced by ``.o`` when compiled."""
        rel = self.rel.replace("/", "__")
        return f"{self.checkout.name}/{rel[:-2] + '.o' if compiled else rel}"


def _walk(root: Path) -> Iterator[Path]:
    """Every file under *root*, sorted, without hidden (``.git``, ``.output``: a build's own
    objects), vendored or third-party trees."""
    for entry in sorted(root.iterdir()):
        if entry.is_symlink():
            continue
        if entry.is_dir():
            if entry.name not in SKIP_DIRS and not entry.name.startswith("."):
                yield from _walk(entry)
        elif entry.is_file():
            yield entry


def c_sources(checkout: Path) -> list[Path]:
    """The eBPF C sources of one checkout, sorted by path."""
    found: set[Path] = set()
    progs = checkout / SELFTESTS
    if progs.is_dir():
        found.update(p for p in progs.glob("*.c") if p.is_file())
    for p in _walk(checkout):
        if p.name.endswith(".bpf.c") or p.name.endswith("_kern.c"):
            found.add(p)
    return sorted(found, key=lambda p: p.relative_to(checkout).as_posix())


def is_bpf_el(path: Path) -> bool:
    """An ELF file for eBPF (``e_machine`` 247), little-endian."""
    with path.open("rb") as f:
        head = f.read(20)
    return (len(head) == 20 and head[:4] == b"\x7fELF" and head[5] == 1
            and int.from_bytes(head[18:20], "little") == 247)


def prebuilt(checkout: Path) -> list[Path]:
    """Prebuilt little-endian eBPF objects (``*.o``, ``*.elf``), sorted by path."""
    return sorted((p for p in _walk(checkout) if p.name.endswith((".o", ".elf")) and is_bpf_el(p)),
                  key=lambda p: p.relative_to(checkout).as_posix())


def libbpf_headers(explicit: Path | None, checkouts: list[Path]) -> Path:
    """A directory holding ``bpf_helpers.h`` and friends."""
    candidates = [explicit / "src", explicit] if explicit is not None else []
    candidates += [c / "src" for c in checkouts] + [Path("/usr/include/bpf")]
    for cand in candidates:
        if (cand / "bpf_helpers.h").is_file() and (cand / "bpf_helper_defs.h").is_file():
            return cand
    sys.exit("no libbpf headers: give --libbpf CHECKOUT (github.com/libbpf/libbpf) or install "
             "libbpf-dev (/usr/include/bpf)")


def prepare_includes(out: Path, headers: Path) -> Path:
    """``out/include``: this kernel's ``vmlinux.h`` and ``bpf/*.h`` from *headers*."""
    inc = out / "include"
    if inc.exists():
        shutil.rmtree(inc)
    (inc / "bpf").mkdir(parents=True)
    for h in sorted(headers.glob("*.h")):
        shutil.copy2(h, inc / "bpf" / h.name)
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        sys.exit("bpftool is not on PATH (needed to dump this kernel's vmlinux.h)")
    dump = subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format",
                           "c"], check=True, capture_output=True, text=True)
    (inc / "vmlinux.h").write_text(dump.stdout)
    # glibc's <gnu/stubs.h> wants the 32-bit variant for a target that is not x86_64 (bpf);
    # sources that pull in libc headers (xdp-tutorial) compile with an empty one.
    (inc / "gnu").mkdir()
    (inc / "gnu" / "stubs-32.h").write_text("")
    return inc


def include_flags(src: Source, inc: Path) -> list[str]:
    dirs = [inc, src.path.parent, src.path.parent.parent]
    dirs += [src.checkout / d for d in ("include", "headers")]
    if src.rel.startswith(SELFTESTS):  # the selftests include <bpf_misc.h>, "../test_*.h"...
        dirs.append(src.checkout / "tools" / "testing" / "selftests" / "bpf")
    dirs += SYSTEM_INCLUDES
    out: list[str] = []
    for d in dirs:
        if d.is_dir() and str(d) not in out:
            out += ["-I", str(d)]
    return out


def compile_one(clang: str, src: Source, inc: Path, objdir: Path) -> tuple[Source, str | None]:
    """Compile *src*; the error's first line when clang fails (or times out)."""
    obj = objdir / src.out_name(True)
    obj.parent.mkdir(parents=True, exist_ok=True)
    cmd = [clang, *CFLAGS, *include_flags(src, inc), "-c", str(src.path), "-o", str(obj)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return src, "clang timed out (120 s)"
    if res.returncode != 0:
        obj.unlink(missing_ok=True)
        first = next((ln for ln in res.stderr.splitlines() if "error" in ln), "")
        return src, first.strip() or f"clang exited {res.returncode}"
    return src, None


def commit_of(checkout: Path) -> str:
    try:
        res = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("checkouts", nargs="*", type=Path, help="repository checkouts")
    ap.add_argument("--src", type=Path, help="a directory whose subdirectories are checkouts")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    ap.add_argument("--libbpf", type=Path, help="a libbpf checkout (for its headers)")
    ap.add_argument("--every", type=int, default=1, metavar="K",
                    help="keep every K-th C source of each checkout (sorted), default 1: all")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="parallel compiles (default 2)")
    ap.add_argument("-v", "--verbose", action="store_true", help="name each failed source")
    args = ap.parse_args(argv)
    checkouts = [c.resolve() for c in args.checkouts]
    if args.src is not None:
        checkouts += sorted(d.resolve() for d in args.src.iterdir() if d.is_dir())
    checkouts = list(dict.fromkeys(checkouts))
    if not checkouts:
        ap.error("no checkouts: name them, or give --src DIR")
    if args.every < 1:
        ap.error("--every must be at least 1")
    if len({c.name for c in checkouts}) != len(checkouts):
        ap.error("two checkouts have the same directory name")
    clang = shutil.which(CLANG)
    if clang is None:
        sys.exit(f"{CLANG} is not on PATH")
    out: Path = args.out.expanduser().resolve()
    objdir = out / "objects"
    if objdir.exists():
        shutil.rmtree(objdir)
    objdir.mkdir(parents=True)
    inc = prepare_includes(out, libbpf_headers(args.libbpf, checkouts))

    manifest: list[str] = []
    total_built = total_failed = total_copied = 0
    for checkout in checkouts:
        commit = commit_of(checkout)
        sources = [Source(checkout, p) for p in c_sources(checkout)][::args.every]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda s: compile_one(clang, s, inc, objdir), sources))
        failed = [(s, err) for s, err in results if err is not None]
        for s, err in results:
            if err is None:
                manifest.append(f"{s.out_name(True)}\t{checkout.name}@{commit}:{s.rel}")
        copied = 0
        for p in prebuilt(checkout):
            s = Source(checkout, p)
            dest = objdir / s.out_name(False)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest)
            manifest.append(f"{s.out_name(False)}\t{checkout.name}@{commit}:{s.rel} (prebuilt)")
            copied += 1
        built = len(sources) - len(failed)
        print(f"{checkout.name}: {built} compiled, {len(failed)} failed to compile (skipped), "
              f"{copied} prebuilt copied")
        if args.verbose:
            for s, err in failed:
                print(f"  skipped {s.rel}: {err}")
        total_built += built
        total_failed += len(failed)
        total_copied += copied
    (out / "MANIFEST.txt").write_text("".join(f"{line}\n" for line in sorted(manifest)))
    print(f"total: {total_built + total_copied} objects in {objdir} ({total_built} compiled, "
          f"{total_copied} prebuilt); {total_failed} sources failed to compile and were skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
