"""The build as a user watches it: progress, warnings, one full report of a failed build, paths
as pytest treats them, usage errors that name where a bad value came from.

Every test builds a real crate (``tests/minicrate.py``: no dependencies, seconds to build) with
the real toolchain, through a pytest run in a subprocess, and reads what the user would read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from minicrate import BIN, NAME, make_crate
from stable_standin import rustup_missing

pytestmark = pytest.mark.slow

BUILD_TESTS = """
import pytest

@pytest.mark.parametrize("n", range({n}))
def test_needs_build(ebpf_build, n):
    assert ebpf_build.path.is_file()
"""


@pytest.fixture
def workspace(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
              monkeypatch: pytest.MonkeyPatch) -> Path:
    """pytester's directory with the mini crate in ``mini/`` and a shared cargo target dir
    (each crate path is still compiled afresh: cargo keys artifacts by the crate's path)."""
    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path_factory.getbasetemp() / "mini-target"))
    make_crate(pytester.path / "mini")
    return pytester.path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=600)


def test_progress_follows_collection_and_precedes_results(pytester: pytest.Pytester,
                                                        workspace: Path) -> None:
    pytester.makepyfile(test_b=BUILD_TESTS.format(n=2))
    result = run(pytester, "--ebpf-crate=mini")
    result.assert_outcomes(passed=2)
    lines = result.stdout.lines
    collected = next(i for i, ln in enumerate(lines) if "collected 2 items" in ln)
    compiling = next(i for i, ln in enumerate(lines)
                     if ln.startswith(f"ebpf build: Compiling {NAME} v0.1.0"))
    finished = next(i for i, ln in enumerate(lines) if ln.startswith("ebpf build: Finished"))
    first_result = next(i for i, ln in enumerate(lines) if ln.startswith("test_b.py"))
    assert collected < compiling < finished < first_result, "\n".join(lines)


def test_progress_under_xdist(pytester: pytest.Pytester, workspace: Path) -> None:
    pytester.makepyfile(test_b=BUILD_TESTS.format(n=4))
    result = run(pytester, "--ebpf-crate=mini", "-n", "2")
    result.assert_outcomes(passed=4)
    text = result.stdout.str()
    assert f"ebpf build: Compiling {NAME} v0.1.0" in text
    assert text.index("ebpf build: Finished") < text.index("passed")


def test_warnings_of_a_successful_build_are_in_the_summary(pytester: pytest.Pytester,
                                                          workspace: Path) -> None:
    make_crate(workspace / "mini", body="let unused_on_purpose = 1;\n    2")
    pytester.makepyfile(test_b=BUILD_TESTS.format(n=1))
    result = run(pytester, "--ebpf-crate=mini")
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    summary = text[text.index("= eBPF build ="):]
    assert "1 warning(s) from the build:" in summary
    assert "warning: unused variable: `unused_on_purpose`" in summary
    assert "src/main.rs:7:9" in summary


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_failed_build_is_reported_in_full_once(pytester: pytest.Pytester, workspace: Path,
                                                 xdist: list[str]) -> None:
    make_crate(workspace / "mini", body="this_does_not_compile")
    pytester.makepyfile(test_b=BUILD_TESTS.format(n=6))
    result = run(pytester, "--ebpf-crate=mini", *xdist)
    result.assert_outcomes(errors=6)
    # pytest's own short summary (not cut to one line when $CI is set) is not the report
    text = result.stdout.str().split("short test summary info")[0]
    assert text.count("--> src/main.rs:7:5") == 1, text  # rustc's diagnostic, in full, once
    assert text.count("cargo said:") == 1, text
    short = [ln for ln in result.stdout.lines if "(reported in full " in ln]
    assert short, text
    if not xdist:
        assert "reported in full by test_b.py::test_needs_build[0]" in text
    else:
        assert "reported in full in the 'eBPF build' section of the summary" in text


def test_crate_path_on_the_command_line_is_taken_from_the_start_directory(
        pytester: pytest.Pytester, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    sub = workspace / "tests"
    sub.mkdir()
    (sub / "test_b.py").write_text(BUILD_TESTS.format(n=1))
    monkeypatch.chdir(sub)
    result = run(pytester, "--ebpf-crate=../mini", ".")
    result.assert_outcomes(passed=1)
    assert "crate: ../mini (from option)" in result.stdout.str()


def test_object_path_in_the_ini_is_taken_from_the_ini_directory(
        pytester: pytest.Pytester, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = subprocess.run(["cargo", "build", "--release", "--message-format=json"],
                           cwd=workspace / "mini", capture_output=True, text=True, check=True)
    exe = next(m for m in (line for line in built.stdout.splitlines())
               if '"executable":"' in m and f"/{BIN}\"" in m)
    obj = Path(re.search(r'"executable":"([^"]+)"', exe).group(1))  # type: ignore[union-attr]
    (workspace / "objs").mkdir()
    (workspace / "objs" / "mini.o").write_bytes(obj.read_bytes())
    (pytester.path / "pytest.ini").write_text("[pytest]\nebpf_object = objs/mini.o\n")
    sub = workspace / "deep" / "er"
    sub.mkdir(parents=True)
    (sub / "test_o.py").write_text(
        "def test_o(ebpf_object):\n    assert [p.name for p in ebpf_object.programs] == "
        "['pass']\n")
    monkeypatch.chdir(sub)
    result = run(pytester, ".")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "env", "ini", "message"),
    [
        (["--ebpf-crate=mini", "--ebpf-object=x.o"], {}, "",
         "--ebpf-object=x.o and --ebpf-crate=mini are both set: pick one"),
        (["--ebpf-crate="], {}, "", "--ebpf-crate=: empty value"),
        ([], {}, "ebpf_crate =\n", "ebpf_crate =  (pytest.ini): empty value"),
        (["--ebpf-crate=mini"], {"PYTEST_EBPF_LOADER": "bogus"}, "",
         "PYTEST_EBPF_LOADER=bogus (environment): not a valid value; use one of auto, "
         "bpftool, native"),
        (["--ebpf-crate=mini"], {}, "ebpf_loader = bogus\n",
         "ebpf_loader = bogus (pytest.ini): not a valid value"),
        (["--ebpf-crate=mini-epbf"], {}, "", "did you mean 'mini-ebpf'?"),
        (["--ebpf-crate=mini", "--ebpf-build-std=none"], {}, "",
         "--ebpf-build-std=none conflicts with"),
        (["--ebpf-crate=mini"], {"PYTEST_EBPF_MAX_OBJECT_SIZE": "lots"}, "",
         "PYTEST_EBPF_MAX_OBJECT_SIZE=lots (environment): bad object size 'lots'"),
    ],
    ids=["crate-and-object", "empty-option", "empty-ini", "env-choice", "ini-choice",
         "typo", "build-std-conflict", "max-size"],
)
def test_usage_errors_name_their_source(pytester: pytest.Pytester, workspace: Path,
                                        monkeypatch: pytest.MonkeyPatch, args: list[str],
                                        env: dict[str, str], ini: str, message: str) -> None:
    if "conflict" in message:
        config = workspace / "mini" / ".cargo" / "config.toml"
        config.write_text(config.read_text() + '\n[unstable]\nbuild-std = ["core"]\n')
    (pytester.path / "pytest.ini").write_text("[pytest]\n" + ini)
    pytester.makepyfile(test_x="def test_x(): pass")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert message in result.stderr.str(), result.stderr.str()
    assert "Traceback" not in result.stderr.str()


def test_object_over_the_size_bound_fails_its_tests(pytester: pytest.Pytester) -> None:
    obj = pytester.path / "big.o"
    obj.write_bytes(b"\x7fELF" + bytes(4096))
    pytester.makepyfile(test_o="def test_o(ebpf_object):\n    pass\n")
    result = run(pytester, f"--ebpf-object={obj}", "--ebpf-max-object-size=1K")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    assert "eBPF object cannot be read:" in text and "1024" in text, text


def test_summary_names_the_environment_as_the_toolchain_source(
        pytester: pytest.Pytester, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if reason := rustup_missing("PYTEST_EBPF_TOOLCHAIN=debian names a rustup toolchain"):
        pytest.skip(reason)
    rustup = subprocess.run(["rustup", "toolchain", "list"], capture_output=True, text=True,
                            check=False)
    if rustup.returncode != 0 or "debian" not in rustup.stdout:
        pytest.skip("needs rustup with the 'debian' toolchain (scripts/setup.sh links it)")
    monkeypatch.setenv("PYTEST_EBPF_TOOLCHAIN", "debian")
    pytester.makepyfile(test_b=BUILD_TESTS.format(n=1))
    result = run(pytester, "--ebpf-crate=mini")
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert "toolchain: debian (from env PYTEST_EBPF_TOOLCHAIN)" in text
    assert "toolchain chosen by the environment (PYTEST_EBPF_TOOLCHAIN)" in text


def test_version() -> None:
    exe = Path(sys.executable).with_name("pytest-ebpf")
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    from importlib.metadata import version

    assert proc.stdout.strip() == f"pytest-ebpf {version('pytest-ebpf')}"


def test_help_works_whatever_the_settings(pytester: pytest.Pytester) -> None:
    """As in pytest-django: --help and --version are never blocked by a bad setting."""
    result = run(pytester, "--ebpf-crate=no-such-crate", "--ebpf-loader=bogus", "--help")
    assert result.ret == 0, result.stderr.str()
    assert "--ebpf-crate=CRATE" in result.stdout.str()
