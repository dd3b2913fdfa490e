"""CO-RE relocations against the host kernel's BTF: the ones that poison code every run reaches.

A loader resolves each CO-RE relocation of ``.BTF.ext`` against the kernel's BTF
(:mod:`pytest_ebpf.obj.core`, as libbpf and Aya do). When the kernel has no matching type,
field or enumerator, libbpf (and the native loader) poison the instruction (``call
0xbad2310``): the verifier refuses the program if it reaches it ("invalid func
unknown#195896080"), and says nothing if the code is dead (behind ``bpf_core_field_exists()``).
The native loader reports the refusal as "failed to resolve CO-RE relocation ...: the kernel's
BTF has no such type or field (the verifier: invalid func unknown#195896080)", naming every
poisoned relocation of the program.

Only the host's kernel has its BTF here (``/sys/kernel/btf/vmlinux``, readable without root),
so only the ``host`` profile is judged. A poisoned instruction predicts a rejection when every
run passes it (:attr:`~pytest_ebpf.analysis.flow.ProgramFlow.certainly_called` functions, the
instructions of :attr:`~pytest_ebpf.analysis.flow.FunctionFlow.certain`); relocations the
loaders refuse for other reasons (bitfields, ``type_matches``) and a kernel BTF that cannot be
read leave the rule silent.
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_ebpf.analysis.checks import source_line
from pytest_ebpf.analysis.findings import Finding
from pytest_ebpf.analysis.flow import ProgramFlow
from pytest_ebpf.analysis.profiles import KernelProfile
from pytest_ebpf.errors import ObjectError
from pytest_ebpf.obj.core import POISON_HELPER, CoreError, describe, resolve_relo
from pytest_ebpf.obj.model import EbpfObject, Function, Program
from pytest_ebpf.obj.vmlinux import vmlinux_btf

__all__ = ["FIX", "core_findings"]

FIX = ("guard the access with bpf_core_field_exists() / bpf_core_type_exists() (the code behind "
       "the guard is dead where the field is missing), or name the field as this kernel has it "
       "(a `___flavour` struct for another layout)")

_INSN = 8


def core_findings(obj: EbpfObject, prog: Program, profile: KernelProfile,
                  flow: Callable[[], ProgramFlow]) -> list[Finding]:
    """The program's CO-RE refusal on the host's kernel, or nothing (*flow*: the program's
    flow, built only when a relocation fails)."""
    btf, ext = obj.btf, obj.btf_ext
    if profile.name != "host" or btf is None or ext is None or not ext.core_relos:
        return []
    poisoned: list[str] = []
    first: tuple[Function, int, str] | None = None
    for fn in prog.load_order:
        relos = [r for r in ext.core_relos.get(fn.section, ())
                 if fn.offset * _INSN <= r.insn_off < fn.end * _INSN]
        if not relos:
            continue
        try:
            target = vmlinux_btf()
        except ObjectError:
            return []  # the loaders cannot resolve anything either; they say why
        for relo in relos:
            try:
                value = resolve_relo(btf, target, relo)
            except CoreError:
                return []  # refused by the loader for another reason
            if value.target is not None:
                continue
            slot = relo.insn_off // _INSN
            what = describe(btf, relo)
            poisoned.append(f"{what} at insn {slot - fn.offset} of {fn.name}")
            f = flow().by_key.get(fn.key)
            if (first is None and f is not None and fn.key in flow().certainly_called
                    and slot in f.certain):
                first = (fn, slot, what)
    if first is None:
        return []
    fn, slot, what = first
    insn = next(i for i in fn.insns if i.index == slot)
    line = (f"failed to resolve CO-RE relocation {'; '.join(poisoned)}: the kernel's BTF has no "
            f"such type or field (the verifier: invalid func unknown#{POISON_HELPER})")
    src = source_line(obj, fn, insn)
    at = f", at {src}" if src else ""
    return [Finding(
        check="core_unresolved", rule="core", program=prog.name, function=fn.name, insn=insn,
        kernel=profile.label, reason=line,
        message=(f"program {prog.name}: the CO-RE relocation {what} in {fn.name} "
                 f"({fn.section}){at} has no match in {profile.label}'s BTF: loaders poison "
                 f"the instruction, and every run reaches it; the loader says \"{line}\""),
        fix=FIX)]
