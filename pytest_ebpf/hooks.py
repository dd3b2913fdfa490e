"""Hook specifications of pytest-ebpf, registered through ``pytest_addhooks``.

Implement them in a ``conftest.py`` or a plugin. All are called on the process that builds
(the xdist controller, or the only process without xdist).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_ebpf.build.cargo import BuildFailure, BuildRequest, BuildResult
    from pytest_ebpf.build.diagnose import BuildContext, Diagnosis


@pytest.hookspec(firstresult=True)
def pytest_ebpf_build(config: pytest.Config, request: BuildRequest) -> BuildResult | None:
    """Build the eBPF crate yourself (e.g. with your own script) and return the result.

    Return ``None`` to let pytest-ebpf run cargo. Called at most once per session.
    """


def pytest_ebpf_build_finished(
    config: pytest.Config, outcome: BuildResult | BuildFailure
) -> None:
    """Called once the build (or the prebuilt object) is known, successful or not."""


def pytest_ebpf_diagnose(output: str, context: BuildContext) -> list[Diagnosis] | None:
    """Return extra diagnoses for a failed build's output (your project's known problems).

    They are listed after the built-in ones.
    """
