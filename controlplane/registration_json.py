"""The admin API's JSON registration body -> :class:`RegistrationRequest`.

JSON object keys are strings, so ``ports`` arrives as ``{"50051": 50051}``;
this module turns it into typed values and names the field on any type error.
Value checks (ranges, DNS names, ...) stay in :func:`controlplane.registry.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.model import Locality
from controlplane.registry import RegistrationRejected, RegistrationRequest

KNOWN_FIELDS = frozenset(
    {
        "service",
        "address",
        "ports",
        "labels",
        "locality",
        "weight",
        "ttl_seconds",
        "namespace",
        "id",
    }
)


def _string(body: Mapping[str, object], name: str, default: str | None) -> str | None:
    value = body.get(name, default)
    if value is None or isinstance(value, str):
        return value
    raise RegistrationRejected(name, f"expected a string, got {value!r}")


def _required_string(body: Mapping[str, object], name: str) -> str:
    value = _string(body, name, None)
    if value is None:
        raise RegistrationRejected(name, "is required")
    return value


def _ports(body: Mapping[str, object]) -> dict[int, int]:
    raw = body.get("ports")
    if raw is None:
        raise RegistrationRejected("ports", 'is required, e.g. {"50051": 50051}')
    if not isinstance(raw, Mapping):
        raise RegistrationRejected("ports", f'expected an object like {{"50051": 50051}}: {raw!r}')
    ports: dict[int, int] = {}
    for key, target in raw.items():
        if not isinstance(key, str) or not key.isdigit() or key != str(int(key)):
            raise RegistrationRejected("ports", f"service port {key!r} is not a decimal number")
        if isinstance(target, bool) or not isinstance(target, int):
            raise RegistrationRejected(f"ports[{key}]", f"expected an integer, got {target!r}")
        ports[int(key)] = target
    return ports


def _labels(body: Mapping[str, object]) -> dict[str, str]:
    raw = body.get("labels", {})
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RegistrationRejected("labels", f"expected an object of strings, got {raw!r}")
    labels: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise RegistrationRejected(f"labels[{key}]", f"expected a string, got {value!r}")
        labels[str(key)] = value
    return labels


_LOCALITY_FIELDS = ("region", "zone", "sub_zone")


def _locality(body: Mapping[str, object]) -> Locality | str:
    """``"region/zone/subzone"`` (Istio's string) or ``{"region", "zone", "sub_zone"}``,
    each field optional, as xDS and gRPC bootstraps have it."""
    raw = body.get("locality")
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, Mapping):
        raise RegistrationRejected(
            "locality",
            f'expected "region/zone/subzone" or {{"region", "zone", "sub_zone"}}: {raw!r}',
        )
    unknown = sorted(str(key) for key in raw if key not in _LOCALITY_FIELDS)
    if unknown:
        raise RegistrationRejected(
            f"locality.{unknown[0]}", f"unknown field (known: {', '.join(_LOCALITY_FIELDS)})"
        )
    parts: dict[str, str] = {}
    for name in _LOCALITY_FIELDS:
        part = raw.get(name)
        if part is not None and not isinstance(part, str):
            raise RegistrationRejected(f"locality.{name}", f"expected a string, got {part!r}")
        parts[name] = part or ""
    return Locality(**parts)


def registration_from_json(body: object) -> RegistrationRequest:
    """Parse the POST /v1/workloads body; unknown fields are an error, not ignored."""
    if not isinstance(body, Mapping):
        raise RegistrationRejected("body", "expected a JSON object")
    unknown = sorted(str(key) for key in body if key not in KNOWN_FIELDS)
    if unknown:
        raise RegistrationRejected(
            unknown[0], f"unknown field (known: {', '.join(sorted(KNOWN_FIELDS))})"
        )
    weight = body.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise RegistrationRejected("weight", f"expected an integer, got {weight!r}")
    ttl = body.get("ttl_seconds")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))):
        raise RegistrationRejected("ttl_seconds", f"expected a number, got {ttl!r}")
    return RegistrationRequest(
        service=_required_string(body, "service"),
        address=_required_string(body, "address"),
        ports=_ports(body),
        labels=_labels(body),
        locality=_locality(body),
        weight=weight,
        ttl_s=None if ttl is None else float(ttl),
        namespace=_string(body, "namespace", "default") or "default",
        id=_string(body, "id", None) or None,
    )
