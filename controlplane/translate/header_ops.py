"""Istio ``headers`` (request/response set, add, remove) to Envoy header options.

``set`` overwrites (OVERWRITE_IF_EXISTS_OR_ADD), ``add`` appends
(APPEND_IF_EXISTS_OR_ADD). Pseudo-headers and ``host`` cannot be changed this
way (Envoy rejects the whole route table), so they are refused here with the
field named; the authority is changed with ``rewrite.authority``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2

from controlplane.traffic_model import HeaderOperations, Headers
from controlplane.translate.errors import TranslationError

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD


@dataclass(frozen=True, slots=True)
class HeaderEdits:
    """What to put in the ``*_headers_to_add`` / ``*_headers_to_remove`` fields."""

    request_add: tuple[base_pb2.HeaderValueOption, ...] = ()
    request_remove: tuple[str, ...] = ()
    response_add: tuple[base_pb2.HeaderValueOption, ...] = ()
    response_remove: tuple[str, ...] = ()


def header_edits(headers: Headers | None, where: str) -> HeaderEdits:
    if headers is None:
        return HeaderEdits()
    request_add, request_remove = _operations(headers.request, f"{where}.request")
    response_add, response_remove = _operations(headers.response, f"{where}.response")
    return HeaderEdits(request_add, request_remove, response_add, response_remove)


def merge(rule: HeaderEdits, destination: HeaderEdits) -> HeaderEdits:
    """A rule's edits followed by its chosen destination's, the destination winning.

    Istio applies a destination's ``headers`` when that destination is chosen, so
    they are the more specific edits: the rule's ``set`` / ``add`` of a header the
    destination sets or removes is dropped (Envoy runs removals before additions
    within one level, so dropping is the only way a destination's removal wins).
    """
    request_add = _without(rule.request_add, destination.request_add, destination.request_remove)
    response_add = _without(
        rule.response_add, destination.response_add, destination.response_remove
    )
    return HeaderEdits(
        request_add=request_add + destination.request_add,
        request_remove=rule.request_remove + destination.request_remove,
        response_add=response_add + destination.response_add,
        response_remove=rule.response_remove + destination.response_remove,
    )


def _without(
    options: tuple[base_pb2.HeaderValueOption, ...],
    overriding: tuple[base_pb2.HeaderValueOption, ...],
    removed: tuple[str, ...],
) -> tuple[base_pb2.HeaderValueOption, ...]:
    names = {o.header.key.lower() for o in overriding if o.append_action == _OVERWRITE}
    names.update(name.lower() for name in removed)
    return tuple(o for o in options if o.header.key.lower() not in names)


def _operations(
    ops: HeaderOperations, where: str
) -> tuple[tuple[base_pb2.HeaderValueOption, ...], tuple[str, ...]]:
    options = [
        *_options(ops.set, _OVERWRITE, f"{where}.set"),
        *_options(ops.add, _APPEND, f"{where}.add"),
    ]
    for name in ops.remove:
        _check_name(name, f"{where}.remove")
    return tuple(options), tuple(ops.remove)


def _options(
    values: Mapping[str, str], action: int, where: str
) -> Iterable[base_pb2.HeaderValueOption]:
    for name in sorted(values):
        _check_name(name, where)
        yield base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, value=values[name]),
            append_action=action,
        )


def _check_name(name: str, where: str) -> None:
    if not name or name.startswith(":") or name.lower() == "host":
        raise TranslationError(
            f"{where}: header {name!r} cannot be changed (pseudo-headers and host are "
            "refused by Envoy; use rewrite.authority)"
        )
