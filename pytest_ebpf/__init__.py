"""pytest-ebpf: build, inspect, verify, load and run Rust eBPF objects from pytest.

The public names load lazily, so that ``import pytest_ebpf`` (done by pytest for the plugin)
stays cheap. Type checkers see the real names (the ``TYPE_CHECKING`` imports below, kept equal
to ``_EXPORTS`` by a test), so every export keeps its signature.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_ebpf.analysis.assertions import (
        assert_btf,
        assert_helpers,
        assert_license,
        assert_max_instructions,
        assert_no_indirect_calls,
        assert_no_undefined_calls,
        assert_rules,
        assert_sections,
        assert_stack_usage,
    )
    from pytest_ebpf.analysis.report import EbpfAssertionError
    from pytest_ebpf.errors import EbpfError, ObjectError
    from pytest_ebpf.obj.load import load_object, load_object_bytes
    from pytest_ebpf.obj.model import EbpfObject, Function, Map, Program
    from pytest_ebpf.privileged import assert_rejected

_EXPORTS = {
    "load_object": "pytest_ebpf.obj.load",
    "load_object_bytes": "pytest_ebpf.obj.load",
    "EbpfObject": "pytest_ebpf.obj.model",
    "Program": "pytest_ebpf.obj.model",
    "Function": "pytest_ebpf.obj.model",
    "Map": "pytest_ebpf.obj.model",
    "ObjectError": "pytest_ebpf.errors",
    "EbpfError": "pytest_ebpf.errors",
    "EbpfAssertionError": "pytest_ebpf.analysis.report",
    "assert_stack_usage": "pytest_ebpf.analysis.assertions",
    "assert_no_indirect_calls": "pytest_ebpf.analysis.assertions",
    "assert_no_undefined_calls": "pytest_ebpf.analysis.assertions",
    "assert_max_instructions": "pytest_ebpf.analysis.assertions",
    "assert_helpers": "pytest_ebpf.analysis.assertions",
    "assert_license": "pytest_ebpf.analysis.assertions",
    "assert_btf": "pytest_ebpf.analysis.assertions",
    "assert_sections": "pytest_ebpf.analysis.assertions",
    "assert_rules": "pytest_ebpf.analysis.assertions",
    "assert_rejected": "pytest_ebpf.privileged",
}

__all__ = [
    "EbpfAssertionError",
    "EbpfError",
    "EbpfObject",
    "Function",
    "Map",
    "ObjectError",
    "Program",
    "assert_btf",
    "assert_helpers",
    "assert_license",
    "assert_max_instructions",
    "assert_no_indirect_calls",
    "assert_no_undefined_calls",
    "assert_rejected",
    "assert_rules",
    "assert_sections",
    "assert_stack_usage",
    "load_object",
    "load_object_bytes",
]


def __getattr__(name: str) -> Any:  # runtime only: type checkers use the imports above
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_ebpf' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
