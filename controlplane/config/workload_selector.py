"""Istio's ``selector: {matchLabels: {...}}`` of the security resources.

An absent selector means "every workload of the namespace" (or of the mesh in the
root namespace); an empty ``matchLabels`` selects every workload too, as Istio reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from controlplane.config import names
from controlplane.config.fields import Fields


def parse_selector(spec: Fields) -> Mapping[str, str] | None:
    """``spec.selector.matchLabels``; None when absent (or reported as wrong)."""
    fields = spec.mapping("selector")
    if fields is None:
        return None
    fields.reject_unknown(("matchLabels",), what="selector")
    labels = fields.string_map(
        "matchLabels",
        key_check=names.label_key,
        value_check=names.label_value,
        allow_empty_values=True,
    )
    if labels is None or not labels:
        return None  # an empty selector selects everything: the same as none
    return MappingProxyType(dict(labels))
