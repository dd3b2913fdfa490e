"""Kernel profiles: the verifier's version-dependent rules, and which kernel judges.

Every rule that changed with a kernel release is one :class:`Change` in :data:`CHANGES` (the
release that brought it and the commit, from the history of ``kernel/bpf/verifier.c``,
``include/uapi/linux/bpf.h`` and the files that register kfuncs). A :class:`KernelProfile` is a
kernel release plus what the rules depend on besides the release: whether the JIT is on and the
architecture. ``host`` is detected from the running kernel (``uname``,
``/proc/sys/net/core/bpf_jit_enable``); the named profiles (:data:`NAMED`) are Debian's and the
LTS kernels on x86-64 with the JIT on, as they ship (``CONFIG_BPF_JIT_ALWAYS_ON``). A kfunc a
:class:`Change` lists is missing from the kernels older than it; kfuncs no change lists are not
judged by release.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_ebpf.abi import ProgType
from pytest_ebpf.errors import EbpfError

__all__ = [
    "CHANGES",
    "NAMED",
    "PRIV_STACK_MIN_SIZE",
    "Change",
    "KernelProfile",
    "ProfileError",
    "choose_kernels",
    "host_profile",
    "named_profile",
    "parse_kernels",
]

PRIV_STACK_MIN_SIZE = 64
"""``BPF_PRIV_STACK_MIN_SIZE``: a frame of a program type with private stacks gets its own stack
(and so is held to 512 bytes alone) when its rounded depth is at least this."""

Version = tuple[int, int]


class ProfileError(EbpfError):
    """A kernel profile cannot be named or detected; the message names the fix."""


@dataclass(frozen=True)
class Change:
    """One version-dependent verifier rule."""

    feature: str
    """Stable id, used by :meth:`KernelProfile.has`."""
    version: Version
    """The first mainline release with the rule."""
    commit: str
    subject: str
    rule: str
    """What changed, in one line."""
    kfuncs: tuple[str, ...] = ()
    """The kernel functions the change added (a kernel without it has none of them in its BTF,
    and loaders refuse calls to them by name)."""


CHANGES: tuple[Change, ...] = (
    Change("bpf_to_bpf_calls", (4, 16), "cc8b0b92a169",
           "bpf: introduce function calls (function boundaries)",
           "BPF-to-BPF calls; at most 8 frames (MAX_CALL_FRAMES), combined stack 512 bytes"),
    Change("complexity_1m", (5, 2), "c04c0d2b968a",
           "bpf: increase complexity limit and maximum program size",
           "privileged programs may have 1M instructions (before: 4096, BPF_MAXINSNS)"),
    Change("bounded_loops", (5, 3), "2589726d12a1", "bpf: introduce bounded loops",
           "back-edges are allowed when the verifier can prove the loop ends"),
    Change("global_functions", (5, 6), "51c39bb1d5d1",
           "bpf: Introduce function-by-function verification",
           "global (non-static) functions are verified alone against their BTF prototype"),
    Change("tail_calls_in_subprograms", (5, 10), "7f6e4312e15a",
           "bpf: Limit caller's stack depth 256 for subprogs with tailcalls",
           "a subprogram may tail-call when the frames above it use less than 256 bytes"),
    Change("kfuncs", (5, 13), "e6ac2450d6de", "bpf: Support bpf program calling kernel function",
           "calls to kernel functions (kfuncs, BPF_PSEUDO_KFUNC_CALL)"),
    Change("bpf_loop", (5, 17), "e6f2dd0f8067", "bpf: Add bpf_loop helper",
           "the bpf_loop helper (id 181)"),
    Change("kfuncs_keys", (6, 1), "f3cf4134c5c6",
           "bpf: Add bpf_lookup_*_key() and bpf_key_put() kfuncs",
           "kfuncs of tracing programs to look up and release keys",
           kfuncs=("bpf_lookup_user_key", "bpf_lookup_system_key", "bpf_key_put")),
    Change("kfuncs_rcu_read_lock", (6, 2), "9bb00b2895cb",
           "bpf: Add kfunc bpf_rcu_read_lock/unlock()",
           "kfuncs that open and close an RCU read section",
           kfuncs=("bpf_rcu_read_lock", "bpf_rcu_read_unlock")),
    Change("kfuncs_iter_num", (6, 4), "6018e1f407cc", "bpf: implement numbers iterator",
           "the open-coded numbers iterator kfuncs (bpf_for, bpf_repeat)",
           kfuncs=("bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy")),
    Change("cpu_v4", (6, 6), "1f9a1ea821ff", "bpf: Support new sign-extension load insns",
           "cpu v4 instructions: sign-extending loads and moves, bswap, sdiv/smod, gotol"),
    Change("jit_stack_round_16", (6, 9), "682158ab532a",
           "bpf: Fix test verif_scale_strobemeta_subprogs failure due to llvm19",
           "round_up_stack_depth(): with the JIT each frame is rounded up to 16 bytes, not "
           "32, in the combined stack"),
    Change("may_goto", (6, 9), "011832b97b31", "bpf: Introduce may_goto instruction",
           "the may_goto instruction (bounded loops through a budget)"),
    Change("helper_refusal_wording", (6, 10), "786bf0e7e2ec",
           "bpf: improve error message for unsupported helper",
           "a helper the program's type may not call is refused with \"program of this type "
           "cannot use helper NAME#N\" (before: \"unknown func NAME#N\")"),
    Change("private_stack_x86", (6, 13), "e00931c02568",
           "bpf: Enable private stack for eligible subprogs",
           "x86-64 JIT: frames of kprobe, tracepoint, perf_event, raw_tracepoint and tracing "
           "(but iter) programs without tail calls get a private stack when they are 64 bytes "
           "or more, each held to 512 bytes alone (arm64: 6.17, 6c17a882d380)"),
)
_BY_FEATURE = {c.feature: c for c in CHANGES}
_BY_KFUNC = {name: c for c in CHANGES for name in c.kfuncs}

LAST_HELPER: tuple[tuple[Version, int], ...] = (
    ((5, 10), 155),  # bpf_redirect_peer
    ((5, 15), 175),  # bpf_task_pt_regs
    ((6, 1), 209),  # bpf_user_ringbuf_drain
    ((6, 2), 211),  # bpf_cgrp_storage_delete
)
"""The highest helper id of ``enum bpf_func_id`` by release (no helper was added after 6.2)."""

LAST_PROG_TYPE: tuple[tuple[Version, int], ...] = (
    ((5, 10), ProgType.SK_LOOKUP),
    ((5, 14), ProgType.SYSCALL),
    ((6, 4), ProgType.NETFILTER),
)
"""The highest ``enum bpf_prog_type`` value by release."""

PRIVATE_STACK_TYPES = frozenset({"kprobe", "tracepoint", "perf_event", "raw_tracepoint"})
"""Program types whose frames get private stacks (``bpf_enable_priv_stack``); ``tracing``
programs too, except iterators."""

KPROBE_PRIV_STACK_MULTI_ONLY: Version = (6, 18)
"""From this release, a ``kprobe``-type program gets private stacks only when it is attached
through ``kprobe.multi`` or ``kprobe.session`` (:data:`KPROBE_PRIV_STACK_ATTACH`): plain
kprobes, kretprobes and every uprobe kind add their frames up. Observed on 6.18 (the host of
``tests/test_vm_profiles.py``, ``tests/c/prof_stack.c``), against the 6.13 rule; the commit is
not identified, so releases 6.13 to 6.17 keep the 6.13 rule: where unsure, the profile lets a
program load rather than predict a rejection the kernel may not make."""
KPROBE_PRIV_STACK_ATTACH = frozenset({"trace_kprobe_multi", "trace_kprobe_session"})

NAMED: tuple[str, ...] = ("5.10", "5.15", "6.1", "6.6", "6.12", "6.18")
"""The named profiles, oldest first."""


@dataclass(frozen=True)
class KernelProfile:
    """A kernel whose verifier judges: its release, JIT and architecture."""

    name: str
    """``host`` or a named release (``6.1``)."""
    version: Version
    jit: bool = True
    arch: str = "x86_64"
    release: str = ""
    """The full release (``uname -r``) for ``host``; the name otherwise."""
    source: str = "named"
    """Where the profile came from, for the report header."""
    frame_round_override: int | None = None
    """``--ebpf-stack-frame``: round every frame to this instead of the kernel's rule."""

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "label": self.label, "release": self.release,
                "jit": self.jit, "arch": self.arch, "source": self.source,
                "frame_round": self.frame_round}

    def has(self, feature: str) -> bool:
        """Does this kernel have the rule *feature* (an id of :data:`CHANGES`)?"""
        change = _BY_FEATURE[feature]
        if feature == "private_stack_x86":
            since = {"x86_64": change.version, "aarch64": (6, 17)}.get(self.arch)
            return self.jit and since is not None and self.version >= since
        return self.version >= change.version

    def change(self, feature: str) -> Change:
        return _BY_FEATURE[feature]

    def missing_kfunc(self, name: str) -> Change | None:
        """The change that brought kfunc *name* when this kernel is older than it; None when
        the kernel has it or :data:`CHANGES` does not know it."""
        change = _BY_KFUNC.get(name)
        return change if change is not None and not self.has(change.feature) else None

    @property
    def label(self) -> str:
        """``6.1``, or ``6.18 (host)`` for the detected kernel."""
        if self.name == "host":
            return f"{self.version[0]}.{self.version[1]} (host)"
        return self.name

    @property
    def frame_round(self) -> int:
        """Bytes each frame is rounded up to in the combined stack depth."""
        if self.frame_round_override is not None:
            return self.frame_round_override
        return 16 if self.jit and self.has("jit_stack_round_16") else 32

    @property
    def frame_round_why(self) -> str:
        """Why :attr:`frame_round` is what it is, for messages."""
        if self.frame_round_override is not None:
            return f"frames rounded to {self.frame_round_override} (--ebpf-stack-frame)"
        if self.frame_round == 16:
            return "frames rounded to 16 with the JIT"
        why = "" if self.jit else " (JIT off: the interpreter's granularity)"
        return f"frames rounded to 32{why}"

    def private_stack(self, prog_type: str, expected_attach_type: str | None = None) -> bool:
        """Do frames of *prog_type* (at least :data:`PRIV_STACK_MIN_SIZE` bytes) get a private
        stack on this kernel?"""
        if not self.has("private_stack_x86"):
            return False
        if prog_type == "kprobe" and self.version >= KPROBE_PRIV_STACK_MULTI_ONLY:
            return expected_attach_type in KPROBE_PRIV_STACK_ATTACH
        if prog_type in PRIVATE_STACK_TYPES:
            return True
        return prog_type == "tracing" and expected_attach_type != "trace_iter"

    @property
    def insn_limit(self) -> int:
        """Most instructions a privileged load may have (and the verifier may process)."""
        return 1_000_000 if self.has("complexity_1m") else 4096

    @property
    def last_helper(self) -> int | None:
        """The highest helper id this kernel knows (None: older than the table)."""
        return _last(LAST_HELPER, self.version)

    @property
    def last_prog_type(self) -> int | None:
        return _last(LAST_PROG_TYPE, self.version)


def _last(table: tuple[tuple[Version, int], ...], version: Version) -> int | None:
    found = None
    for since, value in table:
        if version >= since:
            found = value
    return found


_RELEASE = re.compile(r"^(\d+)\.(\d+)")


def _version(text: str) -> Version | None:
    m = _RELEASE.match(text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def host_profile(release: str | None = None, jit_file: Path | None = None,
                 arch: str | None = None) -> KernelProfile:
    """The running kernel's profile (arguments replace what is read, for tests)."""
    release = release or platform.release()
    version = _version(release)
    if version is None:
        raise ProfileError(f"cannot read the kernel version from uname release {release!r}; "
                           "fix: name a kernel profile, e.g. --ebpf-kernel=6.1")
    path = jit_file or Path("/proc/sys/net/core/bpf_jit_enable")
    try:
        jit = path.read_text().strip() not in ("", "0")
        jit_how = "JIT on" if jit else "JIT off"
    except OSError:  # no /proc (a container) or not readable: the stricter interpreter rules
        jit, jit_how = False, f"JIT state unreadable ({path}): judged as JIT off"
    arch = arch or os.uname().machine
    return KernelProfile(name="host", version=version, jit=jit, arch=arch, release=release,
                         source=f"detected: {release}, {jit_how}, {arch}")


def named_profile(name: str) -> KernelProfile:
    """A named profile; anything else is a :class:`ProfileError` listing the names."""
    if name not in NAMED:
        raise ProfileError(f"unknown kernel profile {name!r}; use host or one of "
                           f"{', '.join(NAMED)}")
    version = _version(name)
    assert version is not None
    return KernelProfile(name=name, version=version, release=name)


def parse_kernels(spec: str, source: str = "option", stack_frame: int | None = None,
                  host: KernelProfile | None = None) -> tuple[KernelProfile, ...]:
    """``host,6.1`` -> profiles in the order given, duplicates dropped. ``host`` that cannot be
    detected is a :class:`ProfileError`; *host* replaces the detection (tests)."""
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ProfileError("no kernel profile named; use host or one of " + ", ".join(NAMED))
    out: list[KernelProfile] = []
    for name in dict.fromkeys(names):
        profile = (host or host_profile()) if name == "host" else named_profile(name)
        if name != "host":
            profile = replace(profile, source=source)
        if stack_frame is not None:
            profile = replace(profile, frame_round_override=stack_frame)
        out.append(profile)
    return tuple(out)


def choose_kernels(spec: str | None, source: str = "option",
                   stack_frame: int | None = None) -> tuple[KernelProfile, ...]:
    """The profiles *spec* names (``host,6.1``; *source* says who named them), or with no
    *spec* the default: ``host`` when it can be detected, else the oldest named profile, its
    source saying why. *stack_frame* overrides every profile's frame rounding.
    :class:`ProfileError` for a name that is not a profile."""
    if spec:
        return parse_kernels(spec, source=source, stack_frame=stack_frame)
    try:
        profile, why = host_profile(), "default: the running kernel"
        profile = replace(profile, source=f"{profile.source}; {why}")
    except ProfileError as exc:
        why = f"default: {exc}; judged by the oldest profile"
        profile = replace(named_profile(NAMED[0]), source=why)
    return (replace(profile, frame_round_override=stack_frame),)
