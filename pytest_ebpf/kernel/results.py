"""What a load gives back: per-program results, map handles and the loaded object that owns
every file descriptor and pin, with the errors of the load. Shared by the dispatcher
(:mod:`pytest_ebpf.kernel.loader`) and both loaders, which import this and not each other.
"""

from __future__ import annotations

import contextlib
import ctypes
import difflib
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from pytest_ebpf.abi import MapType
from pytest_ebpf.errors import EbpfError
from pytest_ebpf.kernel.bpf import (
    BPF_ANY,
    PERCPU_MAP_TYPES,
    Fd,
    map_delete,
    map_keys,
    map_lookup,
    map_update,
    map_value_size,
    percpu_values,
    possible_cpus,
)
from pytest_ebpf.kernel.pins import (
    release_session_pin_dir,
    remove_tree,
)
from pytest_ebpf.obj.btf import Btf
from pytest_ebpf.obj.model import EbpfObject

LoaderName = Literal["bpftool", "native"]
Cause = Literal["verifier", "permission", "open", "loader", "optional"]
Requested = Literal["auto", "bpftool", "native"]
KeyLike = Union[bytes, bytearray, int, ctypes.Structure, ctypes.Union, ctypes.Array]  # type: ignore[type-arg]

DEFAULT_LOG_LEVEL = 1 | 4  # BPF_LOG_LEVEL1 | BPF_LOG_STATS: the log ends with "stack depth"


class LoaderError(EbpfError):
    """The object cannot be loaded at all with the requested loader (e.g. bpftool missing)."""


def nearest(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'X'?"`` for the closest of *known* (difflib), or ``""``."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class UnknownNameError(EbpfError, KeyError):
    """An unknown map or program name. A :class:`KeyError` (``except KeyError`` still works)
    whose message lists the known names and the nearest one."""

    def __init__(self, kind: str, name: object, known: Iterable[str]) -> None:
        names = sorted(known)
        self.name = name
        self.known = tuple(names)
        listed = ", ".join(names) or "none"
        hint = nearest(name, names) if isinstance(name, str) else ""
        super().__init__(f"no {kind} {name!r} in this load; {kind}s: {listed}{hint}")

    def __str__(self) -> str:
        return str(self.args[0])


_V = TypeVar("_V")


class NamedDict(dict[str, _V]):
    """A dict whose missing keys raise :class:`UnknownNameError` naming the known ones."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def __missing__(self, key: str) -> _V:
        raise UnknownNameError(self.kind, key, self.keys())


@dataclass(frozen=True)
class LoadResult:
    """What happened to one program.

    ``error`` is the verifier's decisive line (or the loader's reason) when ``loaded`` is False;
    ``log`` the full verifier log of this program, the kernel's answer to its own load, loaded
    or not (for bpftool: the libbpf debug output of that program, or of the whole object when
    libbpf failed before loading it); ``pytest-ebpf verify OBJECT --log`` prints it.
    ``stack_depth`` has one entry per function as the verifier printed it ("stack depth
    8+0+16"); ``processed_insns`` is the "processed N insns" figure; ``verified_insns`` comes
    from ``BPF_OBJ_GET_INFO_BY_FD``.
    """

    program: str
    section: str
    loaded: bool
    error: str | None
    log: str
    processed_insns: int | None
    stack_depth: tuple[int, ...]
    verified_insns: int | None
    prog_id: int | None
    loader: LoaderName
    notes: tuple[str, ...] = ()
    """Loader remarks (e.g. "BTF refused by the kernel: loaded without BTF")."""
    cause: Cause | None = None
    """Why it is not loaded: ``verifier`` (the verifier rejected it), ``permission`` (this
    process lacks a capability), ``open`` (bpftool/libbpf could not open the object),
    ``loader`` (the loader could not prepare it: linking, an unsupported feature...),
    ``optional`` (a ``?`` section, left out unless asked for by name: not a failure). None when
    loaded; a rejection without a cause is the verifier's."""

    @property
    def failed(self) -> bool:
        """Not loaded, and not because it was left out on purpose (a ``?`` section)."""
        return not self.loaded and self.cause != "optional"

    @property
    def why(self) -> str:
        """The reason in words, its cause first ("rejected by the verifier: ...")."""
        if self.loaded:
            return "loaded"
        cause = self.cause or "verifier"
        if cause == "verifier":
            return f"rejected by the verifier: {self.error}"
        if cause == "open":
            return f"bpftool/libbpf could not open the object: {self.error}"
        if cause == "permission":
            return str(self.error)
        text = str(self.error)
        return text if text.startswith("not loaded") else f"not loaded: {text}"


def _as_bytes(value: object, size: int, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, bool):
        data = int(value).to_bytes(size, sys.byteorder)
    elif isinstance(value, int):
        try:
            data = value.to_bytes(size, sys.byteorder, signed=value < 0)
        except OverflowError:
            raise ValueError(f"{what} {value} does not fit in {size} bytes") from None
    elif isinstance(value, (ctypes.Structure, ctypes.Union, ctypes.Array)):
        data = bytes(memoryview(value).cast("B"))
    else:
        raise TypeError(f"{what} must be bytes, int or a ctypes object, not {type(value).__name__}")
    if len(data) != size:
        raise ValueError(f"{what} is {len(data)} bytes; this map needs {size}")
    return data


@dataclass(frozen=True)
class MapHandle:
    """A loaded map. Keys and values are bytes, ints (packed to the key/value size in native
    byte order) or ctypes objects. Per-CPU maps: :meth:`lookup` returns one ``bytes`` per
    possible CPU; :meth:`update` takes one value (stored on every CPU) or a list of them."""

    name: str
    fd: Fd = field(repr=False)
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    btf: Btf | None = field(default=None, repr=False, compare=False)
    """The object's BTF, when the map's key and value have BTF types (BTF-defined maps)."""
    key_type_id: int = 0
    value_type_id: int = 0

    @property
    def percpu(self) -> bool:
        return self.map_type in PERCPU_MAP_TYPES

    def _key(self, key: KeyLike) -> bytes:
        return _as_bytes(key, self.key_size, "key")

    def lookup(self, key: KeyLike) -> bytes | list[bytes] | None:
        raw = map_lookup(self.fd, self._key(key), map_value_size(self.map_type, self.value_size))
        if raw is None:
            return None
        if self.percpu:
            return percpu_values(raw, self.value_size)
        return raw

    def update(
        self, key: KeyLike, value: KeyLike | Sequence[KeyLike], flags: int = BPF_ANY
    ) -> None:
        if self.percpu:
            stride = (self.value_size + 7) & ~7
            values = list(value) if isinstance(value, (list, tuple)) else [value] * possible_cpus()
            if len(values) != possible_cpus():
                raise ValueError(f"per-CPU map needs {possible_cpus()} values, got {len(values)}")
            blob = b"".join(
                _as_bytes(v, self.value_size, "value").ljust(stride, b"\0") for v in values
            )
        else:
            blob = _as_bytes(value, self.value_size, "value")
        map_update(self.fd, self._key(key), blob, flags)

    def delete(self, key: KeyLike) -> bool:
        return map_delete(self.fd, self._key(key))

    def keys(self) -> Iterator[bytes]:
        return map_keys(self.fd, self.key_size)

    def items(self) -> Iterator[tuple[bytes, bytes | list[bytes]]]:
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                yield key, value

    def value(self, key: KeyLike) -> Any:
        """The value at *key* decoded through its BTF type (:mod:`pytest_ebpf.obj.btf_values`:
        structs as dicts...); a list of them for a per-CPU map; None when the key is absent.
        TypeError for a map without BTF types (Aya's legacy ``maps`` section)."""
        if self.btf is None or not self.value_type_id:
            raise TypeError(f"map {self.name} has no BTF value type (a legacy or untyped map): "
                            "use lookup() and decode the bytes")
        from pytest_ebpf.obj.btf_values import decode

        raw = self.lookup(key)
        if raw is None:
            return None
        if isinstance(raw, list):
            return [decode(self.btf, self.value_type_id, v, sys.byteorder) for v in raw]
        return decode(self.btf, self.value_type_id, raw, sys.byteorder)

    def records(self) -> list[bytes]:
        """A ring buffer's committed records since the last call, oldest first (read from its
        memory as libbpf and Aya read it, :mod:`pytest_ebpf.kernel.ringbuf`)."""
        if self.map_type != MapType.RINGBUF:
            raise TypeError(f"map {self.name} is a {MapType.label_of(self.map_type)}, not a ring "
                            "buffer: use lookup/items")
        from pytest_ebpf.kernel.ringbuf import drain

        return list(drain(self.fd.fileno(), self.max_entries, f"map {self.name}").records)

    def __getitem__(self, key: KeyLike) -> bytes | list[bytes]:
        value = self.lookup(key)
        if value is None:
            raise KeyError(key)
        return value


_TRAMPOLINE_KINDS = frozenset(("btf_tracepoint", "fentry", "fexit", "fmod_ret", "lsm"))
"""Kinds attached to the kernel function they were loaded for (their ``attach_btf_id``)."""


class LoadedObject:
    """The programs and maps of one load. A context manager: leaving it (or :meth:`close`)
    closes every fd and removes every pin and directory this load created."""

    def __init__(self, obj: EbpfObject, loader: LoaderName, reason: str) -> None:
        self.object = obj
        self.loader: LoaderName = loader
        self.reason = reason
        self.results: NamedDict[LoadResult] = NamedDict("program")
        self.maps: NamedDict[MapHandle] = NamedDict("map")
        self._prog_fds: dict[str, Fd] = {}
        self._other_fds: list[Fd] = []
        self._pins: list[Path] = []
        self._dirs: list[Path] = []  # created by this load, removed deepest first
        self.closed = False

    # -- access -----------------------------------------------------------------------------

    def prog_fd(self, name: str) -> int:
        """The fd of loaded program *name*; LookupError (with the reason) otherwise."""
        fd = self._prog_fds.get(name)
        if fd is None:
            res = self.results.get(name)
            if res is None:
                raise UnknownNameError("program", name, self.results)
            reason = res.error if (res.cause or "verifier") == "verifier" else res.why
            raise LookupError(f"program {name!r} is not loaded: {reason}")
        return fd.fileno()

    @contextlib.contextmanager
    def attached(self, name: str) -> Iterator[None]:
        """Attach loaded program *name* for the ``with`` block, detached when it ends:
        ``raw_tracepoint`` programs to their tracepoint; ``tp_btf`` (Aya's
        ``btf_tracepoint``), ``fentry``, ``fexit``, ``fmod_ret`` and ``lsm`` programs to the
        kernel function they were loaded for (``BPF_RAW_TRACEPOINT_OPEN`` without a name, as
        libbpf attaches them). A test run of an attached fentry/fexit program on
        ``bpf_fentry_test1``... (``ebpf_run``) calls those functions, so the program runs.
        Other types: use ``ebpf_run`` (BPF_PROG_TEST_RUN) or your own user space."""
        from pytest_ebpf.kernel.bpf import raw_tracepoint_open

        kind = self.object.program(name).kind
        if kind.label in _TRAMPOLINE_KINDS and not kind.multi:
            target = None
        elif kind.prog_type == "raw_tracepoint" and kind.attach_target:
            target = kind.attach_target
        else:
            raise TypeError(f"program {name!r} is a {kind.label} program: attached() takes "
                            "raw_tracepoint, tp_btf (btf_tracepoint), fentry, fexit, fmod_ret "
                            "and lsm programs; run others with ebpf_run (BPF_PROG_TEST_RUN)")
        link = raw_tracepoint_open(self.prog_fd(name), target)
        try:
            yield
        finally:
            link.close()

    def map_fd(self, name: str) -> int:
        handle = self.maps.get(name)
        if handle is None:
            raise UnknownNameError("map", name, self.maps)
        return handle.fd.fileno()

    @property
    def all_loaded(self) -> bool:
        return all(r.loaded for r in self.results.values())

    @property
    def prog_ids(self) -> tuple[int, ...]:
        return tuple(r.prog_id for r in self.results.values() if r.prog_id is not None)

    # -- bookkeeping used by the loaders ----------------------------------------------------

    def _add_program(self, result: LoadResult, fd: Fd | None) -> None:
        self.results[result.program] = result
        if fd is not None:
            self._prog_fds[result.program] = fd

    def _keep(self, fd: Fd) -> None:
        self._other_fds.append(fd)

    def _pinned(self, path: Path) -> None:
        self._pins.append(path)

    def _made_dir(self, path: Path) -> None:
        self._dirs.append(path)

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in self._prog_fds.values():
            fd.close()
        for handle in self.maps.values():
            handle.fd.close()
        for fd in self._other_fds:
            fd.close()
        for pin in self._pins:
            with contextlib.suppress(FileNotFoundError):
                pin.unlink()
        for d in sorted(self._dirs, key=lambda p: len(p.parts), reverse=True):
            remove_tree(d)
        release_session_pin_dir()

    def __enter__(self) -> LoadedObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self._prog_fds)} programs loaded"
        return f"<LoadedObject {self.object.path} via {self.loader}: {state}>"
