"""Locality priority failover (DestinationRule outlierDetection + localityLbSetting):
endpoints in zone-a and zone-b of region r1, every client in zone-a. Calls stay in
zone-a; with zone-a's backends stopped they move to zone-b; with them started
again (same port) they come back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.clients import (
    ENVOY_GRPC,
    ENVOY_HTTP,
    GRPC_KINDS,
    GRPCIO,
    MESHLIB_GRPC,
    MESHLIB_HTTPX,
)
from tests.support.echo_servers import GrpcEcho, HttpEcho, grpc_echoes, http_echoes
from tests.support.traffic_config import Doc, destination_rule, endpoint, service
from tests.traffic.harness import TrafficEnv, calls_until, traffic_env

pytestmark = pytest.mark.integration

REGION = "r1"
NEAR = ["near-0", "near-1"]
FAR = ["far-0"]
POLICY = {
    "loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {"enabled": True}},
    "outlierDetection": {
        "consecutive5xxErrors": 2,
        "interval": "0.5s",
        "baseEjectionTime": "1s",
        "maxEjectionPercent": 100,
    },
}


def _docs(host: str, protocol: str, port: int, near: list[int], far: list[int]) -> list[Doc]:
    endpoints = [endpoint(p, locality=f"{REGION}/zone-a") for p in near]
    endpoints += [endpoint(p, locality=f"{REGION}/zone-b") for p in far]
    return [service(host, port, protocol, endpoints), destination_rule(host, traffic_policy=POLICY)]


@pytest.fixture
def backends() -> Iterator[tuple[list[HttpEcho], list[GrpcEcho]]]:
    with http_echoes(NEAR + FAR) as https, grpc_echoes(NEAR + FAR) as grpcs:
        yield https, grpcs


@pytest.fixture
def env(tmp_path: Path, backends: tuple[list[HttpEcho], list[GrpcEcho]]) -> Iterator[TrafficEnv]:
    https, grpcs = backends
    n = len(NEAR)
    docs = _docs("web", "HTTP", 8080, [b.port for b in https[:n]], [b.port for b in https[n:]])
    docs += _docs("echo", "GRPC", 50051, [b.port for b in grpcs[:n]], [b.port for b in grpcs[n:]])
    with traffic_env(tmp_path, docs, region=REGION, zone="zone-a") as mesh_env:
        yield mesh_env


def _all_in(names: list[str]) -> Callable[[list[str]], bool]:
    return lambda outcomes: all(o in names for o in outcomes)


KINDS = [
    (MESHLIB_HTTPX, "web:8080"),
    (ENVOY_HTTP, "web:8080"),
    (MESHLIB_GRPC, "echo:50051"),
    (GRPCIO, "echo:50051"),
    (ENVOY_GRPC, "echo:50051"),
]


@pytest.mark.parametrize(("kind", "service_"), KINDS, ids=[k[0] for k in KINDS])
def test_traffic_fails_over_to_the_next_zone_and_back(
    env: TrafficEnv,
    backends: tuple[list[HttpEcho], list[GrpcEcho]],
    kind: str,
    service_: str,
) -> None:
    https, grpcs = backends
    near: list[HttpEcho] | list[GrpcEcho] = (
        grpcs[: len(NEAR)] if kind in GRPC_KINDS else https[: len(NEAR)]
    )
    with env.caller(kind, service_) as caller:
        caller.calls(1)  # waits for xDS
        first = caller.calls(20)
        assert set(first) == set(NEAR), f"{kind}: zone-a should take every call: {first}"
        for backend in near:
            backend.stop()
        calls_until(caller, _all_in(FAR), timeout=10, what="every call served by zone-b")
        for backend in near:
            backend.start()
        calls_until(caller, _all_in(NEAR), timeout=15, what="every call back in zone-a")
