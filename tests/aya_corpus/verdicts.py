"""Both loaders' verdicts on one object, as JSON lines (run as root, on the host or in a VM).

``python verdicts.py OBJECT [CORPUS_REF]``: the native loader (``load_all(obj, loader="native")``)
prints, each line tagged ``"loader": "native"``:

* ``{"map": NAME, "type", "key_size", "value_size", "max_entries", "flags"}`` per map it made,
  as the kernel reports it;
* ``{"percpu": NAME, "values": N, "roundtrip": BOOL}`` for the per-CPU arrays: how many values
  ``MapHandle.lookup`` returns, and whether one distinct value per CPU written with
  ``MapHandle.update`` reads back the same;
* ``{"program": NAME, "kind", "loaded", "error", "cause"}`` per program;

then, given the reference binary (tests/aya_corpus/corpus-ref), runs it on the same object and
prints its lines tagged ``"loader": "aya"``; then ``{"release": uname -r}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def native(path: str) -> None:
    from pytest_ebpf.kernel.loader import load_all
    from pytest_ebpf.kernel.objects import map_info
    from pytest_ebpf.obj.load import load_object

    def emit(record: dict[str, object]) -> None:
        print(json.dumps({"loader": "native", **record}), flush=True)

    with load_all(load_object(path), loader="native") as loaded:
        for name, handle in sorted(loaded.maps.items()):
            info = map_info(handle.fd)
            emit({"map": name, "type": info.type, "key_size": info.key_size,
                  "value_size": info.value_size, "max_entries": info.max_entries,
                  "flags": info.flags})
        for name in ("L_PCPU_ARRAY", "B_PCPU_ARRAY"):
            percpu = loaded.maps.get(name)
            if percpu is None:
                continue
            values = percpu.lookup(0)
            count = len(values) if isinstance(values, list) else -1
            written = [(i + 1).to_bytes(8, sys.byteorder) for i in range(max(count, 0))]
            percpu.update(0, written)
            emit({"percpu": name, "values": count, "roundtrip": percpu.lookup(0) == written})
        for name, result in sorted(loaded.results.items()):
            prog = loaded.object.program(name)
            emit({"program": name, "kind": prog.kind.label, "loaded": result.loaded,
                  "error": result.error, "cause": result.cause})


def aya(path: str, binary: str) -> None:
    proc = subprocess.run([binary, path], capture_output=True, text=True, check=False,
                          timeout=300)
    if proc.returncode != 0:
        print(json.dumps({"loader": "aya", "object_error":
                          f"{binary} exited with {proc.returncode}: {proc.stderr[-2000:]}"}))
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            print(json.dumps({"loader": "aya", **json.loads(line)}), flush=True)


def main(argv: list[str]) -> int:
    native(argv[0])
    if len(argv) > 1:
        aya(argv[0], argv[1])
    print(json.dumps({"release": os.uname().release}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
