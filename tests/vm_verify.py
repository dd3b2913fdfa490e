"""Run inside a VM by tests/test_vm_profiles.py: ``python tests/vm_verify.py OBJ...`` loads every
program of each object into the running kernel with the native loader (one verdict per program,
see :mod:`pytest_ebpf.cli.verify`) and prints one JSON line per object: ``{"object": OBJ,
"release": uname -r, "exit": status, "doc": verify's document or null, "error": stderr}``.

With ``--probe-helpers`` first, it also prints ``{"helpers": TABLE}``: what
:mod:`pytest_ebpf.kernel.typeprobe` learns from the kernel (the helpers each kind of program
may call, which of the newest helper table's kfuncs, and the context accesses of
:data:`CTX_SCOPES`)."""

from __future__ import annotations

import io
import json
import platform
import sys
import time

from pytest_ebpf.analysis.helper_types import tables
from pytest_ebpf.cli.verify import run_verify
from pytest_ebpf.kernel.typeprobe import known_kfuncs, probe

CTX_SCOPES = ("xdp:xdp", "socket_filter:", "sched_cls:", "kprobe:", "tracepoint:",
              "cgroup_skb:cgroup_inet_ingress", "cgroup_sock_addr:cgroup_inet4_connect",
              "sock_ops:cgroup_sock_ops", "sk_msg:sk_msg_verdict", "perf_event:")
"""The kinds whose context accesses are probed again (all of them take minutes under TCG)."""


def main(paths: list[str]) -> int:
    if paths[:1] == ["--probe-helpers"]:
        paths = paths[1:]
        asked = sorted(tables()[-1].kfunc_names)
        kfuncs = known_kfuncs(asked)
        results = probe(kfuncs=kfuncs, ctx_scopes=CTX_SCOPES)
        print(json.dumps({"helpers": {
            "last_helper": results[0].last_helper if results else None,
            "scopes": {r.scope: list(r.allowed) for r in results},
            "kfunc_names": sorted(kfuncs),
            "kfuncs": {r.scope: list(r.kfuncs) for r in results},
            "sleepable_kfuncs": {r.scope: list(r.sleepable_kfuncs) for r in results
                                 if r.sleepable_kfuncs},
            "ctx": {r.scope: {k: list(v) for k, v in r.ctx.items()} for r in results
                    if r.ctx}}}), flush=True)
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
