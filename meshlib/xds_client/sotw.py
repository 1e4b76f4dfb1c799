"""Decoding one state-of-the-world response into valid resources and errors.

Every resource is decoded; the valid ones are applied even when others fail
(as gRPC does), and the errors make up the NACK's ``error_detail``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meshlib.errors import XdsValidationError
from meshlib.xds_client.resource_types import ResourceType


@dataclass
class DecodedResponse:
    valid: dict[str, Any] = field(default_factory=dict)  # name -> model
    errors: dict[str, str] = field(default_factory=dict)  # name -> error text
    unnamed_errors: list[str] = field(default_factory=list)  # resources with no readable name

    def error_detail(self) -> str:
        return "; ".join([*self.unnamed_errors, *self.errors.values()])


def decode_response(rtype: ResourceType[Any], resources: Iterable[Any]) -> DecodedResponse:
    out = DecodedResponse()
    for any_msg in resources:
        try:
            model = rtype.decode(any_msg)
        except XdsValidationError as exc:
            name = rtype.resource_name(any_msg)
            if name is None:
                out.unnamed_errors.append(str(exc))
            else:
                out.valid.pop(name, None)
                out.errors[name] = str(exc)
            continue
        name = rtype.model_name(model)
        if name in out.valid or name in out.errors:
            out.valid.pop(name, None)
            out.errors[name] = f'{rtype.name} "{name}": appears more than once in the response'
            continue
        out.valid[name] = model
    return out
