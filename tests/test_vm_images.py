"""The kernel image cache (pytest_ebpf.vm.images), checked against outside truth.

The images are really downloaded from deb.debian.org (once per session, into
``$PYTEST_EBPF_KERNEL_CACHE`` when set, so a CI job can share them with the VM tests, else into a
temporary directory) and then judged by tools that do not share this package's code: ``file``
for the bzImage and its version string, the kernel's own config for which of the 9p/virtio
drivers are modules, and kmod's ``modinfo`` for each kept module's vermagic and dependencies.
The failure cases use real failures: a closed port for an unreachable mirror, a socket that
never answers for a timeout, and a local HTTP server with a crafted ``Packages.xz`` for a bad
SHA256.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import http.server
import json
import lzma
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_ebpf.vm import debian
from pytest_ebpf.vm.images import (
    CACHE_ENV,
    KNOWN,
    ROOT_MODULES,
    KernelImage,
    KernelImageError,
    cache_dir,
    cached,
    fetch,
)

CLI = Path(sys.executable).with_name("pytest-ebpf")
UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nothing listens, connect is refused
#: the kernel config option of each root module (``=m``: must be kept; ``=y``: built in)
ROOT_CONFIG = {"virtio_pci": "CONFIG_VIRTIO_PCI", "9pnet_virtio": "CONFIG_NET_9P_VIRTIO",
               "9p": "CONFIG_9P_FS"}
MIRROR_ENVS = (debian.MIRROR_ENV, debian.SECURITY_MIRROR_ENV)


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared = os.environ.get(CACHE_ENV)
    return Path(shared) if shared else tmp_path_factory.mktemp("kernels")


@pytest.fixture(scope="session", params=list(KNOWN))
def image(request: pytest.FixtureRequest, kernel_cache: Path) -> KernelImage:
    """Each known kernel, downloaded for real (10-60 s each the first time)."""
    name: str = request.param
    return fetch(name, kernel_cache)


@pytest.fixture(scope="session")
def image_612(kernel_cache: Path) -> KernelImage:
    """The one image the cache's own tests work on (copies of it: the shared one stays)."""
    return fetch("6.12", kernel_cache)


@pytest.fixture(autouse=True)
def _debian_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in MIRROR_ENVS:  # deb.debian.org, whatever the shell says
        monkeypatch.delenv(env, raising=False)


def tool(*cmd: str) -> str:
    if shutil.which(cmd[0]) is None:
        pytest.fail(f"{cmd[0]} is not on PATH (Debian: apt-get install kmod file)", pytrace=False)
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and text.strip() == text
    return text


def copy_entry(image: KernelImage, kernel_cache: Path, dest: Path) -> Path:
    """A private copy of *image*'s cache entry (the symlink and its target) under *dest*."""
    entry = os.readlink(kernel_cache / image.name)
    shutil.copytree(kernel_cache / entry, dest / entry)
    (dest / image.name).symlink_to(entry)
    return dest


# --- the images, judged by outside tools --------------------------------------------------------


def test_vmlinuz_is_a_bzimage_of_the_release(image: KernelImage) -> None:
    with image.vmlinuz.open("rb") as f:
        f.seek(0x202)
        assert f.read(4) == b"HdrS"  # the x86 boot protocol's setup header signature
    described = tool("file", "-b", str(image.vmlinuz))
    assert "Linux kernel x86 boot executable bzImage" in described
    assert f"version {image.release} " in described, described
    assert image.package == f"linux-image-{image.release}"
    assert image.vmlinuz.name == f"vmlinuz-{image.release}"


def test_config_is_the_kernels_own(image: KernelImage) -> None:
    text = image.config.read_text()
    upstream = image.version.split("-")[0]  # 6.1.192-3 -> 6.1.192
    assert f"# Linux/x86 {upstream} Kernel Configuration\n" in text
    assert image.config.name == f"config-{image.release}"
    assert image.name == ".".join(upstream.split(".")[:2])  # 6.12.117 -> 6.12


def test_modules_are_the_ones_a_9p_root_needs_in_insmod_order(image: KernelImage) -> None:
    config = image.config.read_text().splitlines()
    names = [ko.name.removesuffix(".ko") for ko in image.modules]
    for module, option in ROOT_CONFIG.items():
        if f"{option}=m" in config:
            assert module in names
        else:
            assert f"{option}=y" in config and module not in names
    assert set(ROOT_MODULES) >= set(ROOT_CONFIG)
    for i, ko in enumerate(image.modules):
        assert ko.read_bytes()[:4] == b"\x7fELF"  # decompressed on the host
        assert "ELF 64-bit LSB relocatable, x86-64" in tool("file", "-b", str(ko))
        assert tool("modinfo", "-F", "name", str(ko)).replace("-", "_") == names[i]
        assert tool("modinfo", "-F", "vermagic", str(ko)).startswith(image.release + " ")
        depends = [d for d in tool("modinfo", "-F", "depends", str(ko)).split(",") if d]
        # modpost lists only modules (what is built in resolves against vmlinux)
        assert all(d.replace("-", "_") in names[:i] for d in depends), (names[i], depends, names)
    assert len(set(names)) == len(names)


def test_cached_is_what_fetch_returned(image: KernelImage, kernel_cache: Path) -> None:
    assert cached(image.name, kernel_cache) == image
    assert fetch(image.name, kernel_cache) == image  # offline: the cache checks out
    manifest = json.loads((kernel_cache / image.name / "manifest.json").read_text())
    assert manifest["package"] == image.package and manifest["version"] == image.version
    entry = (kernel_cache / image.name).resolve()
    kept = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file()}
    assert kept == {"manifest.json", *manifest["sha256"]}  # the .deb is gone
    assert sum(p.stat().st_size for p in entry.rglob("*")) < 30 << 20


# --- the cache ---------------------------------------------------------------------------------


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home/.cache/pytest-ebpf/kernels"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute only
    assert cache_dir() == tmp_path / "home/.cache/pytest-ebpf/kernels"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg/pytest-ebpf/kernels"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert cached("6.1") is None  # an empty cache


def test_corrupt_or_incomplete_entries_are_not_trusted(image_612: KernelImage,
                                                       kernel_cache: Path,
                                                       tmp_path: Path) -> None:
    image = image_612
    cache = copy_entry(image, kernel_cache, tmp_path)
    entry = (cache / image.name).resolve()
    assert cached(image.name, cache) == dataclasses.replace(
        image, vmlinuz=entry / image.vmlinuz.name, config=entry / image.config.name,
        modules=tuple(entry / "modules" / m.name for m in image.modules))
    last = entry / "modules" / image.modules[-1].name
    last.unlink()
    assert cached(image.name, cache) is None
    shutil.copy(image.modules[-1], last)
    manifest = entry / "manifest.json"
    manifest.write_text(manifest.read_text()[:-20])
    assert cached(image.name, cache) is None
    manifest.write_text(manifest.read_text().replace(f'"{image.name}"', '"other"'))
    assert cached(image.name, cache) is None


def test_fetch_repairs_a_corrupted_file(image_612: KernelImage, kernel_cache: Path,
                                        tmp_path: Path) -> None:
    image = image_612
    cache = copy_entry(image, kernel_cache, tmp_path)
    old = (cache / image.name).resolve()
    ko = old / "modules" / image.modules[0].name
    data = bytearray(ko.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ko.write_bytes(data)
    assert cached(image.name, cache) is None
    repaired = fetch(image.name, cache)
    assert cached(image.name, cache) == repaired
    assert repaired.modules[0].read_bytes() == image.modules[0].read_bytes()
    assert not old.exists()  # the replaced entry is removed
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [image.name, f"{image.name}.lock", repaired.vmlinuz.parent.name])


def test_a_waiting_fetch_reuses_what_the_lock_holder_wrote(image_612: KernelImage,
                                                           kernel_cache: Path,
                                                           tmp_path: Path) -> None:
    """Like two xdist workers: the second waits for the first's lock, then finds the image in
    the cache and does not download (its mirrors are unreachable, so a download would fail)."""
    image = image_612
    cache = copy_entry(image, kernel_cache, tmp_path)
    config = (cache / image.name).resolve() / image.config.name
    config.write_text("broken")
    code = ("import sys; from pathlib import Path; from pytest_ebpf.vm.images import fetch; "
            f"print(fetch({image.name!r}, Path({str(cache)!r})).release)")
    env = {**os.environ, **dict.fromkeys(MIRROR_ENVS, UNREACHABLE)}
    with (cache / f"{image.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiter = subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2)
        assert waiter.poll() is None  # blocked on the lock
        shutil.copy(image.config, config)  # the lock holder finishes its fetch
    out, err = waiter.communicate(timeout=60)
    assert (waiter.returncode, out.strip()) == (0, image.release), err


# --- errors: one line naming the kernel, the cause and the fix ------------------------------------


def test_unknown_kernel(tmp_path: Path) -> None:
    for call in (cached, fetch):
        with pytest.raises(KernelImageError) as exc:
            call("5.10", tmp_path)
        text = one_line(exc.value)
        assert text.startswith("kernel 5.10: ") and "6.1, 6.12" in text
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_cache(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(KernelImageError) as exc:
        fetch("6.1", tmp_path / "file" / "cache")
    text = one_line(exc.value)
    assert text.startswith(f"kernel 6.1: cannot write the cache {tmp_path}/file/cache (")
    assert text.endswith(f"set {CACHE_ENV} to a writable directory")


@pytest.mark.parametrize("env", MIRROR_ENVS)
def test_unreachable_mirror(env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(env, UNREACHABLE)
    with pytest.raises(KernelImageError) as exc:
        fetch("6.1", tmp_path)
    text = one_line(exc.value)
    assert text.startswith("kernel 6.1: cannot download http://127.0.0.1:9/dists/")
    assert "Connection refused" in text
    assert text.endswith(f"check the network, or set {env} to a reachable Debian mirror")
    assert isinstance(exc.value.__cause__, OSError)
    assert cached("6.1", tmp_path) is None


def test_a_mirror_that_never_answers_times_out(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever answers
        monkeypatch.setattr(debian, "TIMEOUT", 1.0)
        monkeypatch.setenv(debian.SECURITY_MIRROR_ENV,
                           f"http://127.0.0.1:{silent.getsockname()[1]}")
        start = time.monotonic()
        with pytest.raises(KernelImageError) as exc:
            fetch("6.12", tmp_path)
    assert time.monotonic() - start < 10
    text = one_line(exc.value)
    assert "no answer within 1 s" in text and debian.SECURITY_MIRROR_ENV in text


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """An HTTP server for the files under *root*; yields its URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def crafted_mirror(root: Path, deb: bytes, size: int, sha256: str) -> None:
    """A one-package archive: linux-image-6.12-amd64 depends on a made-up image package."""
    stanzas = {"bookworm-security": (
        "Package: linux-image-6.12-amd64\nVersion: 6.12.999-1\nArchitecture: amd64\n"
        "Depends: linux-image-6.12.999-test-amd64 (= 6.12.999-1)\n\n"
        "Package: linux-image-6.12.999-test-amd64\nVersion: 6.12.999-1\nArchitecture: amd64\n"
        f"Filename: pool/test.deb\nSize: {size}\nSHA256: {sha256}\n"),
        "bookworm-updates": "", "bookworm": ""}
    for suite, text in stanzas.items():
        index = root / "dists" / suite / "main/binary-amd64/Packages.xz"
        index.parent.mkdir(parents=True)
        index.write_bytes(lzma.compress(text.encode()))
    (root / "pool").mkdir()
    (root / "pool/test.deb").write_bytes(deb)


@pytest.mark.parametrize("case", ["sha256", "size"])
def test_a_download_that_does_not_match_the_index(case: str, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    deb = b"!<arch>\n" + b"\0" * 1000
    sha = hashlib.sha256(deb).hexdigest()
    crafted_mirror(tmp_path / "mirror", deb, len(deb) + (case == "size"),
                   "0" * 64 if case == "sha256" else sha)
    cache = tmp_path / "cache"
    with serve(tmp_path / "mirror") as url:
        for env in MIRROR_ENVS:
            monkeypatch.setenv(env, url)
        with pytest.raises(KernelImageError) as exc:
            fetch("6.12", cache)
    text = one_line(exc.value)
    assert text.startswith(f"kernel 6.12: {url}/pool/test.deb ")
    if case == "sha256":
        assert f"has SHA256 {sha}, the index says {'0' * 64}" in text
    else:
        assert f"is {len(deb)} bytes, the index says {len(deb) + 1} bytes" in text
    assert text.endswith(f"set {debian.SECURITY_MIRROR_ENV} to a reachable Debian mirror")
    assert sorted(p.name for p in cache.iterdir()) == ["6.12.lock"]  # nothing half-written


# --- the command line ----------------------------------------------------------------------------


def cli(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in MIRROR_ENVS}
    return subprocess.run([str(CLI), "kernels", *args], capture_output=True, text=True,
                          check=False, env={**environ, CACHE_ENV: str(cache), **env})


def test_cli_list(image: KernelImage, kernel_cache: Path, tmp_path: Path) -> None:
    proc = cli("list", cache=kernel_cache)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.split()[0] == image.name)
    assert line.split()[1] == KNOWN[image.name]
    assert line.endswith(f"cached: {image.release} ({image.version}) in "
                         f"{kernel_cache / image.name}")
    doc = json.loads(cli("list", "--json", cache=kernel_cache).stdout)
    entry = next(k for k in doc["kernels"] if k["name"] == image.name)
    assert entry["cached"] and entry["release"] == image.release
    assert entry["modules"] == [str(m) for m in image.modules]
    empty = cli("list", cache=tmp_path)
    width, meta_width = max(map(len, KNOWN)), max(map(len, KNOWN.values()))
    assert empty.stdout.splitlines() == [
        f"{name:<{width}}  {meta:<{meta_width}}  not cached (pytest-ebpf kernels fetch {name})"
        for name, meta in KNOWN.items()]


def test_cli_fetch(image: KernelImage, kernel_cache: Path, tmp_path: Path) -> None:
    proc = cli("fetch", image.name, cache=kernel_cache)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == (f"{image.name}: {image.package} {image.version} (uname -r "
                           f"{image.release}), {len(image.modules)} modules, in "
                           f"{kernel_cache / image.name} (already cached)\n")
    proc = cli("fetch", "5.10", image.name, cache=kernel_cache)
    assert proc.returncode == 1 and "already cached" in proc.stdout
    assert proc.stderr.startswith("error: kernel 5.10: ") and proc.stderr.count("\n") == 1
    proc = cli("fetch", cache=tmp_path, **dict.fromkeys(MIRROR_ENVS, UNREACHABLE))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert [ln.split(":")[:2] for ln in proc.stderr.splitlines()] == [
        ["error", f" kernel {name}"] for name in KNOWN]
    assert "Traceback" not in proc.stderr
