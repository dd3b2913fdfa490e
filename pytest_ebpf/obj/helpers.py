"""eBPF helper functions: id -> name, and which helpers are GPL-only.

``HELPERS`` lists every helper of ``enum bpf_func_id`` by the name programs call it by: a view
of :class:`pytest_ebpf.abi.Helper`, where the ids are defined (``bpf_map_lookup_elem`` (1) to
``bpf_cgrp_storage_delete`` (211)).

``GPL_ONLY`` holds the helpers for which at least one ``struct bpf_func_proto`` the kernel hands to
programs sets ``.gpl_only = true``; the verifier refuses calls to them from programs whose license
is not GPL-compatible.  It was established from the Linux 6.18 sources by matching every
``case BPF_FUNC_<name>:`` of the ``*_func_proto()`` selectors to the prototypes it returns, in
kernel/bpf/helpers.c, kernel/bpf/stackmap.c, kernel/trace/bpf_trace.c, net/core/filter.c and
drivers/media/rc/bpf-lirc.c.  Two helpers are GPL-only for most program types but not all:
``bpf_get_stackid`` (not for perf_event programs) and ``bpf_get_func_ip`` (not for kprobe/uprobe
multi links); both are listed.  Notably *not* GPL-only: ``bpf_send_signal``,
``bpf_send_signal_thread``, ``bpf_d_path``, ``bpf_snprintf_btf``, ``bpf_get_task_stack``,
``bpf_copy_from_user`` (but ``bpf_copy_from_user_task`` is).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pytest_ebpf.abi import Helper

__all__ = ["GPL_ONLY", "HELPERS", "MAX_HELPER_ID", "helper_id", "helper_name", "is_gpl_only"]

#: Helper id -> the name programs call it by (``bpf_`` + the ``BPF_FUNC_`` name): a view of
#: :class:`pytest_ebpf.abi.Helper`.
HELPERS: Mapping[int, str] = MappingProxyType({int(h): f"bpf_{h.name}" for h in Helper})

MAX_HELPER_ID = max(HELPERS)

GPL_ONLY: frozenset[int] = frozenset(
    {
        Helper.probe_read,
        Helper.trace_printk,
        Helper.perf_event_read,
        Helper.perf_event_output,
        Helper.get_stackid,
        Helper.get_current_task,
        Helper.probe_write_user,
        Helper.probe_read_str,
        Helper.perf_event_read_value,
        Helper.perf_prog_read_value,
        Helper.override_return,
        Helper.get_stack,
        Helper.fib_lookup,
        Helper.rc_repeat,
        Helper.rc_keydown,
        Helper.rc_pointer_rel,
        Helper.tcp_check_syncookie,
        Helper.tcp_gen_syncookie,
        Helper.skb_output,
        Helper.probe_read_user,
        Helper.probe_read_kernel,
        Helper.probe_read_user_str,
        Helper.probe_read_kernel_str,
        Helper.read_branch_records,
        Helper.xdp_output,
        Helper.seq_printf,
        Helper.seq_write,
        Helper.seq_printf_btf,
        Helper.get_current_task_btf,
        Helper.check_mtu,
        Helper.snprintf,
        Helper.timer_init,
        Helper.timer_set_callback,
        Helper.timer_start,
        Helper.timer_cancel,
        Helper.get_func_ip,
        Helper.task_pt_regs,
        Helper.get_branch_snapshot,
        Helper.trace_vprintk,
        Helper.copy_from_user_task,
        Helper.tcp_raw_gen_syncookie_ipv4,
        Helper.tcp_raw_gen_syncookie_ipv6,
        Helper.tcp_raw_check_syncookie_ipv4,
        Helper.tcp_raw_check_syncookie_ipv6,
    }
)

_IDS: Mapping[str, int] = MappingProxyType({name: hid for hid, name in HELPERS.items()})


def helper_name(helper: int) -> str:
    """The helper's name (``bpf_map_lookup_elem``), or ``helper#N`` for an unknown id."""
    return HELPERS.get(helper, f"helper#{helper}")


def helper_id(name: str) -> int | None:
    """The id of a helper given as ``bpf_x`` or ``x``, or None."""
    found = _IDS.get(name)
    if found is None:
        found = _IDS.get(f"bpf_{name}")
    return found


def is_gpl_only(helper: int) -> bool:
    """True when the kernel refuses the helper to programs without a GPL-compatible license."""
    return helper in GPL_ONLY
