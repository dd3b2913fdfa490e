"""Section name -> program type.

eBPF loaders decide a program's type from the name of the ELF section it lives in. Two naming
schemes matter here:

* libbpf's (``SEC("xdp")``, ``SEC("kprobe/do_unlinkat")``, ``SEC("cgroup/connect4")``...), where
  a name is an exact keyword, or a keyword optionally followed by ``/`` and an attach target,
  or a keyword that must be followed by ``/``;
* Aya's (the ``aya-ebpf`` attribute macros: ``xdp``, ``xdp.frags/devmap``, ``classifier``,
  ``kprobe/<fn>``, ``uprobe/<path>:<fn>+<off>``, ``tracepoint/<category>/<name>``,
  ``raw_tp/<tp>``, ``tp_btf/<tp>``, ``fentry/<fn>``, ``lsm/<hook>``, ``cgroup_skb/ingress``,
  ``cgroup/connect4``, ``sk_skb/stream_parser``...), parsed by Aya from the first ``/``-separated
  word; older Aya releases also appended the program name (``xdp/my_prog``).

The table below is this project's own; it names program and attach types by the members of
:class:`pytest_ebpf.abi.ProgType` and :class:`pytest_ebpf.abi.AttachType` (a misspelt one fails
at import), and :class:`ProgramKind` carries their labels, the lower-case ``enum bpf_prog_type``
and ``enum bpf_attach_type`` names without their ``BPF_PROG_TYPE_`` / ``BPF_`` prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from pytest_ebpf.abi import AttachType, ProgType

__all__ = ["BTF_CTX_TYPES", "ProgramKind", "known_section_prefixes", "program_type",
           "table_kinds"]

BTF_CTX_TYPES = frozenset({"tracing", "lsm", "ext", "struct_ops"})
"""Program types that name a BTF-typed attach target when they are loaded (a kernel function,
or another program's): their context is that target's arguments, so what they may read there
depends on the target, not on the program's kind."""


@dataclass(frozen=True)
class ProgramKind:
    """What a program section name says about the program."""

    prog_type: str
    """Kernel program type without ``BPF_PROG_TYPE_``, lower case: ``xdp``, ``sched_cls``,
    ``kprobe``, ``tracepoint``, ``raw_tracepoint``, ``tracing``, ``lsm``..."""
    expected_attach_type: str | None
    """Kernel attach type without ``BPF_``, lower case (``xdp``, ``trace_fentry``, ``lsm_mac``,
    ``cgroup_inet_ingress``, ``cgroup_inet4_connect``...), or None when the loader passes none."""
    attach_target: str | None
    """What the section name says to attach to: the text after the keyword's ``/``
    (``syscalls/sys_enter_execve``, ``tcp_connect``, ``/bin/bash:readline``); None when absent."""
    label: str
    """The program's flavour, finer than ``prog_type``: ``xdp``, ``classifier``, ``tcx``,
    ``kprobe``, ``kretprobe``, ``uprobe``, ``uretprobe``, ``ksyscall``, ``kretsyscall``, ``usdt``,
    ``tracepoint``, ``raw_tracepoint``, ``btf_tracepoint``, ``fentry``, ``fexit``, ``fmod_ret``,
    ``lsm``, ``iter``, ``socket_filter``, ``sk_msg``, ``sk_skb``, ``cgroup_skb``, ...
    (Aya's macro names where Aya has the program type)."""
    sleepable: bool = False
    """True for the ``.s`` variants (``lsm.s/``, ``fentry.s/``, ``uprobe.s``, ``syscall``...)."""
    retprobe: bool = False
    """True for return probes (``kretprobe``, ``uretprobe``, ``kretsyscall``, the ``.multi``
    return variants)."""
    multi: bool = False
    """True for the multi-attach variants (``kprobe.multi``, ``uprobe.multi``...)."""
    frags: bool = False
    """True for XDP programs that accept multi-buffer frames (``xdp.frags``)."""
    keyword: str = ""
    """The section-name keyword that matched (``kprobe``, ``cgroup/connect4``, ``xdp``...)."""
    autoload: bool = True
    """False for a ``?``-prefixed section (libbpf's ``SEC("?xdp")``): loaders leave the program
    out unless it is asked for by name."""

    @property
    def helper_scope(self) -> str:
        """What decides which helpers the kernel lets the program call: its type, its expected
        attach type and whether it may sleep (``xdp:xdp``, ``kprobe:``, ``lsm:lsm_mac.s``); the
        key of the helper tables (:mod:`pytest_ebpf.analysis.helper_types`)."""
        sleep = ".s" if self.sleepable else ""
        return f"{self.prog_type}:{self.expected_attach_type or ''}{sleep}"

    @property
    def prog_type_id(self) -> ProgType:
        """:attr:`prog_type` as the kernel's number (``ProgType.XDP`` for ``xdp``)."""
        return ProgType[self.prog_type.upper()]

    @property
    def attach_type_id(self) -> AttachType | None:
        """:attr:`expected_attach_type` as the kernel's number, or None."""
        attach = self.expected_attach_type
        return None if attach is None else AttachType[attach.upper()]


# Matching modes, following the libbpf convention:
#   _EXACT  the section name equals the keyword;
#   _PLUS   the name equals the keyword or starts with keyword + "/" (the rest is the target).
_EXACT = "exact"
_PLUS = "plus"

# (keyword, mode, prog_type, expected_attach_type, label, flags)
# flags: "s" sleepable, "r" retprobe, "m" multi, "f" frags. Order matters: the first match wins,
# so longer keywords come before their prefixes.
_Row = tuple[str, str, ProgType, Optional[AttachType], str, str]
_P, _A = ProgType, AttachType  # short names for the table

_TABLE: tuple[_Row, ...] = (
    ("socket", _PLUS, _P.SOCKET_FILTER, None, "socket_filter", ""),
    ("sk_reuseport/migrate", _EXACT, _P.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT_OR_MIGRATE,
     "sk_reuseport", ""),
    ("sk_reuseport", _EXACT, _P.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT, "sk_reuseport", ""),
    # kprobes and uprobes
    ("kprobe.multi", _PLUS, _P.KPROBE, _A.TRACE_KPROBE_MULTI, "kprobe", "m"),
    ("kretprobe.multi", _PLUS, _P.KPROBE, _A.TRACE_KPROBE_MULTI, "kretprobe", "mr"),
    ("kprobe.session", _PLUS, _P.KPROBE, _A.TRACE_KPROBE_SESSION, "kprobe", "m"),
    ("uprobe.multi.s", _PLUS, _P.KPROBE, _A.TRACE_UPROBE_MULTI, "uprobe", "ms"),
    ("uretprobe.multi.s", _PLUS, _P.KPROBE, _A.TRACE_UPROBE_MULTI, "uretprobe", "mrs"),
    ("uprobe.multi", _PLUS, _P.KPROBE, _A.TRACE_UPROBE_MULTI, "uprobe", "m"),
    ("uretprobe.multi", _PLUS, _P.KPROBE, _A.TRACE_UPROBE_MULTI, "uretprobe", "mr"),
    ("uprobe.session.s", _PLUS, _P.KPROBE, _A.TRACE_UPROBE_SESSION, "uprobe", "ms"),
    ("uprobe.session", _PLUS, _P.KPROBE, _A.TRACE_UPROBE_SESSION, "uprobe", "m"),
    ("kprobe", _PLUS, _P.KPROBE, None, "kprobe", ""),
    ("kretprobe", _PLUS, _P.KPROBE, None, "kretprobe", "r"),
    ("uprobe.s", _PLUS, _P.KPROBE, None, "uprobe", "s"),
    ("uprobe", _PLUS, _P.KPROBE, None, "uprobe", ""),
    ("uretprobe.s", _PLUS, _P.KPROBE, None, "uretprobe", "rs"),
    ("uretprobe", _PLUS, _P.KPROBE, None, "uretprobe", "r"),
    ("ksyscall", _PLUS, _P.KPROBE, None, "ksyscall", ""),
    ("kretsyscall", _PLUS, _P.KPROBE, None, "kretsyscall", "r"),
    ("usdt.s", _PLUS, _P.KPROBE, None, "usdt", "s"),
    ("usdt", _PLUS, _P.KPROBE, None, "usdt", ""),
    # traffic control
    ("tc/ingress", _EXACT, _P.SCHED_CLS, _A.TCX_INGRESS, "tcx", ""),
    ("tc/egress", _EXACT, _P.SCHED_CLS, _A.TCX_EGRESS, "tcx", ""),
    ("tcx/ingress", _EXACT, _P.SCHED_CLS, _A.TCX_INGRESS, "tcx", ""),
    ("tcx/egress", _EXACT, _P.SCHED_CLS, _A.TCX_EGRESS, "tcx", ""),
    ("tc", _EXACT, _P.SCHED_CLS, None, "classifier", ""),
    ("classifier", _PLUS, _P.SCHED_CLS, None, "classifier", ""),
    ("action", _PLUS, _P.SCHED_ACT, None, "action", ""),
    ("netkit/primary", _EXACT, _P.SCHED_CLS, _A.NETKIT_PRIMARY, "netkit", ""),
    ("netkit/peer", _EXACT, _P.SCHED_CLS, _A.NETKIT_PEER, "netkit", ""),
    # tracepoints
    ("tracepoint.s", _PLUS, _P.TRACEPOINT, None, "tracepoint", "s"),
    ("tp.s", _PLUS, _P.TRACEPOINT, None, "tracepoint", "s"),
    ("tracepoint", _PLUS, _P.TRACEPOINT, None, "tracepoint", ""),
    ("tp", _PLUS, _P.TRACEPOINT, None, "tracepoint", ""),
    ("raw_tracepoint.s", _PLUS, _P.RAW_TRACEPOINT, None, "raw_tracepoint", "s"),
    ("raw_tp.s", _PLUS, _P.RAW_TRACEPOINT, None, "raw_tracepoint", "s"),
    ("raw_tracepoint.w", _PLUS, _P.RAW_TRACEPOINT_WRITABLE, None, "raw_tracepoint_writable", ""),
    ("raw_tp.w", _PLUS, _P.RAW_TRACEPOINT_WRITABLE, None, "raw_tracepoint_writable", ""),
    ("raw_tracepoint", _PLUS, _P.RAW_TRACEPOINT, None, "raw_tracepoint", ""),
    ("raw_tp", _PLUS, _P.RAW_TRACEPOINT, None, "raw_tracepoint", ""),
    ("tp_btf.s", _PLUS, _P.TRACING, _A.TRACE_RAW_TP, "btf_tracepoint", "s"),
    ("tp_btf", _PLUS, _P.TRACING, _A.TRACE_RAW_TP, "btf_tracepoint", ""),
    # BTF-attached tracing
    ("fentry.multi.s", _PLUS, _P.TRACING, _A.TRACE_FENTRY_MULTI, "fentry", "ms"),
    ("fexit.multi.s", _PLUS, _P.TRACING, _A.TRACE_FEXIT_MULTI, "fexit", "ms"),
    ("fentry.multi", _PLUS, _P.TRACING, _A.TRACE_FENTRY_MULTI, "fentry", "m"),
    ("fexit.multi", _PLUS, _P.TRACING, _A.TRACE_FEXIT_MULTI, "fexit", "m"),
    ("fsession.multi.s", _PLUS, _P.TRACING, _A.TRACE_FSESSION_MULTI, "fsession", "ms"),
    ("fsession.multi", _PLUS, _P.TRACING, _A.TRACE_FSESSION_MULTI, "fsession", "m"),
    ("fsession.s", _PLUS, _P.TRACING, _A.TRACE_FSESSION, "fsession", "s"),
    ("fsession", _PLUS, _P.TRACING, _A.TRACE_FSESSION, "fsession", ""),
    ("fentry.s", _PLUS, _P.TRACING, _A.TRACE_FENTRY, "fentry", "s"),
    ("fexit.s", _PLUS, _P.TRACING, _A.TRACE_FEXIT, "fexit", "s"),
    ("fmod_ret.s", _PLUS, _P.TRACING, _A.MODIFY_RETURN, "fmod_ret", "s"),
    ("fentry", _PLUS, _P.TRACING, _A.TRACE_FENTRY, "fentry", ""),
    ("fexit", _PLUS, _P.TRACING, _A.TRACE_FEXIT, "fexit", ""),
    ("fmod_ret", _PLUS, _P.TRACING, _A.MODIFY_RETURN, "fmod_ret", ""),
    ("freplace", _PLUS, _P.EXT, None, "extension", ""),
    ("lsm_cgroup", _PLUS, _P.LSM, _A.LSM_CGROUP, "lsm_cgroup", ""),
    ("lsm.s", _PLUS, _P.LSM, _A.LSM_MAC, "lsm", "s"),
    ("lsm", _PLUS, _P.LSM, _A.LSM_MAC, "lsm", ""),
    ("iter.s", _PLUS, _P.TRACING, _A.TRACE_ITER, "iter", "s"),
    ("iter", _PLUS, _P.TRACING, _A.TRACE_ITER, "iter", ""),
    ("syscall", _EXACT, _P.SYSCALL, None, "syscall", "s"),
    # XDP
    ("xdp.frags/devmap", _EXACT, _P.XDP, _A.XDP_DEVMAP, "xdp", "f"),
    ("xdp/devmap", _EXACT, _P.XDP, _A.XDP_DEVMAP, "xdp", ""),
    ("xdp.frags/cpumap", _EXACT, _P.XDP, _A.XDP_CPUMAP, "xdp", "f"),
    ("xdp/cpumap", _EXACT, _P.XDP, _A.XDP_CPUMAP, "xdp", ""),
    ("xdp.frags", _EXACT, _P.XDP, _A.XDP, "xdp", "f"),
    ("xdp", _EXACT, _P.XDP, _A.XDP, "xdp", ""),
    ("perf_event", _EXACT, _P.PERF_EVENT, None, "perf_event", ""),
    ("lwt_in", _EXACT, _P.LWT_IN, None, "lwt_in", ""),
    ("lwt_out", _EXACT, _P.LWT_OUT, None, "lwt_out", ""),
    ("lwt_xmit", _EXACT, _P.LWT_XMIT, None, "lwt_xmit", ""),
    ("lwt_seg6local", _EXACT, _P.LWT_SEG6LOCAL, None, "lwt_seg6local", ""),
    ("sockops", _EXACT, _P.SOCK_OPS, _A.CGROUP_SOCK_OPS, "sock_ops", ""),
    ("sk_skb/stream_parser", _EXACT, _P.SK_SKB, _A.SK_SKB_STREAM_PARSER, "sk_skb", ""),
    ("sk_skb/stream_verdict", _EXACT, _P.SK_SKB, _A.SK_SKB_STREAM_VERDICT, "sk_skb", ""),
    ("sk_skb/verdict", _EXACT, _P.SK_SKB, _A.SK_SKB_VERDICT, "sk_skb", ""),
    ("sk_skb", _EXACT, _P.SK_SKB, None, "sk_skb", ""),
    ("sk_msg", _EXACT, _P.SK_MSG, _A.SK_MSG_VERDICT, "sk_msg", ""),
    ("lirc_mode2", _EXACT, _P.LIRC_MODE2, _A.LIRC_MODE2, "lirc_mode2", ""),
    ("flow_dissector", _EXACT, _P.FLOW_DISSECTOR, _A.FLOW_DISSECTOR, "flow_dissector", ""),
    # cgroups
    ("cgroup_skb/ingress", _EXACT, _P.CGROUP_SKB, _A.CGROUP_INET_INGRESS, "cgroup_skb", ""),
    ("cgroup_skb/egress", _EXACT, _P.CGROUP_SKB, _A.CGROUP_INET_EGRESS, "cgroup_skb", ""),
    ("cgroup/skb", _EXACT, _P.CGROUP_SKB, None, "cgroup_skb", ""),
    ("cgroup/sock_create", _EXACT, _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, "cgroup_sock", ""),
    ("cgroup/sock_release", _EXACT, _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_RELEASE, "cgroup_sock",
     ""),
    ("cgroup/sock", _EXACT, _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, "cgroup_sock", ""),
    ("cgroup/post_bind4", _EXACT, _P.CGROUP_SOCK, _A.CGROUP_INET4_POST_BIND, "cgroup_sock", ""),
    ("cgroup/post_bind6", _EXACT, _P.CGROUP_SOCK, _A.CGROUP_INET6_POST_BIND, "cgroup_sock", ""),
    ("cgroup/bind4", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_BIND, "cgroup_sock_addr", ""),
    ("cgroup/bind6", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_BIND, "cgroup_sock_addr", ""),
    ("cgroup/connect4", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_CONNECT, "cgroup_sock_addr",
     ""),
    ("cgroup/connect6", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_CONNECT, "cgroup_sock_addr",
     ""),
    ("cgroup/connect_unix", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_CONNECT,
     "cgroup_sock_addr", ""),
    ("cgroup/sendmsg4", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_SENDMSG, "cgroup_sock_addr",
     ""),
    ("cgroup/sendmsg6", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_SENDMSG, "cgroup_sock_addr",
     ""),
    ("cgroup/sendmsg_unix", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_SENDMSG,
     "cgroup_sock_addr", ""),
    ("cgroup/recvmsg4", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_RECVMSG, "cgroup_sock_addr",
     ""),
    ("cgroup/recvmsg6", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_RECVMSG, "cgroup_sock_addr",
     ""),
    ("cgroup/recvmsg_unix", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_RECVMSG,
     "cgroup_sock_addr", ""),
    ("cgroup/getpeername4", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETPEERNAME,
     "cgroup_sock_addr", ""),
    ("cgroup/getpeername6", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETPEERNAME,
     "cgroup_sock_addr", ""),
    ("cgroup/getpeername_unix", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETPEERNAME,
     "cgroup_sock_addr", ""),
    ("cgroup/getsockname4", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETSOCKNAME,
     "cgroup_sock_addr", ""),
    ("cgroup/getsockname6", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETSOCKNAME,
     "cgroup_sock_addr", ""),
    ("cgroup/getsockname_unix", _EXACT, _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETSOCKNAME,
     "cgroup_sock_addr", ""),
    ("cgroup/sysctl", _EXACT, _P.CGROUP_SYSCTL, _A.CGROUP_SYSCTL, "cgroup_sysctl", ""),
    ("cgroup/getsockopt", _EXACT, _P.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT, "cgroup_sockopt", ""),
    ("cgroup/setsockopt", _EXACT, _P.CGROUP_SOCKOPT, _A.CGROUP_SETSOCKOPT, "cgroup_sockopt", ""),
    ("cgroup/dev", _EXACT, _P.CGROUP_DEVICE, _A.CGROUP_DEVICE, "cgroup_device", ""),
    ("struct_ops.s", _PLUS, _P.STRUCT_OPS, None, "struct_ops", "s"),
    ("struct_ops", _PLUS, _P.STRUCT_OPS, None, "struct_ops", ""),
    ("sk_lookup", _EXACT, _P.SK_LOOKUP, _A.SK_LOOKUP, "sk_lookup", ""),
    ("netfilter", _EXACT, _P.NETFILTER, _A.NETFILTER, "netfilter", ""),
)

# Keywords that Aya (and pre-1.0 libbpf) accepted with extra "/..." words after them, where the
# table above only has an exact entry. The extra words are a program name, not a target.
_LOOSE_PREFIXES: tuple[str, ...] = (
    "xdp.frags/devmap", "xdp.frags/cpumap", "xdp/devmap", "xdp/cpumap", "xdp.frags", "xdp",
    "tc", "perf_event", "sk_msg", "sk_skb/stream_parser", "sk_skb/stream_verdict",
    "sk_skb/verdict", "sk_lookup", "sockops", "flow_dissector", "lirc_mode2", "cgroup_skb/ingress",
    "cgroup_skb/egress", "cgroup/skb", "cgroup/sysctl", "cgroup/dev", "cgroup/getsockopt",
    "cgroup/setsockopt", "cgroup/sock_create", "cgroup/sock_release", "cgroup/sock",
    "cgroup/post_bind4", "cgroup/post_bind6", "cgroup/bind4", "cgroup/bind6", "cgroup/connect4",
    "cgroup/connect6", "cgroup/sendmsg4", "cgroup/sendmsg6", "cgroup/recvmsg4",
    "cgroup/recvmsg6", "cgroup/getpeername4", "cgroup/getpeername6", "cgroup/getsockname4",
    "cgroup/getsockname6", "sk_reuseport/migrate", "sk_reuseport", "lwt_in", "lwt_out",
    "lwt_xmit", "lwt_seg6local", "netfilter", "syscall",
)

_BY_KEYWORD = {row[0]: row for row in _TABLE}


def _kind(row: _Row, target: str | None) -> ProgramKind:
    keyword, _mode, prog_type, attach, label, flags = row
    return ProgramKind(
        prog_type=prog_type.label,
        expected_attach_type=None if attach is None else attach.label,
        attach_target=target or None,
        label=label,
        sleepable="s" in flags,
        retprobe="r" in flags,
        multi="m" in flags,
        frags="f" in flags,
        keyword=keyword,
    )


def program_type(section_name: str) -> ProgramKind | None:
    """The program kind a section name declares, or None for a section that holds no program.

    Recognises libbpf's ``SEC()`` names and the names Aya's macros emit (see the module doc);
    a leading ``?`` (libbpf: not loaded unless asked for) gives the same kind with
    :attr:`ProgramKind.autoload` False.
    """
    if section_name.startswith("?"):
        optional = program_type(section_name[1:])
        return None if optional is None else replace(optional, autoload=False)
    if not section_name or section_name.startswith("."):
        return None
    for row in _TABLE:
        keyword, mode = row[0], row[1]
        if mode == _EXACT:
            if section_name == keyword:
                return _kind(row, None)
        elif section_name == keyword:
            return _kind(row, None)
        elif section_name.startswith(keyword + "/"):
            return _kind(row, section_name[len(keyword) + 1 :])
    for keyword in _LOOSE_PREFIXES:
        if section_name.startswith(keyword + "/"):
            return _kind(_BY_KEYWORD[keyword], None)
    return None


def table_kinds() -> tuple[ProgramKind, ...]:
    """One kind per keyword of the table (no attach target), in the table's order."""
    return tuple(_kind(row, None) for row in _TABLE)


def known_section_prefixes() -> tuple[str, ...]:
    """Every keyword of the table, for error messages and documentation."""
    return tuple(row[0] for row in _TABLE)
