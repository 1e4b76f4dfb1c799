"""Decoding one state-of-the-world response into valid resources and errors.

Every resource is decoded; the valid ones are applied even when others fail
(as gRPC does), and the errors make up the NACK's ``error_detail``. A decoder
that raises anything but XdsValidationError is a meshlib bug: it is logged
with its traceback and that one resource is NACKed like any invalid one, so
the stream, the other resources and the last good config are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meshlib.errors import XdsValidationError
from meshlib.observability.logging import get_logger
from meshlib.xds_client.resource_types import ResourceType

log = get_logger(__name__)

# Bounds on a NACK's error_detail, so one huge name or pattern cannot make the
# request itself too large for the control plane to read.
_MAX_ERROR_CHARS = 2_000
_MAX_DETAIL_CHARS = 32_000


@dataclass
class DecodedResponse:
    valid: dict[str, Any] = field(default_factory=dict)  # name -> model
    errors: dict[str, str] = field(default_factory=dict)  # name -> error text
    unnamed_errors: list[str] = field(default_factory=list)  # resources with no readable name

    def error_detail(self) -> str:
        parts: list[str] = []
        size = 0
        everything = [*self.unnamed_errors, *self.errors.values()]
        for i, error in enumerate(everything):
            part = _clip(error, _MAX_ERROR_CHARS)
            if size + len(part) > _MAX_DETAIL_CHARS:
                parts.append(f"... and {len(everything) - i} more errors")
                break
            parts.append(part)
            size += len(part) + 2
        return "; ".join(parts)


def decode_response(rtype: ResourceType[Any], resources: Iterable[Any]) -> DecodedResponse:
    out = DecodedResponse()
    for index, any_msg in enumerate(resources):
        try:
            model = rtype.decode(any_msg)
        except XdsValidationError as exc:
            _add_error(out, rtype.resource_name(any_msg), str(exc))
            continue
        except Exception as exc:  # a decoder bug: NACK this resource, keep going
            name = rtype.resource_name(any_msg)
            log.error("xds_decoder_failed", type=rtype.name, name=name, exc_info=True)
            who = f'{rtype.name} "{name}"' if name is not None else f"{rtype.name} [{index}]"
            reason = f"{type(exc).__name__}: {exc}"
            _add_error(out, name, f"{who}: cannot be decoded (meshlib decoder failed: {reason})")
            continue
        name = rtype.model_name(model)
        if name in out.valid or name in out.errors:
            out.valid.pop(name, None)
            out.errors[name] = f'{rtype.name} "{name}": appears more than once in the response'
            continue
        out.valid[name] = model
    return out


def _add_error(out: DecodedResponse, name: str | None, error: str) -> None:
    if name is None:
        out.unnamed_errors.append(error)
    else:
        out.valid.pop(name, None)
        out.errors[name] = error


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 30]}... ({len(text)} chars)"
