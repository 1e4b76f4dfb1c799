"""Istio documents for the traffic tests: ServiceEntries with labelled, located
endpoints, VirtualServices and DestinationRules (as plain dicts for YAML)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

API_VERSION = "networking.istio.io/v1"
PORT_NAMES = {"HTTP": "http", "GRPC": "grpc", "HTTP2": "http2"}

Doc = dict[str, Any]


def endpoint(
    port: int, *, labels: Mapping[str, str] | None = None, locality: str = ""
) -> dict[str, Any]:
    """One inline endpoint on 127.0.0.1; ``port`` is where the backend listens."""
    body: dict[str, Any] = {"address": "127.0.0.1", "ports": {"main": port}}
    if labels:
        body["labels"] = dict(labels)
    if locality:
        body["locality"] = locality
    return body


def _metadata(name: str, annotations: Mapping[str, Any] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if annotations:
        meta["annotations"] = {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in annotations.items()
        }
    return meta


def service(host: str, port: int, protocol: str, endpoints: Sequence[Mapping[str, Any]]) -> Doc:
    """A STATIC ServiceEntry whose one port is named ``main``."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceEntry",
        "metadata": _metadata(host),
        "spec": {
            "hosts": [host],
            "ports": [{"number": port, "name": "main", "protocol": protocol}],
            "resolution": "STATIC",
            "endpoints": [dict(e) for e in endpoints],
        },
    }


def virtual_service(host: str, http: Sequence[Mapping[str, Any]]) -> Doc:
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": _metadata(f"{host}-routes"),
        "spec": {"hosts": [host], "http": [dict(rule) for rule in http]},
    }


def destination_rule(
    host: str,
    *,
    subsets: Mapping[str, Mapping[str, str]] | None = None,
    traffic_policy: Mapping[str, Any] | None = None,
    annotations: Mapping[str, Any] | None = None,
) -> Doc:
    """``subsets`` maps subset name -> labels; annotation values may be dicts (JSON)."""
    spec: dict[str, Any] = {"host": host}
    if traffic_policy:
        spec["trafficPolicy"] = dict(traffic_policy)
    if subsets:
        spec["subsets"] = [
            {"name": name, "labels": dict(labels)} for name, labels in subsets.items()
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": _metadata(f"{host}-policy", annotations),
        "spec": spec,
    }


def to(host: str, subset: str = "", weight: int | None = None) -> dict[str, Any]:
    """One ``route[]`` entry of an HTTP rule."""
    destination: dict[str, Any] = {"host": host}
    if subset:
        destination["subset"] = subset
    entry: dict[str, Any] = {"destination": destination}
    if weight is not None:
        entry["weight"] = weight
    return entry
