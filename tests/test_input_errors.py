"""Hostile paths: special files and huge files end in one ``ObjectError``, never a hang or a read.

FIFOs, devices, directories and files over the size bound are refused before anything is read
(``load_object``), by ``pytest-ebpf inspect`` and ``verify`` (exit status 2, one line), and the
bound can be set by parameter, by ``--max-object-size`` and by ``PYTEST_EBPF_MAX_OBJECT_SIZE``.
A hang fails its test: those cases run in a subprocess with a timeout.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.file import (
    DEFAULT_MAX_OBJECT_SIZE,
    MAX_OBJECT_SIZE_ENV,
    max_object_size,
    parse_size,
)
from pytest_ebpf.obj.load import load_object

C_DIR = Path(__file__).parent / "c"
ROOT = Path(__file__).resolve().parent.parent
HANG_TIMEOUT = 30  # seconds; a refusal takes milliseconds, a hang takes forever


@pytest.fixture(scope="module")
def small_obj(compile_c) -> Path:  # type: ignore[no-untyped-def]
    path: Path = compile_c((C_DIR / "obj_multi.c").read_text(), "obj_multi")
    return path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``pytest-ebpf ARGS`` in a subprocess; a hang fails the test (TimeoutExpired)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_ebpf.cli.main", *args], capture_output=True, text=True,
        check=False, cwd=ROOT, timeout=HANG_TIMEOUT, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _load_in_subprocess(path: Path) -> str:
    """``load_object(path)`` in a child process: the ObjectError line, or a failure."""
    code = (
        "import sys\n"
        "from pytest_ebpf.errors import ObjectError\n"
        "from pytest_ebpf.obj.load import load_object\n"
        "try:\n"
        "    load_object(sys.argv[1])\n"
        "except ObjectError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(0)\n"
        "sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=HANG_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def _refused(proc: subprocess.CompletedProcess[str], path: Path, reason: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {path}: ") and reason in proc.stderr, proc.stderr


# --- special files ------------------------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "prog.o"
    os.mkfifo(path)
    return path


def test_fifo_does_not_hang_load_object(fifo: Path) -> None:
    assert _load_in_subprocess(fifo) == f"{fifo}: a FIFO (named pipe), not an eBPF object file"


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_fifo_does_not_hang_the_commands(fifo: Path, command: str) -> None:
    _refused(_cli(command, str(fifo)), fifo, "a FIFO (named pipe)")


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_dev_zero_is_not_read(command: str) -> None:
    zero = Path("/dev/zero")
    _refused(_cli(command, str(zero)), zero, "a character device, not an eBPF object file")


def test_character_and_block_devices(tmp_path: Path) -> None:
    with pytest.raises(ObjectError, match=r"^/dev/null: a character device") as info:
        load_object("/dev/null")
    assert info.value.path == "/dev/null"
    block = tmp_path / "loop.o"
    try:
        os.mknod(block, 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    except PermissionError:
        pytest.fail("creating a block device node needs root (CAP_MKNOD)", pytrace=False)
    assert _load_in_subprocess(block) == f"{block}: a block device, not an eBPF object file"


def _child(code: str, *args: str) -> str:
    """Run *code* in a child Python (a hang fails the test); its stdout."""
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=HANG_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


_SWAP = """
import os, sys
from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.load import load_object
real_stat, regular = os.stat, sys.argv[2]
# the path passes the checks as {what}, then turns out to be {really}
for name in "{patched}".split():
    setattr(os, name, lambda *a, **k: real_stat(regular))
try:
    load_object(sys.argv[1], max_size=int(sys.argv[3]))
except ObjectError as exc:
    print(exc.reason)
"""


def test_fifo_swapped_in_after_the_stat_does_not_block(
    fifo: Path, small_obj: Path
) -> None:
    """The path passes ``stat`` as a regular file; ``open`` must not wait for a FIFO writer
    (O_NONBLOCK) and ``fstat`` on the opened descriptor must catch it."""
    code = _SWAP.format(what="a regular file", really="a FIFO", patched="stat")
    assert _child(code, str(fifo), str(small_obj), "1000000") == (
        "a FIFO (named pipe), not an eBPF object file"
    )


def test_file_growing_past_the_bound_while_read(tmp_path: Path, small_obj: Path) -> None:
    """``fstat`` says small, the file holds more: reading stops one byte past the bound."""
    big = tmp_path / "big.o"
    big.write_bytes(small_obj.read_bytes() * 3)
    code = _SWAP.format(what="small", really="bigger", patched="stat fstat")
    size = small_obj.stat().st_size
    assert _child(code, str(big), str(small_obj), str(size)) == (
        f"file is {size + 1} bytes, over the object size limit of {size} bytes (raise it with "
        f"--max-object-size or {MAX_OBJECT_SIZE_ENV})"
    )


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ObjectError) as info:
        load_object(tmp_path)
    assert str(info.value) == f"{tmp_path}: a directory, not an eBPF object file"
    _refused(_cli("inspect", str(tmp_path)), tmp_path, "a directory")


def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.o"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(ObjectError, match="a socket, not an eBPF object file"):
            load_object(path)


def test_symlink_to_an_object_is_followed(tmp_path: Path, small_obj: Path) -> None:
    link = tmp_path / "link.o"
    link.symlink_to(small_obj)
    assert load_object(link).programs


def test_unreadable_file(tmp_path: Path, small_obj: Path) -> None:
    dangling = tmp_path / "dangling.o"
    dangling.symlink_to(tmp_path / "nowhere.o")
    with pytest.raises(ObjectError, match="cannot read file: No such file or directory"):
        load_object(dangling)


# --- the size bound -----------------------------------------------------------------------------


@pytest.fixture
def sparse_8g(tmp_path: Path) -> Iterator[Path]:
    """An 8 GiB file that holds no data blocks: reading it whole would need 8 GiB of memory."""
    path = tmp_path / "huge.o"
    with path.open("wb") as fh:
        fh.truncate(8 << 30)
    assert path.stat().st_blocks * 512 < (1 << 20), "the file system made it dense"
    yield path
    path.unlink()


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_huge_sparse_file_is_refused_by_size(sparse_8g: Path, command: str) -> None:
    # the child may not even map 1 GiB: a read of the whole file would die, not refuse
    proc = subprocess.run(
        ["prlimit", f"--as={1 << 30}", sys.executable, "-m", "pytest_ebpf.cli.main", command,
         str(sparse_8g)],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=HANG_TIMEOUT,
    )  # fmt: skip
    _refused(proc, sparse_8g, f"file is {8 << 30} bytes, over the object size limit of "
                              f"{DEFAULT_MAX_OBJECT_SIZE} bytes")


def test_max_size_parameter(small_obj: Path) -> None:
    size = small_obj.stat().st_size
    assert load_object(small_obj, max_size=size).programs  # exactly the bound: read
    with pytest.raises(ObjectError, match=f"file is {size} bytes, over the object size limit "
                                          f"of {size - 1} bytes"):
        load_object(small_obj, max_size=size - 1)
    with pytest.raises(ObjectError, match="over the object size limit of 1024 bytes"):
        load_object(small_obj, max_size="1K")


def test_max_size_environment_variable(
    small_obj: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_OBJECT_SIZE_ENV, "1k")
    with pytest.raises(ObjectError, match="limit of 1024 bytes"):
        load_object(small_obj)
    assert load_object(small_obj, max_size="1M").programs  # the parameter wins
    monkeypatch.setenv(MAX_OBJECT_SIZE_ENV, "lots")
    with pytest.raises(ObjectError, match=f"{MAX_OBJECT_SIZE_ENV}: bad object size 'lots'"):
        load_object(small_obj)


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_max_object_size_option(small_obj: Path, command: str) -> None:
    proc = _cli(command, str(small_obj), "--max-object-size", "100",
                env={MAX_OBJECT_SIZE_ENV: "1G"})
    _refused(proc, small_obj, "over the object size limit of 100 bytes")
    proc = _cli(command, str(small_obj), "--max-object-size", "big")
    assert proc.returncode == 2 and "bad object size 'big'" in proc.stderr


def test_size_bound_in_the_environment_reaches_the_command(small_obj: Path) -> None:
    proc = _cli("inspect", str(small_obj), env={MAX_OBJECT_SIZE_ENV: "2K"})
    _refused(proc, small_obj, "over the object size limit of 2048 bytes")
    proc = _cli("inspect", str(small_obj), "--json", env={MAX_OBJECT_SIZE_ENV: "1M"})
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("text", "size"),
    [("1", 1), ("4096", 4096), ("1k", 1024), ("256M", 256 << 20), ("256MiB", 256 << 20),
     ("2G", 2 << 30), (" 3 mb ", 3 << 20)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1", "1.5M", "1X", "M"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="bad object size"):
        parse_size(text)


def test_default_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_OBJECT_SIZE_ENV, raising=False)
    assert max_object_size() == DEFAULT_MAX_OBJECT_SIZE == 256 << 20
    assert max_object_size(10) == 10
    with pytest.raises(ObjectError, match="must be more than 0"):
        max_object_size(0)


# --- objects no kernel can take -----------------------------------------------------------------

_HUGE_KEY = """
#include "obj_bpf.h"
typedef char huge_key[65536][65537];  /* 4 GiB + 64 KiB: no u32 key_size holds it */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, huge_key);
    __type(value, int);
    __uint(max_entries, 1);
} HUGE SEC(".maps");
SEC("xdp") int use_huge(void *ctx) { return bpf_map_lookup_elem(&HUGE, ctx) ? 1 : 2; }
char _license[] SEC("license") = "GPL";
"""


def test_btf_map_key_over_4g(compile_c) -> None:  # type: ignore[no-untyped-def]
    """The bpf() call's key_size is a u32: a bigger key type would be cut, not refused."""
    path = compile_c(_HUGE_KEY, "huge_key")
    with pytest.raises(ObjectError) as info:
        load_object(path)
    assert str(info.value) == (
        f"{path}: section '.maps': map 'HUGE': the key type is {65536 * 65537} bytes; a map's "
        "key_size is a 32-bit field of the bpf() call"
    )


# --- a bug of pytest-ebpf is not the object's fault ---------------------------------------------


@pytest.mark.parametrize("error", [KeyError, TypeError, AssertionError, IndexError, ValueError])
def test_a_bug_stays_a_traceback(
    error: type[Exception], small_obj: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No blanket conversion: an exception from the product's own code is not reported as a
    corrupt object (neither by load_object nor by inspect)."""
    import pytest_ebpf.cli.inspect as inspect_cmd
    import pytest_ebpf.obj.load as obj_module

    def broken(*args: object, **kwargs: object) -> None:
        raise error("planted bug")

    monkeypatch.setattr(obj_module, "parse_btf_maps", broken)
    with pytest.raises(error, match="planted bug"):
        load_object(small_obj)
    with pytest.raises(error, match="planted bug"):
        inspect_cmd.run_inspect(str(small_obj))
