"""``pytest-ebpf kernels list [--json]`` and ``pytest-ebpf kernels fetch [--refresh] [NAME...]``.

The VM tests (``--ebpf-kernel 6.1``) boot Debian kernel images that
:mod:`pytest_ebpf.vm.images` downloads on first use (10-60 s each). These commands show what
the cache holds and fill it ahead of time, e.g. in a CI step before the tests, or on a machine
that is online now and will not be later. Exit status 0, or 1 when a kernel could not be fetched
(one ``error: kernel NAME: CAUSE; FIX`` line on stderr per kernel, no traceback).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from pytest_ebpf.vm.images import KNOWN, KernelImage, KernelImageError, cache_dir, cached, fetch

__all__ = ["run_fetch", "run_list"]


def run_list(as_json: bool = False, out: TextIO | None = None) -> int:
    """One line (or JSON object) per known kernel: its meta package and whether it is cached."""
    out = sys.stdout if out is None else out
    cache = cache_dir()
    images = {name: cached(name, cache) for name in KNOWN}
    if as_json:
        doc = {"cache": str(cache),
               "kernels": [{"name": name, "meta": KNOWN[name], "cached": image is not None,
                            **(_as_json(image) if image else {})}
                           for name, image in images.items()]}
        out.write(json.dumps(doc) + "\n")
        return 0
    width = max(map(len, KNOWN))
    meta_width = max(map(len, KNOWN.values()))
    for name, image in images.items():
        state = (f"cached: {image.release} ({image.version}) in {cache / name}" if image
                 else f"not cached (pytest-ebpf kernels fetch {name})")
        out.write(f"{name:<{width}}  {KNOWN[name]:<{meta_width}}  {state}\n")
    return 0


def run_fetch(names: Sequence[str] = (), refresh: bool = False, out: TextIO | None = None,
              err: TextIO | None = None) -> int:
    """Fetch the kernels *names* (default: every known one) into the cache; 0, or 1 when one
    failed (the others are still fetched)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    cache = cache_dir()
    code = 0
    for name in names or KNOWN:
        start = time.monotonic()
        try:
            was = None if refresh else cached(name, cache)
            image = was or fetch(name, cache, refresh=refresh)
        except KernelImageError as exc:
            err.write(f"error: {exc}\n")
            code = 1
            continue
        how = "already cached" if was else f"fetched in {time.monotonic() - start:.1f} s"
        out.write(f"{name}: {image.package} {image.version} (uname -r {image.release}), "
                  f"{len(image.modules)} modules, in {cache / name} ({how})\n")
    return code


def _as_json(image: KernelImage) -> dict[str, object]:
    return {"package": image.package, "version": image.version, "release": image.release,
            "vmlinuz": str(image.vmlinuz), "config": str(image.config),
            "modules": [str(m) for m in image.modules]}
