"""Deterministic, structure-aware mutations of valid xDS resources, for the fuzz tests.

A mutation walks the whole message tree, ``Any`` payloads included (unpacked,
mutated and packed again), so fields deep inside an HCM or an LB policy get
hit as often as top-level ones. Each mutation is one of: an out-of-range enum,
an emptied or deleted message, an odd or huge string or number, a wrong ``Any``
type, a duplicated or dropped repeated element. :func:`corrupt_bytes` damages
the serialized form instead. Everything is drawn from the ``random.Random``
handed in, so a seed replays a case exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import (
    any_pb2,
    descriptor,
    descriptor_pool,
    duration_pb2,
    empty_pb2,
    message_factory,
    struct_pb2,
    wrappers_pb2,
)

_FD = descriptor.FieldDescriptor

ODD_STRINGS = (
    "", " ", "\x00", "\t\r\n", "é", "☃", "🙂", "\u202e", "*", "**", ".*", "(", "[a-",
    "\\", "%", "%zz", "..", "/", "//", "?", "#", ":", ":0", ":-1", "host:99999",
    "xdstp:", "xdstp://", "xdstp://auth/x", "dns:///", "0", "-1", "1e400", "nan",
    "a" * 70_000, "€" * 20_000, "/" + "a/" * 5_000,
)  # fmt: skip
ODD_INTS = {
    _FD.CPPTYPE_INT32: (0, 1, -1, 23, 2**31 - 1, -(2**31)),
    _FD.CPPTYPE_INT64: (0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63)),
    _FD.CPPTYPE_UINT32: (0, 1, 23, 2**31, 2**32 - 1),
    _FD.CPPTYPE_UINT64: (0, 1, 2**53 + 1, 2**63, 2**64 - 1),
}
ODD_FLOATS = (0.0, -0.0, -1.0, math.nan, math.inf, -math.inf, 1e308, 5e-324, 3.4e38)
ODD_ENUMS = (-1, 23, 2**31 - 1, -(2**31))
_WRONG_ANY_MESSAGES = (
    empty_pb2.Empty(),
    struct_pb2.Struct(),
    duration_pb2.Duration(seconds=1),
    wrappers_pb2.UInt32Value(value=7),
)


@dataclass
class _Site:
    """One place a mutation can land: a field of a message (an element when indexed)."""

    msg: Any
    field: Any  # FieldDescriptor
    index: int | None = None


class MessageMutator:
    """Applies random mutations to a protobuf message in place."""

    def __init__(self, rng: random.Random, extra_any: tuple[Any, ...] = ()) -> None:
        self.rng = rng
        self._wrong_any = (*_WRONG_ANY_MESSAGES, *extra_any)

    def mutate(self, msg: Any, count: int = 1) -> list[str]:
        """Apply ``count`` mutations; returns what was done (for replaying a failure)."""
        done = []
        for _ in range(count):
            set_sites, unset_sites, repacks = collect_sites(msg)
            pool = unset_sites if unset_sites and self.rng.random() < 0.15 else set_sites
            if not pool:
                pool = unset_sites
            if not pool:
                break
            site = self.rng.choice(pool)
            try:
                done.append(self._apply(site))
            except (ValueError, TypeError, OverflowError) as exc:  # not representable: skip
                done.append(f"skipped {site.field.full_name}: {type(exc).__name__}")
            _repack(repacks)
        return done

    # --- mutating one site ----------------------------------------------------------

    def _apply(self, site: _Site) -> str:
        msg, fd, rng = site.msg, site.field, self.rng
        where = fd.full_name
        if _is_map(fd):
            return self._mutate_map(msg, fd)
        if fd.is_repeated:
            items = getattr(msg, fd.name)
            if site.index is None or not len(items):
                if rng.random() < 0.5:
                    msg.ClearField(fd.name)
                    return f"cleared {where}"
                if fd.message_type is not None:
                    items.add()
                    return f"added empty {where}"
                items.append(self._odd_scalar(fd))
                return f"appended odd {where}"
            choice = rng.random()
            if choice < 0.35:
                del items[site.index]
                return f"deleted {where}[{site.index}]"
            if choice < 0.6 and fd.message_type is not None:
                items.add().CopyFrom(items[site.index])
                return f"duplicated {where}[{site.index}]"
            if fd.message_type is not None:
                return self._mutate_message_value(items[site.index], f"{where}[{site.index}]")
            items[site.index] = self._odd_scalar(fd)
            return f"odd {where}[{site.index}]"
        if fd.message_type is not None:
            return self._mutate_message_value(getattr(msg, fd.name), where, parent=(msg, fd))
        value = self._odd_scalar(fd)
        setattr(msg, fd.name, value)
        return f"set {where}={_short(value)}"

    def _mutate_message_value(
        self, value: Any, where: str, parent: tuple[Any, Any] | None = None
    ) -> str:
        rng = self.rng
        if value.DESCRIPTOR.full_name == "google.protobuf.Any" and rng.random() < 0.6:
            return self._wrong_type(value, where)
        if parent is not None and rng.random() < 0.5:
            parent[0].ClearField(parent[1].name)
            return f"deleted {where}"
        value.Clear()
        value.SetInParent()
        return f"emptied {where}"

    def _wrong_type(self, value: Any, where: str) -> str:
        rng = self.rng
        choice = rng.random()
        if choice < 0.6:
            value.Pack(rng.choice(self._wrong_any))
        elif choice < 0.75:
            value.type_url = ""
        elif choice < 0.9:
            value.type_url = "type.googleapis.com/does.not.Exist"
            value.value = b"\x08\x01"
        else:
            value.value = corrupt_bytes(rng, value.value)
            return f"corrupted {where} payload"
        return f"wrong Any at {where}: {value.type_url or 'empty'}"

    def _mutate_map(self, msg: Any, fd: Any) -> str:
        mapping = getattr(msg, fd.name)
        value_fd = fd.message_type.fields_by_name["value"]
        if self.rng.random() < 0.4:
            msg.ClearField(fd.name)
            return f"cleared map {fd.full_name}"
        key_fd = fd.message_type.fields_by_name["key"]
        key = self._odd_scalar(key_fd)
        if value_fd.message_type is not None:
            mapping[key].SetInParent()
        else:
            mapping[key] = self._odd_scalar(value_fd)
        return f"added {fd.full_name}[{_short(key)}]"

    def _odd_scalar(self, fd: Any) -> Any:
        rng, cpp = self.rng, fd.cpp_type
        if fd.type == _FD.TYPE_ENUM:
            defined = [v.number for v in fd.enum_type.values]
            return rng.choice((*ODD_ENUMS, max(defined) + 1, rng.choice(defined)))
        if cpp == _FD.CPPTYPE_STRING:
            if fd.type == _FD.TYPE_BYTES:
                return rng.randbytes(rng.choice((0, 1, 7, 300)))
            return rng.choice(ODD_STRINGS)
        if cpp == _FD.CPPTYPE_BOOL:
            return rng.random() < 0.5
        if cpp in (_FD.CPPTYPE_DOUBLE, _FD.CPPTYPE_FLOAT):
            return rng.choice(ODD_FLOATS)
        return rng.choice(ODD_INTS[cpp])


def collect_sites(msg: Any) -> tuple[list[_Site], list[_Site], list[tuple[Any, Any]]]:
    """Every field of ``msg``'s tree, set and unset, Any payloads included; plus the
    (Any, payload) pairs to pack again after a change, outermost first."""
    set_sites: list[_Site] = []
    unset_sites: list[_Site] = []
    repacks: list[tuple[Any, Any]] = []
    _collect(msg, set_sites, unset_sites, repacks, depth=0)
    return set_sites, unset_sites, repacks


def every_enum_set_to(message: Any, value: int) -> Iterator[tuple[str, Any]]:
    """For each enum field in ``message``'s tree: (its name, a copy with it set to ``value``)."""
    sites, unset, _ = collect_sites(message)
    count = sum(1 for site in (*sites, *unset) if site.field.type == _FD.TYPE_ENUM)
    for k in range(count):
        copy = type(message)()
        copy.CopyFrom(message)
        sites, unset, repacks = collect_sites(copy)
        site = [s for s in (*sites, *unset) if s.field.type == _FD.TYPE_ENUM][k]
        items = getattr(site.msg, site.field.name)
        if not site.field.is_repeated:
            setattr(site.msg, site.field.name, value)
        elif site.index is None:
            items.append(value)
        else:
            items[site.index] = value
        _repack(repacks)
        yield site.field.full_name, copy


def _repack(repacks: list[tuple[Any, Any]]) -> None:
    for any_msg, inner in reversed(repacks):
        any_msg.value = inner.SerializeToString()


def _collect(
    msg: Any,
    set_sites: list[_Site],
    unset_sites: list[_Site],
    repacks: list[tuple[Any, Any]],
    depth: int,
) -> None:
    if depth > 40:
        return
    present = {fd.name for fd, _ in msg.ListFields()}
    for fd in msg.DESCRIPTOR.fields:
        is_set = fd.name in present
        (set_sites if is_set else unset_sites).append(_Site(msg, fd))
        if not is_set or fd.message_type is None:
            continue
        value = getattr(msg, fd.name)
        if _is_map(fd):
            if fd.message_type.fields_by_name["value"].message_type is not None:
                for key in sorted(value):
                    _descend(value[key], set_sites, unset_sites, repacks, depth)
        elif fd.is_repeated:
            for i, element in enumerate(value):
                set_sites.append(_Site(msg, fd, i))
                _descend(element, set_sites, unset_sites, repacks, depth)
        else:
            _descend(value, set_sites, unset_sites, repacks, depth)


def _descend(
    msg: Any,
    set_sites: list[_Site],
    unset_sites: list[_Site],
    repacks: list[tuple[Any, Any]],
    depth: int,
) -> None:
    if msg.DESCRIPTOR.full_name == "google.protobuf.Any":
        inner = _unpack(msg)
        if inner is None:
            return
        repacks.append((msg, inner))
        msg = inner
    _collect(msg, set_sites, unset_sites, repacks, depth + 1)


def corrupt_bytes(rng: random.Random, data: bytes) -> bytes:
    """Damage serialized protobuf bytes: flip, truncate, insert or append garbage."""
    out = bytearray(data)
    choice = rng.random()
    if not out or choice < 0.2:
        out += rng.randbytes(rng.randint(1, 12))
    elif choice < 0.5:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif choice < 0.75:
        del out[rng.randrange(len(out)) :]
    else:
        at = rng.randrange(len(out))
        out[at:at] = rng.randbytes(rng.randint(1, 8))
    return bytes(out)


def pack(message: Any) -> Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def _unpack(any_msg: Any) -> Any | None:
    """The Any's payload as a message, or None if its type is unknown or bytes are bad."""
    name = any_msg.type_url.rpartition("/")[2]
    try:
        cls: Callable[[], Any] = message_factory.GetMessageClass(
            descriptor_pool.Default().FindMessageTypeByName(name)
        )
        inner = cls()
        inner.ParseFromString(any_msg.value)
    except Exception:  # unknown type or bytes already corrupt: not descended into
        return None
    return inner


def _is_map(fd: Any) -> bool:
    return bool(
        fd.message_type is not None and fd.is_repeated and fd.message_type.GetOptions().map_entry
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"
