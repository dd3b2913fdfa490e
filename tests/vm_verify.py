"""Run inside a VM by tests/test_vm_profiles.py: ``python tests/vm_verify.py OBJ...`` loads every
program of each object into the running kernel with the native loader (one verdict per program,
see :mod:`pytest_ebpf.cli.verify`) and prints one JSON line per object: ``{"object": OBJ,
"release": uname -r, "exit": status, "doc": verify's document or null, "error": stderr}``."""

from __future__ import annotations

import io
import json
import platform
import sys
import time

from pytest_ebpf.cli.verify import run_verify


def main(paths: list[str]) -> int:
    for path in paths:
        out, err = io.StringIO(), io.StringIO()
        start = time.monotonic()
        code = run_verify(path, as_json=True, loader="native", out=out, err=err)
        text = out.getvalue().strip()
        print(json.dumps({"object": path, "release": platform.release(), "exit": code,
                          "doc": json.loads(text) if text else None,
                          "error": err.getvalue().strip(),
                          "seconds": round(time.monotonic() - start, 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
