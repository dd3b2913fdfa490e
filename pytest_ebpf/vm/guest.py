"""Inside the VM: start the job the host prepared (``python -m pytest_ebpf.vm.guest JOB_DIR``).

``/init`` runs this chrooted into the host's root (read-only) as the guest's root user. The job
(``job.json``, written by the host) holds the argv, the environment and the working directory
of a pytest run; its output goes to ``pytest.log`` in the job directory, the one place the
guest can write besides tmpfs and bpffs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

JOB = "job.json"
LOG = "pytest.log"


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
