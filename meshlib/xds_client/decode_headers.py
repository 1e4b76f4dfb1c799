"""Header mutations (``*_headers_to_add`` / ``*_headers_to_remove``), validated as
Envoy validates them: names are valid, lower-cased, and neither pseudo-headers
nor ``host``; a value has no CR, LF or NUL."""

from __future__ import annotations

import re
from typing import Any

from meshlib.xds_client._decode_util import DecodeContext
from meshlib.xds_client.resources import HeaderAppendAction, HeaderMutations, HeaderValueOption

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_MAX_LENGTH = 16384
_APPEND_ACTIONS = (
    HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD,
    HeaderAppendAction.ADD_IF_ABSENT,
    HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
    HeaderAppendAction.OVERWRITE_IF_EXISTS,
)


def header_mutations(ctx: DecodeContext, msg: Any, where: str) -> HeaderMutations:
    """The four header mutation fields of a route config, vhost, route or weighted cluster."""
    prefix = f"{where}." if where else ""
    return HeaderMutations(
        request_headers_to_add=header_options(
            ctx, msg.request_headers_to_add, f"{prefix}request_headers_to_add"
        ),
        request_headers_to_remove=header_names(
            ctx, msg.request_headers_to_remove, f"{prefix}request_headers_to_remove"
        ),
        response_headers_to_add=header_options(
            ctx, msg.response_headers_to_add, f"{prefix}response_headers_to_add"
        ),
        response_headers_to_remove=header_names(
            ctx, msg.response_headers_to_remove, f"{prefix}response_headers_to_remove"
        ),
    )


def header_options(ctx: DecodeContext, options: Any, where: str) -> tuple[HeaderValueOption, ...]:
    """A repeated ``envoy.config.core.v3.HeaderValueOption`` field."""
    return tuple(_header_option(ctx, o, f"{where}[{i}]") for i, o in enumerate(options))


def header_names(ctx: DecodeContext, names: Any, where: str) -> tuple[str, ...]:
    return tuple(header_name(ctx, n, f"{where}[{i}]") for i, n in enumerate(names))


def header_name(ctx: DecodeContext, name: str, where: str) -> str:
    """A header name to add or remove, lower-cased; ``host`` is refused."""
    if not name:
        raise ctx.error(f"{where}: header name required")
    if len(name) > _MAX_LENGTH or not _TOKEN.match(name):
        raise ctx.error(f"{where}: {name!r} is not a valid header name")
    lowered = name.lower()
    if lowered == "host":
        raise ctx.error(f"{where}: the host header may not be modified")
    return lowered


def _header_option(ctx: DecodeContext, option: Any, where: str) -> HeaderValueOption:
    if not option.HasField("header"):
        raise ctx.error(f"{where}.header: required")
    header = option.header
    if header.key.startswith(":"):
        raise ctx.error(f"{where}.header.key: pseudo-header {header.key!r} may not be modified")
    key = header_name(ctx, header.key, f"{where}.header.key")
    if header.value and header.raw_value:
        raise ctx.error(f"{where}.header: only one of value and raw_value may be set")
    value = header.value
    if header.raw_value:
        try:
            value = header.raw_value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ctx.error(f"{where}.header.raw_value: not UTF-8") from exc
    if len(value) > _MAX_LENGTH or _BAD_VALUE.search(value):
        raise ctx.error(f"{where}.header.value: contains CR, LF or NUL, or is too long")
    if option.HasField("append") and option.append_action != 0:
        raise ctx.error(f"{where}: append and append_action are both set")
    if option.HasField("append"):
        action = (
            HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD
            if option.append.value
            else HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
        )
    elif 0 <= option.append_action < len(_APPEND_ACTIONS):
        action = _APPEND_ACTIONS[option.append_action]
    else:
        raise ctx.error(f"{where}.append_action: unknown value {option.append_action}")
    return HeaderValueOption(
        key=key, value=value, append_action=action, keep_empty_value=option.keep_empty_value
    )
