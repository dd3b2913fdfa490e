"""The ``pytest-ebpf`` command: ``doctor``, ``inspect`` and ``verify``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _doctor(args: argparse.Namespace) -> int:
    from pathlib import Path  # here: inspect does not need it, and start-up time counts

    from pytest_ebpf.build.doctor import render, run_checks

    checks = run_checks(args.crate, Path(args.root).resolve(), args.toolchain, args.target,
                        args.build_std)
    render(checks, sys.stdout)
    return 1 if any(c.blocks_build for c in checks) else 0


def _inspect(args: argparse.Namespace) -> int:
    from pytest_ebpf.cli.inspect import run_inspect

    code: int = run_inspect(args.object, as_json=args.json or args.pretty,
                            kernels=args.kernel, stack_frame=args.stack_frame,
                            pretty=args.pretty, max_size=args.max_object_size,
                            strict=args.strict)
    return code


def _verify(args: argparse.Namespace) -> int:
    import os

    from pytest_ebpf.cli.verify import run_verify
    from pytest_ebpf.obj.file import MAX_OBJECT_SIZE_ENV

    if args.max_object_size is not None:  # load_object reads it (option > env > default)
        os.environ[MAX_OBJECT_SIZE_ENV] = str(args.max_object_size)

    kernels = [k.strip() for k in (args.kernel or "host").split(",") if k.strip()]
    if kernels != ["host"]:
        from pytest_ebpf.cli.matrix import run_verify_matrix

        if args.log is not False:
            sys.stderr.write("error: --log prints one kernel's logs; with --kernel, use "
                             "--json (each program's decisive line is in 'error')\n")
            return 2
        matrix: int = run_verify_matrix(args.object, kernels, as_json=args.json or args.pretty,
                                        pretty=args.pretty, loader=args.loader,
                                        optional=args.optional, timeout=args.vm_timeout)
        return matrix
    code: int = run_verify(args.object, as_json=args.json or args.pretty, loader=args.loader,
                           pretty=args.pretty, log=args.log, optional=args.optional)
    return code


def _compare(args: argparse.Namespace) -> int:
    from pytest_ebpf.cli.compare import run_compare

    code: int = run_compare(args.old, args.new, args.threshold, as_json=args.json)
    return code


def _kernels(args: argparse.Namespace) -> int:
    from pytest_ebpf.cli.kernels import run_fetch, run_list

    if args.action == "list":
        code: int = run_list(as_json=args.json)
    else:
        code = run_fetch(args.names, refresh=args.refresh)
    return code


def _threshold_spec(text: str) -> object:
    from pytest_ebpf.analysis.baseline import parse_thresholds

    try:
        return parse_thresholds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _size(text: str) -> int:
    from pytest_ebpf.obj.file import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _max_size_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-object-size", type=_size, default=None, metavar="SIZE",
                   help="refuse object files larger than this, in bytes or with K/M/G "
                        "(default: $PYTEST_EBPF_MAX_OBJECT_SIZE, else 256M)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-ebpf")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for: importlib.metadata costs every other
    command 20 ms of start-up."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        sys.stdout.write(f"pytest-ebpf {_version()}\n")  # stdout, as argparse's own
        parser.exit()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pytest-ebpf", description=__doc__)
    p.add_argument("--version", action=_VersionAction, nargs=0,
                   help="show the version and exit")
    sub = p.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="check every prerequisite of an eBPF build")
    doc.add_argument("--crate", help="the eBPF crate (directory or package name)")
    doc.add_argument("--root", default=".", help="where to look for the crate (default: .)")
    doc.add_argument("--toolchain", help="rustup toolchain (default: what rustup picks)")
    doc.add_argument("--target", default="bpfel-unknown-none",
                     choices=("bpfel-unknown-none", "bpfeb-unknown-none"))
    doc.add_argument("--build-std", default="auto")
    doc.set_defaults(func=_doctor)
    ins = sub.add_parser("inspect", help="programs, maps, stack depths and calls of an object")
    ins.add_argument("object", help="an eBPF ELF object")
    ins.add_argument("--json", action="store_true", help="machine-readable output (one line)")
    ins.add_argument("--pretty", action="store_true", help="JSON output, indented")
    ins.add_argument("--kernel", metavar="PROFILES",
                     help="judge with these kernel profiles, e.g. host,6.1 (host, 5.10, 5.15, "
                          "6.1, 6.6, 6.12, 6.18; default: the running kernel)")
    ins.add_argument("--stack-frame", type=int, default=None, choices=(32, 16),
                     help="round each frame to this many bytes for the combined depth, "
                          "whatever the kernel does (default: each kernel's own rule)")
    ins.add_argument("--strict", action="store_true",
                     help="exit 1 when a rule finds an error (for shell-based CI)")
    _max_size_option(ins)
    ins.set_defaults(func=_inspect)
    ver = sub.add_parser("verify", help="load every program into the kernel (root) and print "
                         "the verifier's verdict")
    ver.add_argument("object", help="an eBPF ELF object")
    ver.add_argument("--json", action="store_true", help="machine-readable output (one line)")
    ver.add_argument("--pretty", action="store_true", help="JSON output, indented")
    ver.add_argument("--loader", default="auto", choices=("auto", "bpftool", "native"))
    ver.add_argument("--log", nargs="?", const=True, default=False, metavar="PROGRAM",
                     help="also print the verifier log of every program, or of PROGRAM "
                          "(put --log after the object)")
    ver.add_argument("--kernel", default=None, metavar="KERNELS",
                     help="comma-separated: host (the running kernel, the default) and VM "
                          "kernels (6.1, 6.12: Debian's, booted under qemu): a program x "
                          "kernel matrix")
    ver.add_argument("--vm-timeout", type=float, default=600.0, metavar="SECONDS",
                     help="seconds each VM may run before it is stopped (default: 600)")
    ver.add_argument("--optional", action="store_true",
                     help="also load the programs of '?' sections (libbpf's no-autoload "
                          "marker), each alone")
    _max_size_option(ver)
    ver.set_defaults(func=_verify)
    cmp = sub.add_parser("compare", help="compare two reports (--ebpf-save-baseline) and fail "
                         "when a figure grew past its threshold, as veristat -C")
    cmp.add_argument("old", help="the baseline report (JSON)")
    cmp.add_argument("new", help="the report to check against it")
    cmp.add_argument("--threshold", type=_threshold_spec, default=None, metavar="SPEC",
                     help="allowed growth, e.g. instructions=10%%,stack=32,"
                          "processed_insns[6.1]=5%% (default: instructions=10%%,stack=0,"
                          "processed_insns=10%%)")
    cmp.add_argument("--json", action="store_true", help="machine-readable output (one line)")
    cmp.set_defaults(func=_compare)
    ker = sub.add_parser("kernels", help="the Debian kernels --ebpf-kernel boots in VMs: list "
                         "the download cache, or fill it")
    ker_sub = ker.add_subparsers(dest="action", required=True)
    ker_list = ker_sub.add_parser("list", help="each known kernel and whether it is cached")
    ker_list.add_argument("--json", action="store_true", help="machine-readable output (one line)")
    ker_fetch = ker_sub.add_parser("fetch", help="download kernel images into the cache "
                                   "($PYTEST_EBPF_KERNEL_CACHE, else ~/.cache/pytest-ebpf/kernels)")
    ker_fetch.add_argument("names", nargs="*", metavar="NAME",
                           help="kernels to fetch, e.g. 6.1 6.12 (default: every known one)")
    ker_fetch.add_argument("--refresh", action="store_true",
                           help="download again even when the cached image checks out (to get "
                                "Debian's newest build)")
    ker.set_defaults(func=_kernels)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
