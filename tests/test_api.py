"""The public surface: typed exports, one error root, the hook specs as a plugin author uses
them."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_ebpf
from pytest_ebpf.errors import EbpfError

PACKAGE = Path(pytest_ebpf.__file__).parent
MYPY = Path(sys.executable).with_name("mypy")

#: Raised on purpose but not errors: a warning category, and SIGTERM/SIGHUP turned into the
#: Ctrl-C path (a KeyboardInterrupt, so that pytest and Python clean up as for Ctrl-C).
NOT_ERRORS = {"PinDirWarning", "Terminated"}


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages([str(PACKAGE)], "pytest_ebpf.")]


def test_every_error_class_derives_from_the_root() -> None:
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException):
                continue
            found.append(cls_name)
            if cls_name in NOT_ERRORS:
                continue
            assert issubclass(cls, EbpfError), f"{name}.{cls_name} is not an EbpfError"
    assert {"ObjectError", "CrateError", "ToolError", "LoaderError", "UnknownNameError",
            "EbpfAssertionError", "KernelError", "PinError"} <= set(found)


def test_type_checking_imports_are_the_exports() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    typed: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module
                for alias in imp.names:
                    typed[alias.name] = imp.module
    assert typed == pytest_ebpf._EXPORTS
    assert pytest_ebpf.__all__ == sorted(pytest_ebpf._EXPORTS)
    for name in pytest_ebpf.__all__:
        assert getattr(pytest_ebpf, name) is not None


def test_py_typed_marker_ships() -> None:
    assert (PACKAGE / "py.typed").is_file()


@pytest.mark.slow
def test_exports_keep_their_signatures_for_type_checkers(tmp_path: Path) -> None:
    """mypy sees the real signatures through ``import pytest_ebpf`` (no lazy ``Any``)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from pytest_ebpf import assert_stack_usage, load_object\n"
                   "assert_stack_usage(1, limit='x')\n"
                   "obj = load_object('x.o')\n"
                   "reveal_type(obj.programs)\n")
    # MYPYPATH: the dev venv's editable install is an import hook mypy cannot follow
    proc = subprocess.run([str(MYPY), "--strict", "--no-incremental", str(bad)],
                          capture_output=True, text=True, check=False, cwd=tmp_path,
                          env={**os.environ, "MYPYPATH": str(PACKAGE.parent)})
    assert proc.returncode == 1, proc.stdout
    assert 'Argument "limit" to "assert_stack_usage" has incompatible type "str"' in proc.stdout
    assert 'Argument 1 to "assert_stack_usage" has incompatible type "int"' in proc.stdout
    assert "tuple[pytest_ebpf.obj.model.Program, ...]" in proc.stdout


# --- hooks ------------------------------------------------------------------------------------

HOOK_CONFTEST = """
import json
import pathlib

import pytest

from pytest_ebpf.build.cargo import BuildResult, prebuilt
from pytest_ebpf.build.diagnose import Diagnosis

OBJECT = {object!r}


def pytest_ebpf_build(config, request):
    pathlib.Path("hook-build.json").write_text(json.dumps({{"crate": request.crate.name,
                                                          "target": request.target}}))
    return prebuilt(pathlib.Path(OBJECT)) if OBJECT else None


def pytest_ebpf_build_finished(config, outcome):
    pathlib.Path("hook-finished.txt").write_text(type(outcome).__name__)


def pytest_ebpf_diagnose(output, context):
    if "this_does_not_compile" in output:
        return [Diagnosis("our-typo", "a placeholder left in the program",
                          "write the program's return value", evidence="")]
    return None
"""

TEST = """
def test_programs(ebpf_object):
    assert [p.name for p in ebpf_object.programs] == ["pass"]
"""


@pytest.fixture
def crate(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
          monkeypatch: pytest.MonkeyPatch) -> Path:
    from minicrate import make_crate

    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path_factory.getbasetemp() / "api-target"))
    return make_crate(pytester.path / "mini")


@pytest.mark.slow
def test_build_hook_replaces_cargo(pytester: pytest.Pytester, crate: Path) -> None:
    built = subprocess.run(["cargo", "build", "--release", "--message-format=json"],
                           cwd=crate, capture_output=True, text=True, check=True)
    exe = next(line for line in built.stdout.splitlines() if '"executable":"/' in line)
    import json

    obj = json.loads(exe)["executable"]
    (crate / "src" / "main.rs").write_text("this is not rust")  # cargo would fail now
    pytester.makeconftest(HOOK_CONFTEST.format(object=obj))
    pytester.makepyfile(test_p=TEST)
    result = pytester.runpytest_subprocess("--ebpf-crate=mini", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "hook-build.json").read_text()) == {
        "crate": "mini-ebpf", "target": "bpfel-unknown-none"}
    assert (pytester.path / "hook-finished.txt").read_text() == "BuildResult"
    assert "ebpf build: Compiling" not in result.stdout.str()


@pytest.mark.slow
def test_diagnose_hook_adds_the_projects_own_problems(pytester: pytest.Pytester,
                                                      crate: Path) -> None:
    from minicrate import make_crate

    make_crate(crate, body="this_does_not_compile")
    pytester.makeconftest(HOOK_CONFTEST.format(object=""))
    pytester.makepyfile(test_p=TEST)
    result = pytester.runpytest_subprocess("--ebpf-crate=mini", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "[our-typo] a placeholder left in the program" in text
    assert "fix: write the program's return value" in text
    assert (pytester.path / "hook-finished.txt").read_text() == "BuildFailure"
