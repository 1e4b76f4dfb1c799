"""Small helpers shared by the per-type decoders: error wording, Any and durations.

Every validation error reads ``<Type> "<name>": <field>: <problem>`` so a NACK's
``error_detail`` points straight at the offending field.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from google.protobuf import message as pb_message

from meshlib.errors import XdsValidationError


class DecodeContext:
    """Names the resource being decoded, for error messages."""

    def __init__(self, type_name: str, resource_name: str) -> None:
        self.type_name = type_name
        self.resource_name = resource_name

    def error(self, detail: str) -> XdsValidationError:
        return XdsValidationError(f'{self.type_name} "{self.resource_name}": {detail}')


def unpack_any(ctx: DecodeContext, any_msg: Any, message_class: Any, where: str) -> Any:
    """Unpack ``any_msg`` into ``message_class`` or raise naming ``where``."""
    expected = "type.googleapis.com/" + message_class.DESCRIPTOR.full_name
    if any_msg.type_url != expected:
        raise ctx.error(f"{where}: expected {expected}, got {any_msg.type_url or 'nothing'}")
    out = message_class()
    try:
        out.ParseFromString(any_msg.value)
    except pb_message.DecodeError as exc:
        raise ctx.error(f"{where}: cannot parse {message_class.DESCRIPTOR.name}: {exc}") from exc
    return out


def duration_s(duration: Any) -> float:
    """A google.protobuf.Duration in seconds."""
    return float(duration.seconds) + float(duration.nanos) / 1e9


def _regex_compiler() -> Callable[[str], object]:
    """RE2 (as Envoy and gRPC use) when installed, else Python's ``re``."""
    try:
        re2 = importlib.import_module("re2")
    except ImportError:
        return re.compile
    options = re2.Options()
    options.log_errors = False
    return lambda pattern: re2.compile(pattern, options)


_COMPILE = _regex_compiler()


def check_regex(ctx: DecodeContext, pattern: str, where: str) -> str:
    """Return ``pattern`` if it compiles, else raise naming ``where``."""
    try:
        _COMPILE(pattern)
    except Exception as exc:  # re.error / re2.error differ; both mean "bad pattern"
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ctx.error(f"{where}: invalid regex {pattern!r}: {reason}") from exc
    return pattern


def config_source_is_ads(source: Any) -> bool:
    """gRPC accepts only ``ads`` or ``self`` config sources (xDS over this stream)."""
    return source.WhichOneof("config_source_specifier") in ("ads", "self")
