"""Inside the VM: start the job the host prepared (``python -m pytest_ebpf.vm.guest JOB_DIR``), and
the job's format, which the host writes with :func:`write_job`.

``/init`` runs this chrooted into the host's root (read-only) as the guest's root user. The job
(``job.json``, written by the host) holds the argv, the environment and the working directory
of a command (a pytest run, ``pytest-ebpf verify``); its output goes to ``output.log`` in the
job directory, the one place the guest can write besides tmpfs and bpffs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

JOB = "job.json"
LOG = "output.log"
PYTHON = "python"
"""The interpreter to run, one line: ``/init`` reads it before the job (it has no JSON)."""
GUEST_TMP = "/run/pytest-ebpf"
"""The guest's writable space (tmpfs): 9p cannot truncate unlinked files, which pytest's
output capture does in ``TMPDIR``."""


def write_job(job_dir: Path, argv: list[str], env: dict[str, str], cwd: str) -> None:
    """On the host: the job for :func:`main`, run with ``HOME`` and ``TMPDIR`` in the guest's
    tmpfs (whatever *env* says) and the host's Python (``argv[0]``)."""
    env = {**env, "HOME": f"{GUEST_TMP}/home", "TMPDIR": f"{GUEST_TMP}/tmp",
           "PYTHONDONTWRITEBYTECODE": "1"}
    (job_dir / PYTHON).write_text(argv[0])
    (job_dir / JOB).write_text(json.dumps({"argv": argv, "env": env, "cwd": cwd}))


def output(job_dir: Path) -> str:
    """What the job printed (stdout and stderr), once the VM has ended."""
    try:
        return (job_dir / LOG).read_text(errors="replace")
    except OSError:
        return ""


def main(argv: list[str]) -> int:
    job_dir = Path(argv[1])
    job = json.loads((job_dir / JOB).read_text())
    log = os.open(job_dir / LOG, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.chdir(job["cwd"])
    env = {str(k): str(v) for k, v in job["env"].items()}
    Path(env.get("TMPDIR", "/tmp")).mkdir(parents=True, exist_ok=True)
    Path(env.get("HOME", "/tmp")).mkdir(parents=True, exist_ok=True)
    os.execve(job["argv"][0], job["argv"], env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
