"""pytest-ebpf: build, inspect, verify, load and run Rust eBPF objects from pytest.

The public names load lazily, so that ``import pytest_ebpf`` (done by pytest for the plugin)
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_object": "pytest_ebpf.object",
    "load_object_bytes": "pytest_ebpf.object",
    "EbpfObject": "pytest_ebpf.model",
    "Program": "pytest_ebpf.model",
    "Function": "pytest_ebpf.model",
    "Map": "pytest_ebpf.model",
    "ObjectError": "pytest_ebpf.errors",
    "EbpfError": "pytest_ebpf.errors",
    "EbpfAssertionError": "pytest_ebpf.report",
    "assert_stack_usage": "pytest_ebpf.assertions",
    "assert_no_indirect_calls": "pytest_ebpf.assertions",
    "assert_no_undefined_calls": "pytest_ebpf.assertions",
    "assert_max_instructions": "pytest_ebpf.assertions",
    "assert_helpers": "pytest_ebpf.assertions",
    "assert_license": "pytest_ebpf.assertions",
    "assert_btf": "pytest_ebpf.assertions",
    "assert_sections": "pytest_ebpf.assertions",
    "assert_rejected": "pytest_ebpf.privileged",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_ebpf' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
