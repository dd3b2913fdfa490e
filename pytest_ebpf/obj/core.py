"""CO-RE: compile once, run everywhere. The relocations in ``.BTF.ext`` resolved against the
kernel's BTF, as libbpf (``relo_core.c``) and Aya resolve them, so that a program reads the
kernel's layout of a struct, not the layout it was compiled against.

A relocation names a local type (the object's BTF), an access path (``0:1:2``: an array index
on the root, then member or element indices) and what the instruction needs:

* field relocations (byte offset, byte size, exists, signed): the path is followed by member
  *names* in the kernel's type of the same name (``task_struct___old`` matches
  ``task_struct``), through anonymous members;
* type relocations (local and target id, exists, size);
* enum value relocations (exists, value), by enumerator name.

When no kernel type matches, ``*_exists`` is 0 and every other relocation poisons its
instruction as libbpf does (``call 0xbad2310``: the verifier says "invalid func
unknown#195896080" if the code is reachable, nothing if it is dead). Bitfield shifts and
``type_matches`` are refused with the reason rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_ebpf.errors import EbpfError
from pytest_ebpf.obj.btf import Btf, BtfType
from pytest_ebpf.obj.btf_ext import CoreRelo

__all__ = ["POISON_HELPER", "CoreError", "CoreValue", "describe", "resolve_relo"]

POISON_HELPER = 0xBAD2310
"""The helper id libbpf writes into an instruction whose relocation cannot be resolved."""

_COMPOSITE = ("struct", "union")
_ENUMS = ("enum", "enum64")


class CoreError(EbpfError):
    """A relocation this loader does not resolve (the program is refused with the reason)."""


@dataclass(frozen=True)
class CoreValue:
    """What a relocation gives: the local and the target value, or poison."""

    local: int
    target: int | None
    """None: poison the instruction."""
    target_size: int | None = None
    """The kernel field's size (for loads whose width must follow it)."""
    local_size: int | None = None


def _essence(name: str) -> str:
    return name.split("___", 1)[0]


@dataclass(frozen=True)
class _Step:
    name: str
    index: int
    """The element index (arrays); -1 for a member."""


def _local_path(btf: Btf, relo: CoreRelo) -> tuple[list[_Step], int, int, BtfType]:
    """Follow the access string in the local BTF: the named steps, the bit offset, the
    field's size and its (resolved) type."""
    spec = [int(p) for p in relo.access_str.split(":")]
    t = btf.resolve(relo.type_id)
    bits = spec[0] * btf.size_of(t.id) * 8
    steps: list[_Step] = []
    for index in spec[1:]:
        if t.kind in _COMPOSITE:
            if index >= len(t.members):
                raise CoreError(f"access {relo.access_str}: member {index} of {t.name} missing")
            m = t.members[index]
            if not m.name:
                raise CoreError(f"access {relo.access_str} goes through an anonymous member of "
                                f"{t.kind} {t.name or '(anon)'}: not resolved by this loader")
            if m.bitfield_size:
                raise CoreError(f"{t.name}.{m.name} is a bitfield: not resolved by this loader")
            steps.append(_Step(m.name, -1))
            bits += m.bit_offset
            t = btf.resolve(m.type)
        elif t.kind == "array" and t.array is not None:
            steps.append(_Step("", index))
            bits += index * btf.size_of(t.array.type) * 8
            t = btf.resolve(t.array.type)
        else:
            raise CoreError(f"access {relo.access_str}: cannot index into a {t.kind}")
    size = btf.size_of(t.id) if t.kind not in ("fwd", "func", "func_proto", "void") else 0
    return steps, bits, size, t


def _member(btf: Btf, t: BtfType, name: str, depth: int = 0) -> tuple[int, int] | None:
    """(bit offset, type id) of member *name* of *t*, looking into anonymous members."""
    for m in t.members:
        if m.name == name:
            return (-1, -1) if m.bitfield_size else (m.bit_offset, m.type)
        if not m.name and depth < 8:
            inner = btf.resolve(m.type)
            if inner.kind in _COMPOSITE:
                found = _member(btf, inner, name, depth + 1)
                if found is not None:
                    return (found[0] + m.bit_offset if found[0] >= 0 else -1, found[1])
    return None


def _compatible(local: BtfType, target: BtfType) -> bool:
    groups = (("int", "enum", "enum64"), ("ptr",), ("struct",), ("union",), ("array",),
              ("float",))
    return any(local.kind in g and target.kind in g for g in groups)


def _target_field(local_btf: Btf, target_btf: Btf, relo: CoreRelo, root: BtfType,
                  steps: list[_Step], local_type: BtfType,
                  first: int) -> tuple[int, int, BtfType] | None:
    bits = first * (target_btf.size_of(root.id) * 8)
    t = root
    for step in steps:
        if step.index < 0:
            if t.kind not in _COMPOSITE:
                return None
            found = _member(target_btf, t, step.name)
            if found is None or found[0] < 0:
                return None
            bits += found[0]
            t = target_btf.resolve(found[1])
        else:
            if t.kind != "array" or t.array is None:
                return None
            if step.index >= t.array.nelems and t.array.nelems != 0:
                return None
            bits += step.index * target_btf.size_of(t.array.type) * 8
            t = target_btf.resolve(t.array.type)
    if not _compatible(local_type, t):
        return None
    size = target_btf.size_of(t.id) if t.kind not in ("fwd", "func", "func_proto") else 0
    return bits, size, t


def _signed(t: BtfType) -> int:
    if t.kind == "int" and t.int_info is not None:
        return int(t.int_info.signed)
    if t.kind in _ENUMS:
        return int(t.kflag)
    return 0


def _candidates(target_btf: Btf, local: BtfType, kinds: tuple[str, ...]) -> list[BtfType]:
    name = _essence(local.name)
    if not name:
        return []
    return [t for t in target_btf.find_all(name) if t.kind in kinds]


def resolve_relo(local_btf: Btf, target_btf: Btf, relo: CoreRelo) -> CoreValue:
    """The value *relo* gives against *target_btf* (see the module doc)."""
    kind = relo.kind
    if kind in ("field_lshift_u64", "field_rshift_u64", "type_matches"):
        raise CoreError(f"CO-RE relocation {kind} ({relo.access_str}): not resolved by this "
                        "loader")
    local_root = local_btf.resolve(relo.type_id)
    results: set[int | tuple[int, int]]
    if kind.startswith("field_"):
        steps, bits, size, ltype = _local_path(local_btf, relo)
        local_value = {"field_byte_offset": bits // 8, "field_byte_size": size,
                       "field_exists": 1, "field_signed": _signed(ltype)}[kind]
        first = int(relo.access_str.split(":")[0])
        results = set()
        for cand in _candidates(target_btf, local_root, (local_root.kind,)):
            found = _target_field(local_btf, target_btf, relo, cand, steps, ltype, first)
            if found is None:
                continue
            tbits, tsize, ttype = found
            results.add({"field_byte_offset": tbits // 8, "field_byte_size": tsize,
                         "field_exists": 1, "field_signed": _signed(ttype)}[kind]
                        if kind != "field_byte_offset" else (tbits // 8, tsize))
        return _decide(relo, local_value, results, size)
    if kind.startswith("type_"):
        cands = [c for c in _candidates(target_btf, local_root, (local_root.kind,))]
        local_value = {"type_id_local": relo.type_id, "type_id_target": relo.type_id,
                       "type_exists": 1, "type_size": local_btf.size_of(local_root.id)
                       if kind == "type_size" else 0}[kind]
        if kind == "type_id_local":
            return CoreValue(relo.type_id, relo.type_id)
        results = {({"type_id_target": c.id, "type_exists": 1,
                     "type_size": target_btf.size_of(c.id) if kind == "type_size" else 0}[kind])
                   for c in cands}
        return _decide(relo, local_value, results, None)
    if kind.startswith("enumval_"):
        index = int(relo.access_str)
        if local_root.kind not in _ENUMS or index >= len(local_root.enum_values):
            raise CoreError(f"enum relocation {relo.access_str} on a {local_root.kind}")
        enumerator = local_root.enum_values[index]
        local_value = 1 if kind == "enumval_exists" else enumerator.value
        results = set()
        for cand in _candidates(target_btf, local_root, _ENUMS):
            for ev in cand.enum_values:
                if ev.name == enumerator.name:
                    results.add(1 if kind == "enumval_exists" else ev.value)
        return _decide(relo, local_value, results, None)
    raise CoreError(f"unknown CO-RE relocation kind {kind}")


def _decide(relo: CoreRelo, local_value: int, results: set[int | tuple[int, int]],
            local_size: int | None) -> CoreValue:
    if len(results) > 1:
        raise CoreError(f"CO-RE relocation {relo.kind} ({relo.access_str}): the kernel's BTF "
                        "has several matching types that disagree (libbpf refuses this too)")
    if not results:
        if relo.kind in ("field_exists", "type_exists", "enumval_exists"):
            return CoreValue(local_value, 0)
        return CoreValue(local_value, None)  # poison
    [value] = results
    if isinstance(value, tuple):
        return CoreValue(local_value, int(value[0]), target_size=int(value[1]),
                         local_size=local_size)
    assert isinstance(value, int)
    return CoreValue(local_value, value)


def describe(btf: Btf, relo: CoreRelo) -> str:
    """``field_byte_offset of task_struct.pid (0:1)``: a relocation in words."""
    try:
        root = btf.resolve(relo.type_id)
        name = root.name or f"(anon {root.kind})"
        if relo.kind.startswith("field_"):
            steps, _, _, _ = _local_path(btf, relo)
            path = "".join(f"[{s.index}]" if s.index >= 0 else f".{s.name}" for s in steps)
            return f"{relo.kind} of {root.kind} {name}{path} ({relo.access_str})"
        if relo.kind.startswith("enumval_") and root.enum_values:
            value = root.enum_values[int(relo.access_str)].name
            return f"{relo.kind} of enum {name}::{value}"
        return f"{relo.kind} of {root.kind} {name}"
    except (CoreError, ValueError, IndexError, EbpfError):
        return f"{relo.kind} ({relo.access_str})"
