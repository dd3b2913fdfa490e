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

The table below is this project's own; kernel names are the lower-case ``enum bpf_prog_type``
and ``enum bpf_attach_type`` names without their ``BPF_PROG_TYPE_`` / ``BPF_`` prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["ProgramKind", "known_section_prefixes", "program_type"]


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


# Matching modes, following the libbpf convention:
#   _EXACT  the section name equals the keyword;
#   _PLUS   the name equals the keyword or starts with keyword + "/" (the rest is the target).
_EXACT = "exact"
_PLUS = "plus"

# (keyword, mode, prog_type, expected_attach_type, label, flags)
# flags: "s" sleepable, "r" retprobe, "m" multi, "f" frags. Order matters: the first match wins,
# so longer keywords come before their prefixes.
_Row = tuple[str, str, str, Optional[str], str, str]

_TABLE: tuple[_Row, ...] = (
    ("socket", _PLUS, "socket_filter", None, "socket_filter", ""),
    ("sk_reuseport/migrate", _EXACT, "sk_reuseport", "sk_reuseport_select_or_migrate",
     "sk_reuseport", ""),
    ("sk_reuseport", _EXACT, "sk_reuseport", "sk_reuseport_select", "sk_reuseport", ""),
    # kprobes and uprobes
    ("kprobe.multi", _PLUS, "kprobe", "trace_kprobe_multi", "kprobe", "m"),
    ("kretprobe.multi", _PLUS, "kprobe", "trace_kprobe_multi", "kretprobe", "mr"),
    ("kprobe.session", _PLUS, "kprobe", "trace_kprobe_session", "kprobe", "m"),
    ("uprobe.multi.s", _PLUS, "kprobe", "trace_uprobe_multi", "uprobe", "ms"),
    ("uretprobe.multi.s", _PLUS, "kprobe", "trace_uprobe_multi", "uretprobe", "mrs"),
    ("uprobe.multi", _PLUS, "kprobe", "trace_uprobe_multi", "uprobe", "m"),
    ("uretprobe.multi", _PLUS, "kprobe", "trace_uprobe_multi", "uretprobe", "mr"),
    ("uprobe.session.s", _PLUS, "kprobe", "trace_uprobe_session", "uprobe", "ms"),
    ("uprobe.session", _PLUS, "kprobe", "trace_uprobe_session", "uprobe", "m"),
    ("kprobe", _PLUS, "kprobe", None, "kprobe", ""),
    ("kretprobe", _PLUS, "kprobe", None, "kretprobe", "r"),
    ("uprobe.s", _PLUS, "kprobe", None, "uprobe", "s"),
    ("uprobe", _PLUS, "kprobe", None, "uprobe", ""),
    ("uretprobe.s", _PLUS, "kprobe", None, "uretprobe", "rs"),
    ("uretprobe", _PLUS, "kprobe", None, "uretprobe", "r"),
    ("ksyscall", _PLUS, "kprobe", None, "ksyscall", ""),
    ("kretsyscall", _PLUS, "kprobe", None, "kretsyscall", "r"),
    ("usdt.s", _PLUS, "kprobe", None, "usdt", "s"),
    ("usdt", _PLUS, "kprobe", None, "usdt", ""),
    # traffic control
    ("tc/ingress", _EXACT, "sched_cls", "tcx_ingress", "tcx", ""),
    ("tc/egress", _EXACT, "sched_cls", "tcx_egress", "tcx", ""),
    ("tcx/ingress", _EXACT, "sched_cls", "tcx_ingress", "tcx", ""),
    ("tcx/egress", _EXACT, "sched_cls", "tcx_egress", "tcx", ""),
    ("tc", _EXACT, "sched_cls", None, "classifier", ""),
    ("classifier", _PLUS, "sched_cls", None, "classifier", ""),
    ("action", _PLUS, "sched_act", None, "action", ""),
    ("netkit/primary", _EXACT, "sched_cls", "netkit_primary", "netkit", ""),
    ("netkit/peer", _EXACT, "sched_cls", "netkit_peer", "netkit", ""),
    # tracepoints
    ("tracepoint.s", _PLUS, "tracepoint", None, "tracepoint", "s"),
    ("tp.s", _PLUS, "tracepoint", None, "tracepoint", "s"),
    ("tracepoint", _PLUS, "tracepoint", None, "tracepoint", ""),
    ("tp", _PLUS, "tracepoint", None, "tracepoint", ""),
    ("raw_tracepoint.s", _PLUS, "raw_tracepoint", None, "raw_tracepoint", "s"),
    ("raw_tp.s", _PLUS, "raw_tracepoint", None, "raw_tracepoint", "s"),
    ("raw_tracepoint.w", _PLUS, "raw_tracepoint_writable", None, "raw_tracepoint_writable", ""),
    ("raw_tp.w", _PLUS, "raw_tracepoint_writable", None, "raw_tracepoint_writable", ""),
    ("raw_tracepoint", _PLUS, "raw_tracepoint", None, "raw_tracepoint", ""),
    ("raw_tp", _PLUS, "raw_tracepoint", None, "raw_tracepoint", ""),
    ("tp_btf.s", _PLUS, "tracing", "trace_raw_tp", "btf_tracepoint", "s"),
    ("tp_btf", _PLUS, "tracing", "trace_raw_tp", "btf_tracepoint", ""),
    # BTF-attached tracing
    ("fentry.multi.s", _PLUS, "tracing", "trace_fentry_multi", "fentry", "ms"),
    ("fexit.multi.s", _PLUS, "tracing", "trace_fexit_multi", "fexit", "ms"),
    ("fentry.multi", _PLUS, "tracing", "trace_fentry_multi", "fentry", "m"),
    ("fexit.multi", _PLUS, "tracing", "trace_fexit_multi", "fexit", "m"),
    ("fsession.multi.s", _PLUS, "tracing", "trace_fsession_multi", "fsession", "ms"),
    ("fsession.multi", _PLUS, "tracing", "trace_fsession_multi", "fsession", "m"),
    ("fsession.s", _PLUS, "tracing", "trace_fsession", "fsession", "s"),
    ("fsession", _PLUS, "tracing", "trace_fsession", "fsession", ""),
    ("fentry.s", _PLUS, "tracing", "trace_fentry", "fentry", "s"),
    ("fexit.s", _PLUS, "tracing", "trace_fexit", "fexit", "s"),
    ("fmod_ret.s", _PLUS, "tracing", "modify_return", "fmod_ret", "s"),
    ("fentry", _PLUS, "tracing", "trace_fentry", "fentry", ""),
    ("fexit", _PLUS, "tracing", "trace_fexit", "fexit", ""),
    ("fmod_ret", _PLUS, "tracing", "modify_return", "fmod_ret", ""),
    ("freplace", _PLUS, "ext", None, "extension", ""),
    ("lsm_cgroup", _PLUS, "lsm", "lsm_cgroup", "lsm_cgroup", ""),
    ("lsm.s", _PLUS, "lsm", "lsm_mac", "lsm", "s"),
    ("lsm", _PLUS, "lsm", "lsm_mac", "lsm", ""),
    ("iter.s", _PLUS, "tracing", "trace_iter", "iter", "s"),
    ("iter", _PLUS, "tracing", "trace_iter", "iter", ""),
    ("syscall", _EXACT, "syscall", None, "syscall", "s"),
    # XDP
    ("xdp.frags/devmap", _EXACT, "xdp", "xdp_devmap", "xdp", "f"),
    ("xdp/devmap", _EXACT, "xdp", "xdp_devmap", "xdp", ""),
    ("xdp.frags/cpumap", _EXACT, "xdp", "xdp_cpumap", "xdp", "f"),
    ("xdp/cpumap", _EXACT, "xdp", "xdp_cpumap", "xdp", ""),
    ("xdp.frags", _EXACT, "xdp", "xdp", "xdp", "f"),
    ("xdp", _EXACT, "xdp", "xdp", "xdp", ""),
    ("perf_event", _EXACT, "perf_event", None, "perf_event", ""),
    ("lwt_in", _EXACT, "lwt_in", None, "lwt_in", ""),
    ("lwt_out", _EXACT, "lwt_out", None, "lwt_out", ""),
    ("lwt_xmit", _EXACT, "lwt_xmit", None, "lwt_xmit", ""),
    ("lwt_seg6local", _EXACT, "lwt_seg6local", None, "lwt_seg6local", ""),
    ("sockops", _EXACT, "sock_ops", "cgroup_sock_ops", "sock_ops", ""),
    ("sk_skb/stream_parser", _EXACT, "sk_skb", "sk_skb_stream_parser", "sk_skb", ""),
    ("sk_skb/stream_verdict", _EXACT, "sk_skb", "sk_skb_stream_verdict", "sk_skb", ""),
    ("sk_skb/verdict", _EXACT, "sk_skb", "sk_skb_verdict", "sk_skb", ""),
    ("sk_skb", _EXACT, "sk_skb", None, "sk_skb", ""),
    ("sk_msg", _EXACT, "sk_msg", "sk_msg_verdict", "sk_msg", ""),
    ("lirc_mode2", _EXACT, "lirc_mode2", "lirc_mode2", "lirc_mode2", ""),
    ("flow_dissector", _EXACT, "flow_dissector", "flow_dissector", "flow_dissector", ""),
    # cgroups
    ("cgroup_skb/ingress", _EXACT, "cgroup_skb", "cgroup_inet_ingress", "cgroup_skb", ""),
    ("cgroup_skb/egress", _EXACT, "cgroup_skb", "cgroup_inet_egress", "cgroup_skb", ""),
    ("cgroup/skb", _EXACT, "cgroup_skb", None, "cgroup_skb", ""),
    ("cgroup/sock_create", _EXACT, "cgroup_sock", "cgroup_inet_sock_create", "cgroup_sock", ""),
    ("cgroup/sock_release", _EXACT, "cgroup_sock", "cgroup_inet_sock_release", "cgroup_sock",
     ""),
    ("cgroup/sock", _EXACT, "cgroup_sock", "cgroup_inet_sock_create", "cgroup_sock", ""),
    ("cgroup/post_bind4", _EXACT, "cgroup_sock", "cgroup_inet4_post_bind", "cgroup_sock", ""),
    ("cgroup/post_bind6", _EXACT, "cgroup_sock", "cgroup_inet6_post_bind", "cgroup_sock", ""),
    ("cgroup/bind4", _EXACT, "cgroup_sock_addr", "cgroup_inet4_bind", "cgroup_sock_addr", ""),
    ("cgroup/bind6", _EXACT, "cgroup_sock_addr", "cgroup_inet6_bind", "cgroup_sock_addr", ""),
    ("cgroup/connect4", _EXACT, "cgroup_sock_addr", "cgroup_inet4_connect", "cgroup_sock_addr",
     ""),
    ("cgroup/connect6", _EXACT, "cgroup_sock_addr", "cgroup_inet6_connect", "cgroup_sock_addr",
     ""),
    ("cgroup/connect_unix", _EXACT, "cgroup_sock_addr", "cgroup_unix_connect",
     "cgroup_sock_addr", ""),
    ("cgroup/sendmsg4", _EXACT, "cgroup_sock_addr", "cgroup_udp4_sendmsg", "cgroup_sock_addr",
     ""),
    ("cgroup/sendmsg6", _EXACT, "cgroup_sock_addr", "cgroup_udp6_sendmsg", "cgroup_sock_addr",
     ""),
    ("cgroup/sendmsg_unix", _EXACT, "cgroup_sock_addr", "cgroup_unix_sendmsg",
     "cgroup_sock_addr", ""),
    ("cgroup/recvmsg4", _EXACT, "cgroup_sock_addr", "cgroup_udp4_recvmsg", "cgroup_sock_addr",
     ""),
    ("cgroup/recvmsg6", _EXACT, "cgroup_sock_addr", "cgroup_udp6_recvmsg", "cgroup_sock_addr",
     ""),
    ("cgroup/recvmsg_unix", _EXACT, "cgroup_sock_addr", "cgroup_unix_recvmsg",
     "cgroup_sock_addr", ""),
    ("cgroup/getpeername4", _EXACT, "cgroup_sock_addr", "cgroup_inet4_getpeername",
     "cgroup_sock_addr", ""),
    ("cgroup/getpeername6", _EXACT, "cgroup_sock_addr", "cgroup_inet6_getpeername",
     "cgroup_sock_addr", ""),
    ("cgroup/getpeername_unix", _EXACT, "cgroup_sock_addr", "cgroup_unix_getpeername",
     "cgroup_sock_addr", ""),
    ("cgroup/getsockname4", _EXACT, "cgroup_sock_addr", "cgroup_inet4_getsockname",
     "cgroup_sock_addr", ""),
    ("cgroup/getsockname6", _EXACT, "cgroup_sock_addr", "cgroup_inet6_getsockname",
     "cgroup_sock_addr", ""),
    ("cgroup/getsockname_unix", _EXACT, "cgroup_sock_addr", "cgroup_unix_getsockname",
     "cgroup_sock_addr", ""),
    ("cgroup/sysctl", _EXACT, "cgroup_sysctl", "cgroup_sysctl", "cgroup_sysctl", ""),
    ("cgroup/getsockopt", _EXACT, "cgroup_sockopt", "cgroup_getsockopt", "cgroup_sockopt", ""),
    ("cgroup/setsockopt", _EXACT, "cgroup_sockopt", "cgroup_setsockopt", "cgroup_sockopt", ""),
    ("cgroup/dev", _EXACT, "cgroup_device", "cgroup_device", "cgroup_device", ""),
    ("struct_ops.s", _PLUS, "struct_ops", None, "struct_ops", "s"),
    ("struct_ops", _PLUS, "struct_ops", None, "struct_ops", ""),
    ("sk_lookup", _EXACT, "sk_lookup", "sk_lookup", "sk_lookup", ""),
    ("netfilter", _EXACT, "netfilter", "netfilter", "netfilter", ""),
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
        prog_type=prog_type,
        expected_attach_type=attach,
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

    Recognises libbpf's ``SEC()`` names and the names Aya's macros emit (see the module doc).
    """
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


def known_section_prefixes() -> tuple[str, ...]:
    """Every keyword of the table, for error messages and documentation."""
    return tuple(row[0] for row in _TABLE)
