"""The privileged tests on other kernels, each in one throwaway VM per session.

With ``--ebpf-kernel=6.1,6.12,host`` every privileged item (the user's ``ebpf_privileged``
tests, the generated ``loads`` checks) is parametrized by kernel (``test_x[6.1]``,
``prog::loads[6.12]``); the ``host`` items run here as before. The items of a VM kernel are not
run by this process: once the items are known, one VM per kernel (two at a time) boots the
kernel with the host's root shared read-only and runs, as root inside, a pytest session of
exactly those node ids on the same files and settings. The guest writes each report
serialized (``pytest_report_to_serializable``, as pytest-xdist's workers do) to the job
directory; here each VM item waits for its kernel and replays the guest's reports
(``pytest_report_from_serializable``), so the terminal, JUnit XML, ``--ebpf-report`` and xdist
see ordinary reports.

Under xdist every worker collects the same items; the first to need a kernel boots it (a file
lock per kernel in a directory the controller creates and removes), and the others read the
same reports: one boot per kernel per session. A kernel that cannot be fetched, a missing
qemu, a panic or a timeout fails that kernel's items with one line each; the others go on.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_ebpf.settings import OPTIONS, SETTINGS_KEY, Settings
from pytest_ebpf.vm.guest import GUEST_TMP, LOG

KERNEL_FIXTURE = "ebpf_kernel"
GUEST_ENV = "PYTEST_EBPF_VM_GUEST"
"""Set inside a VM to the kernel's name: this session is the guest's."""
JOB_ENV = "PYTEST_EBPF_VM_JOB"
"""Set inside a VM to the job directory (shared read-write with the host)."""
DIR_KEY = "ebpf_vm_dir"
"""``workerinput`` key: the session's VM directory, created by the xdist controller."""
KEEP_ENV = "PYTEST_EBPF_VM_KEEP"
"""Set to keep the VMs' job directories (consoles, the guests' pytest output) after the run."""
IDS = "ids.txt"
REPORTS = "reports.jsonl"
BUILD = "build.json"
RESULT = "result.json"
BOOTS = "boots.jsonl"
"""One line per VM booted in the session (by any xdist worker), for the summary."""
PARALLEL = 2
"""VMs booted at once (TCG uses one core each; these machines have two)."""
LOG_TAIL = 15


def guest_kernel() -> str | None:
    """The kernel this session runs inside (in a VM), or ``None`` on the host."""
    return os.environ.get(GUEST_ENV) or None


def item_kernel(item: pytest.Item) -> str | None:
    """The kernel an item runs on (``host`` or a VM kernel); ``None`` for the others."""
    if getattr(item, "kind", None) == "loads":
        kernel = getattr(item, "kernel", None)
        return str(kernel) if kernel is not None else None
    callspec = getattr(item, "callspec", None)
    if callspec is not None and KERNEL_FIXTURE in callspec.params:
        return str(callspec.params[KERNEL_FIXTURE])
    return None


def _settings(config: pytest.Config) -> Settings | None:
    settings = config.stash.get(SETTINGS_KEY, None)
    return settings if settings is not None and settings.active else None


@pytest.fixture(autouse=True)
def ebpf_kernel(request: pytest.FixtureRequest) -> str:
    """The kernel this test runs on: ``host``, or the name of a VM kernel (``6.1``) for the
    privileged tests parametrized by ``--ebpf-kernel``."""
    return str(getattr(request, "param", "host"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    settings = _settings(metafunc.config)
    if settings is None or not settings.vms:
        return
    if metafunc.definition.get_closest_marker("ebpf_privileged") is None:
        return
    names = list(settings.load_kernels)
    metafunc.parametrize(KERNEL_FIXTURE, names, ids=names)


# ---------------------------------------------------------------------------------------------
# The host: one VM per kernel, its reports replayed on the items
# ---------------------------------------------------------------------------------------------


@dataclass
class KernelRun:
    """One kernel's VM, as this process knows it."""

    name: str
    ids: list[str]
    thread: threading.Thread | None = None
    result: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    loaded: bool = False


class VmMatrix:
    """The plugin object of a host session with VM kernels."""

    def __init__(self, config: pytest.Config, root: Path, owner: bool) -> None:
        self.config = config
        self.root = root
        self.owner = owner
        self.runs: dict[str, KernelRun] = {}
        self.slots = threading.Semaphore(PARALLEL)

    # -- hooks --------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Boot the VMs as soon as the items are known, beside the host's tests."""
        config = self.config
        settings = _settings(config)
        if settings is None or config.option.collectonly or settings.privileged == "no":
            return
        wanted: dict[str, list[str]] = {}
        for item in session.items:
            kernel = item_kernel(item)
            if kernel in settings.vms:
                wanted.setdefault(str(kernel), []).append(item.nodeid)
        for name, ids in wanted.items():
            run = KernelRun(name, ids)
            run.thread = threading.Thread(target=self._boot, args=(run, settings),
                                          name=f"pytest-ebpf-vm-{name}", daemon=True)
            self.runs[name] = run
            run.thread.start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None
                                ) -> bool | None:
        kernel = item_kernel(item)
        if kernel is None or kernel not in self.runs:
            return None
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for report in self._reports(item, self.runs[kernel]):
            ihook.pytest_runtest_logreport(report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line per kernel: its release, boots, tests and time, or why it failed."""
        if not self.owner:
            return
        try:
            boots = [json.loads(ln) for ln in (self.root / BOOTS).read_text().splitlines()]
        except (OSError, ValueError):
            return
        tr = terminalreporter
        tr.section("eBPF kernels in VMs")
        for name in dict.fromkeys(b["kernel"] for b in boots):
            mine = [b for b in boots if b["kernel"] == name]
            last = mine[-1]
            times = "once" if len(mine) == 1 else f"{len(mine)} times"
            if last.get("error"):
                error = str(last["error"])
                tr.line(error if error.startswith(f"kernel {name}") else
                        f"kernel {name}: {error}", red=True)
                continue
            tr.line(f"kernel {name} ({last.get('release')}, Debian {last.get('package')} "
                    f"{last.get('version')}): booted {times}, {last['tests']} tests, "
                    f"{last.get('seconds')} s ({last.get('ready')} s to boot)")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        from pytest_ebpf.vm.qemu import kill_all

        kill_all()
        if self.owner and not os.environ.get(KEEP_ENV):
            shutil.rmtree(self.root, ignore_errors=True)

    # -- the VM of one kernel -----------------------------------------------------------------

    def _boot(self, run: KernelRun, settings: Settings) -> None:
        """Run *run*'s kernel once for the whole session (whoever takes the lock first)."""
        kdir = self.root / run.name
        kdir.mkdir(exist_ok=True)
        with self.slots, open(self.root / f"{run.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (kdir / RESULT).exists():
                return
            result = self._vm(run, settings, kdir)
            tmp = kdir / f".{RESULT}.tmp"
            tmp.write_text(json.dumps(result))
            os.replace(tmp, kdir / RESULT)
            boot = {"kernel": run.name, "tests": len(run.ids), "pid": os.getpid(), **result}
            boot.pop("console_tail", None)
            with open(self.root / BOOTS, "a") as boots:
                boots.write(json.dumps(boot) + "\n")

    def _vm(self, run: KernelRun, settings: Settings, kdir: Path) -> dict[str, Any]:
        from pytest_ebpf.errors import EbpfError
        from pytest_ebpf.vm.images import fetch
        from pytest_ebpf.vm.qemu import run_job

        try:
            image = fetch(run.name)
            self._write_job(run, kdir)
            vm = run_job(image, kdir, settings.vm_timeout)
        except EbpfError as exc:
            return {"error": str(exc)}
        except Exception as exc:  # the items must say it, not a thread's traceback
            return {"error": f"kernel {run.name}: pytest-ebpf could not run the VM: "
                             f"{type(exc).__name__}: {exc} (a bug of pytest-ebpf; please "
                             "report it)"}
        return {"release": vm.release, "package": image.package, "version": image.version,
                "rc": vm.rc, "error": vm.error, "seconds": round(vm.seconds, 2),
                "ready": vm.ready,
                "console_tail": list(vm.console_tail)}

    def _write_job(self, run: KernelRun, kdir: Path) -> None:
        from pytest_ebpf.build.cargo import outcome_to_json
        from pytest_ebpf.session import ensure_built
        from pytest_ebpf.vm.guest import write_job

        config = self.config
        (kdir / IDS).write_text("".join(f"{i}\n" for i in run.ids))
        (kdir / BUILD).write_text(outcome_to_json(ensure_built(config)))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST_XDIST_", "PYTEST_CURRENT_TEST"))}
        env.update({GUEST_ENV: run.name, JOB_ENV: str(kdir)})
        write_job(kdir, [sys.executable, "-m", "pytest", *guest_args(config)], env,
                  str(config.invocation_params.dir))

    # -- replaying the guest's reports --------------------------------------------------------

    def _load(self, run: KernelRun) -> None:
        if run.loaded:
            return
        assert run.thread is not None
        run.thread.join()
        kdir = self.root / run.name
        try:
            run.result = json.loads((kdir / RESULT).read_text())
        except (OSError, ValueError) as exc:
            run.result = {"error": f"kernel {run.name}: the VM left no result ({exc})"}
        try:
            lines = (kdir / REPORTS).read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                continue  # a line cut short by a VM stopped at its timeout
            run.reports.setdefault(str(data.get("nodeid")), []).append(data)
        run.loaded = True

    def _reports(self, item: pytest.Item, run: KernelRun) -> list[pytest.TestReport]:
        self._load(run)
        config = self.config
        found = run.reports.get(item.nodeid, [])
        release = run.result.get("release")
        if found and any(d.get("when") == "teardown" for d in found):
            reports = []
            for data in found:
                report = config.hook.pytest_report_from_serializable(config=config, data=data)
                if release and report.when == "call":
                    report.user_properties.append(("ebpf.vm_release", release))
                reports.append(report)
            return reports
        return _failed(item, self._why_missing(run, bool(found)))

    def _why_missing(self, run: KernelRun, started: bool) -> str:
        result = run.result
        if result.get("error"):
            why = str(result["error"])
            tail = result.get("console_tail") or []
            if tail:
                why += "\nthe VM's console ended with:\n" + "\n".join(f"  {t}" for t in tail)
            return why
        log = _tail(self.root / run.name / LOG)
        what = "stopped during this test" if started else "did not report this test"
        return (f"kernel {run.name} ({result.get('release')}): the VM's pytest run {what} "
                f"(exit status {result.get('rc')}); its output ended with:\n"
                + "\n".join(f"  {ln}" for ln in log))


def _tail(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-LOG_TAIL:]
    except OSError:
        return ["(no output)"]


def _failed(item: pytest.Item, why: str) -> list[pytest.TestReport]:
    """The reports of an item its VM could not run: set-up passed, the call failed with *why*
    (one clear line first), teardown passed."""
    keywords: dict[str, Literal[1]] = {str(k): 1 for k in item.keywords}

    def report(when: str, outcome: str, longrepr: str | None) -> pytest.TestReport:
        return pytest.TestReport(nodeid=item.nodeid, location=item.location, keywords=keywords,
                                 outcome=outcome,  # type: ignore[arg-type]
                                 longrepr=longrepr, when=when)  # type: ignore[arg-type]

    return [report("setup", "passed", None), report("call", "failed", why),
            report("teardown", "passed", None)]


_HOST_ONLY = ("privileged", "report", "save_baseline", "vm_timeout")
"""Settings the guest does not get: it must load (privileged tests required there), and the
host writes the reports (the guest's view of the host is read-only)."""


def guest_args(config: pytest.Config) -> list[str]:
    """The guest's pytest arguments: the host's files, ini and ``--ebpf-*`` options, and what
    the guest needs (no cache, no xdist, its own basetemp, privileged tests required)."""
    args = ["-p", "no:cacheprovider", f"--rootdir={config.rootpath}",
            f"--basetemp={GUEST_TMP}/basetemp", "--ebpf-privileged=require"]
    if config.inipath is not None:
        args += ["-c", str(config.inipath)]
    for override in getattr(config.option, "override_ini", None) or []:
        args += ["-o", str(override)]
    for plugin in getattr(config.option, "plugins", None) or []:
        args += ["-p", str(plugin)]
    if config.pluginmanager.hasplugin("xdist"):
        args += ["-n", "0"]
    for opt in OPTIONS:
        value = config.getoption(f"ebpf_{opt.name}")
        if value is not None and opt.name not in _HOST_ONLY:
            args.append(f"{opt.flag}={value}")
    return [*args, *config.args]


def install(config: pytest.Config) -> None:
    """Register the host's VM plugin when a VM kernel is named (not inside a VM)."""
    settings = _settings(config)
    if settings is None or not settings.vms or guest_kernel() is not None:
        return
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None and workerinput.get(DIR_KEY):
        root, owner = Path(workerinput[DIR_KEY]), False
    else:
        root, owner = Path(tempfile.mkdtemp(prefix="pytest-ebpf-vm-")), True
    config.pluginmanager.register(VmMatrix(config, root, owner), "ebpf-vm-matrix")


def controller_dir(config: pytest.Config) -> str | None:
    """The xdist controller's VM directory for its workers (``None`` without VM kernels)."""
    matrix = config.pluginmanager.get_plugin("ebpf-vm-matrix")
    return str(matrix.root) if isinstance(matrix, VmMatrix) else None
