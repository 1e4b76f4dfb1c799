"""Small helpers shared by the per-type decoders: error wording, Any and durations.

Every validation error reads ``<Type> "<name>": <field>: <problem>`` so a NACK's
``error_detail`` points straight at the offending field.
"""

from __future__ import annotations

import functools
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


@functools.cache
def _regex_compiler() -> Callable[[str], object]:
    """RE2 (as Envoy and gRPC use) when installed, else Python's ``re``; loaded with
    the first regex to check (a config without one never loads RE2)."""
    try:
        re2 = importlib.import_module("re2")
    except ImportError:
        return re.compile
    options = re2.Options()
    options.log_errors = False
    return lambda pattern: re2.compile(pattern, options)


def check_regex(ctx: DecodeContext, pattern: str, where: str) -> str:
    """Return ``pattern`` if it compiles, else raise naming ``where``."""
    try:
        _regex_compiler()(pattern)
    except Exception as exc:  # re.error / re2.error differ; both mean "bad pattern"
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ctx.error(f"{where}: invalid regex {pattern!r}: {reason}") from exc
    return pattern


def config_source_is_ads(source: Any) -> bool:
    """gRPC accepts only ``ads`` or ``self`` config sources (xDS over this stream)."""
    return source.WhichOneof("config_source_specifier") in ("ads", "self")


# FractionalPercent denominators (HUNDRED, TEN_THOUSAND, MILLION) -> factor to "per million".
_PER_MILLION_FACTOR = {0: 10_000, 1: 100, 2: 1}
_MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration's range


def per_million(ctx: DecodeContext, fraction: Any, where: str) -> int:
    """An ``envoy.type.v3.FractionalPercent`` as a count per million, capped at 100%."""
    factor = _PER_MILLION_FACTOR.get(fraction.denominator)
    if factor is None:
        raise ctx.error(f"{where}.denominator: unknown value {fraction.denominator}")
    return int(min(1_000_000, fraction.numerator * factor))


def enum_name(ctx: DecodeContext, enum_type: Any, value: int, where: str) -> str:
    """The name of a proto enum value; proto3 enums are open, so an undefined number
    (-1, 23...) arrives as is and is rejected here naming ``where``."""
    try:
        return str(enum_type.Name(value))
    except ValueError:
        raise ctx.error(f"{where}: unknown value {value}") from None


def checked_duration_s(ctx: DecodeContext, duration: Any, where: str) -> float:
    """A Duration in seconds, rejecting negative or out-of-range values (as gRPC does)."""
    seconds, nanos = duration.seconds, duration.nanos
    if seconds < 0 or nanos < 0 or nanos >= 1_000_000_000 or seconds > _MAX_DURATION_SECONDS:
        raise ctx.error(f"{where}: invalid duration (seconds={seconds}, nanos={nanos})")
    return duration_s(duration)


def optional_duration_s(ctx: DecodeContext, msg: Any, field: str, where: str) -> float | None:
    """``msg.field`` in seconds when set (checked), else None."""
    if not msg.HasField(field):
        return None
    return checked_duration_s(ctx, getattr(msg, field), f"{where}.{field}")


def positive_duration_s(ctx: DecodeContext, msg: Any, field: str, where: str) -> float | None:
    """Like :func:`optional_duration_s`, but a set value must be above 0."""
    value = optional_duration_s(ctx, msg, field, where)
    if value is not None and value <= 0:
        raise ctx.error(f"{where}.{field}: must be greater than 0")
    return value


def wrapped(msg: Any, field: str, default: Any) -> Any:
    """The value of a wrapper-typed field (UInt32Value, BoolValue...), or ``default``."""
    return getattr(msg, field).value if msg.HasField(field) else default


def percent(ctx: DecodeContext, msg: Any, field: str, where: str, default: float) -> float:
    """An ``envoy.type.v3.Percent`` field in 0..100 (``default`` when unset)."""
    if not msg.HasField(field):
        return default
    value = float(getattr(msg, field).value)
    if not 0.0 <= value <= 100.0:
        raise ctx.error(f"{where}.{field}: {value} is not a percentage in 0..100")
    return value


def at_most_100(ctx: DecodeContext, value: int, where: str) -> int:
    """A percentage given as an integer; gRFC A50 rejects anything above 100."""
    if value > 100:
        raise ctx.error(f"{where}: {value} is above 100")
    return value


def reject_if_set(ctx: DecodeContext, msg: Any, fields: tuple[str, ...], where: str) -> None:
    """Refuse fields meshlib does not implement and that would change traffic if ignored."""
    for name in fields:
        descriptor = msg.DESCRIPTOR.fields_by_name.get(name)
        if descriptor is None:
            continue  # not in this proto version
        value = getattr(msg, name)
        if descriptor.is_repeated:
            is_set = len(value) > 0
        elif descriptor.message_type is not None:
            is_set = msg.HasField(name)
        else:
            is_set = bool(value)
        if is_set:
            raise ctx.error(f"{where}.{name}: not supported")
