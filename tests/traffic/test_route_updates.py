"""A VirtualService change reaches every client while it runs: the route moves
from subset v1 to a 50/50 split and then to v2 alone, without restarting any
client (meshlib, grpc's own client and Envoy follow the same ADS updates)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clients import ENVOY_GRPC, ENVOY_HTTP, GRPCIO, MESHLIB_GRPC, MESHLIB_HTTPX
from tests.support.echo_servers import grpc_echoes, http_echoes
from tests.support.traffic_config import (
    Doc,
    destination_rule,
    endpoint,
    service,
    to,
    virtual_service,
)
from tests.traffic.harness import TrafficEnv, calls_until, traffic_env

pytestmark = pytest.mark.integration

Ports = dict[str, list[int]]


def _docs(ports: Ports, weights: tuple[int, int]) -> list[Doc]:
    docs: list[Doc] = []
    for host, protocol, port in (("web", "HTTP", 8080), ("echo", "GRPC", 50051)):
        v1, v2 = ports[protocol]
        endpoints = [endpoint(v1, labels={"version": "v1"}), endpoint(v2, labels={"version": "v2"})]
        route = [to(host, s, w) for s, w in zip(("v1", "v2"), weights, strict=True) if w]
        if len(route) == 1:
            del route[0]["weight"]
        docs += [
            service(host, port, protocol, endpoints),
            destination_rule(host, subsets={"v1": {"version": "v1"}, "v2": {"version": "v2"}}),
            virtual_service(host, [{"route": route}]),
        ]
    return docs


@pytest.fixture
def ports() -> Iterator[Ports]:
    with http_echoes(["v1", "v2"]) as https, grpc_echoes(["v1", "v2"]) as grpcs:
        yield {"HTTP": [b.port for b in https], "GRPC": [b.port for b in grpcs]}


@pytest.fixture
def env(tmp_path: Path, ports: Ports) -> Iterator[TrafficEnv]:
    with traffic_env(tmp_path, _docs(ports, (100, 0))) as mesh_env:
        yield mesh_env


KINDS = [
    (MESHLIB_HTTPX, "web:8080"),
    (ENVOY_HTTP, "web:8080"),
    (MESHLIB_GRPC, "echo:50051"),
    (GRPCIO, "echo:50051"),
    (ENVOY_GRPC, "echo:50051"),
]


@pytest.mark.parametrize(("kind", "service_"), KINDS, ids=[k[0] for k in KINDS])
def test_clients_follow_route_changes(
    env: TrafficEnv, ports: Ports, kind: str, service_: str
) -> None:
    with env.caller(kind, service_) as caller:
        caller.calls(1)  # waits for xDS
        assert caller.calls(20) == ["v1"] * 20
        env.write(*_docs(ports, (50, 50)))
        calls_until(
            caller, lambda seen: set(seen) == {"v1", "v2"}, batch=40, timeout=5, what="the split"
        )
        env.write(*_docs(ports, (0, 100)))
        calls_until(caller, lambda seen: set(seen) == {"v2"}, batch=20, timeout=5, what="v2 only")
