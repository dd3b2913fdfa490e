"""The pytest side of a session inside a VM (see :mod:`pytest_ebpf.matrix`).

It takes the host's build (no cargo in the VM), keeps exactly the node ids the host asked for,
collects only their files, and writes every report, serialized as pytest-xdist's workers do, to
the job directory as one JSON line, written through at once: a VM stopped at its timeout
still leaves the reports of the tests that finished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import pytest

from pytest_ebpf.matrix import BUILD, IDS, JOB_ENV, REPORTS


class InVm:
    """The plugin object of a session inside a VM."""

    def __init__(self, config: pytest.Config, job: Path) -> None:
        self.config = config
        self.job = job
        self.ids = [i for i in (job / IDS).read_text().splitlines() if i]
        root = Path(str(config.rootpath))
        self.files = {root / i.split("::", 1)[0] for i in self.ids if "::" in i}
        self.out: IO[str] = open(job / REPORTS, "a", buffering=1)  # noqa: SIM115 - the session's

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config
                              ) -> bool | None:
        """Import only the files of the wanted tests (directories are walked as usual)."""
        if collection_path.suffix == ".py" and collection_path.name != "conftest.py" and \
                collection_path.is_file() and collection_path not in self.files:
            return True
        return None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        wanted = set(self.ids)
        keep = [i for i in items if i.nodeid in wanted]
        dropped = [i for i in items if i.nodeid not in wanted]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = self.config.hook.pytest_report_to_serializable(config=self.config,
                                                              report=report)
        self.out.write(json.dumps(data) + "\n")
        self.out.flush()
        os.fsync(self.out.fileno())

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.out.close()


def configure(config: pytest.Config) -> Any:
    """In a VM: the host's build outcome (for ``OUTCOME_KEY``), and the plugin registered."""
    from pytest_ebpf.build.cargo import outcome_from_json

    job = Path(os.environ[JOB_ENV])
    config.pluginmanager.register(InVm(config, job), "ebpf-in-vm")
    return outcome_from_json((job / BUILD).read_text())
