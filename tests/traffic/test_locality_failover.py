"""Locality priority failover (DestinationRule outlierDetection + localityLbSetting),
every client in r1/zone-a:

* zones: endpoints in zone-a and zone-b; calls stay in zone-a, move to zone-b when
  zone-a's backends are stopped, and come back when they start again (same port);
* regions: ``failover: [{from: r1, to: r2}]`` sends them to r2, never to r3;
* half of zone-a down: the load spills over as Envoy computes it (overprovisioning
  factor 1.4), except in gRPC, whose priority policy moves only whole priorities.
"""

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
from tests.support.stats import split_problems, tally
from tests.support.traffic_config import Doc, destination_rule, endpoint, service
from tests.traffic.harness import TrafficEnv, calls_until, traffic_env

pytestmark = pytest.mark.integration

REGION = "r1"
NEAR = ["near-0", "near-1"]  # r1/zone-a, the clients' own zone
FAR = ["far-0"]  # r1/zone-b
ALLOWED = ["r2-0"]  # region r2: where failover from r1 may go
OTHER = ["r3-0"]  # region r3: only after r2
NAMES = NEAR + FAR + ALLOWED + OTHER
OUTLIERS = {
    "consecutive5xxErrors": 2,
    "interval": "0.5s",
    "baseEjectionTime": "1s",
    "maxEjectionPercent": 100,
}
ZONES_POLICY = {
    "loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {"enabled": True}},
    "outlierDetection": OUTLIERS,
}
REGIONS_POLICY = {
    "loadBalancer": {
        "simple": "ROUND_ROBIN",
        "localityLbSetting": {"failover": [{"from": REGION, "to": "r2"}]},
    },
    "outlierDetection": OUTLIERS,
}
# Partial failover: long ejections so the downed endpoint stays out while sampled.
PARTIAL_POLICY = {
    "loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {"enabled": True}},
    "outlierDetection": {**OUTLIERS, "baseEjectionTime": "30s"},
}
PARTIAL_CALLS = 1000
OVERPROVISIONING = 1.4  # Envoy's default overprovisioning factor
Backends = tuple[list[HttpEcho], list[GrpcEcho]]


def _docs(host: str, protocol: str, port: int, ports: dict[str, int]) -> list[Doc]:
    zones = [endpoint(ports[n], locality=f"{REGION}/zone-a") for n in NEAR]
    zones += [endpoint(ports[n], locality=f"{REGION}/zone-b") for n in FAR]
    regions = [endpoint(ports[n], locality=f"{REGION}/zone-a") for n in NEAR]
    regions += [endpoint(ports[n], locality="r3/zone-y") for n in OTHER]
    regions += [endpoint(ports[n], locality="r2/zone-x") for n in ALLOWED]
    return [
        service(host, port, protocol, zones),
        destination_rule(host, traffic_policy=ZONES_POLICY),
        service(f"{host}-regions", port, protocol, regions),
        destination_rule(f"{host}-regions", traffic_policy=REGIONS_POLICY),
        service(f"{host}-partial", port, protocol, zones),
        destination_rule(f"{host}-partial", traffic_policy=PARTIAL_POLICY),
    ]


@pytest.fixture
def backends() -> Iterator[Backends]:
    with http_echoes(NAMES) as https, grpc_echoes(NAMES) as grpcs:
        yield https, grpcs


@pytest.fixture
def env(tmp_path: Path, backends: Backends) -> Iterator[TrafficEnv]:
    https, grpcs = backends
    docs = _docs("web", "HTTP", 8080, {b.name: b.port for b in https})
    docs += _docs("echo", "GRPC", 50051, {b.name: b.port for b in grpcs})
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


def _near(backends: Backends, kind: str) -> list[HttpEcho | GrpcEcho]:
    https, grpcs = backends
    chosen: list[HttpEcho | GrpcEcho] = [*grpcs] if kind in GRPC_KINDS else [*https]
    return [b for b in chosen if b.name in NEAR]


@pytest.mark.parametrize(("kind", "service_"), KINDS, ids=[k[0] for k in KINDS])
def test_traffic_fails_over_to_the_next_zone_and_back(
    env: TrafficEnv, backends: Backends, kind: str, service_: str
) -> None:
    with env.caller(kind, service_) as caller:
        caller.calls(1)  # waits for xDS
        first = caller.calls(20)
        assert set(first) == set(NEAR), f"{kind}: zone-a should take every call: {first}"
        for backend in _near(backends, kind):
            backend.stop()
        calls_until(caller, _all_in(FAR), timeout=10, what="every call served by zone-b")
        for backend in _near(backends, kind):
            backend.start()
        calls_until(caller, _all_in(NEAR), timeout=15, what="every call back in zone-a")


@pytest.mark.parametrize(("kind", "service_"), KINDS, ids=[k[0] for k in KINDS])
def test_region_failover_goes_to_the_configured_region(
    env: TrafficEnv, backends: Backends, kind: str, service_: str
) -> None:
    host, port = service_.split(":")
    with env.caller(kind, f"{host}-regions:{port}") as caller:
        caller.calls(1)  # waits for xDS
        first = caller.calls(20)
        assert set(first) == set(NEAR), f"{kind}: zone-a should take every call: {first}"
        for backend in _near(backends, kind):
            backend.stop()
        calls_until(caller, _all_in(ALLOWED), timeout=10, what="every call served by r2 (not r3)")
        for backend in _near(backends, kind):
            backend.start()
        calls_until(caller, _all_in(NEAR), timeout=15, what="every call back in zone-a")


@pytest.mark.parametrize(("kind", "service_"), KINDS, ids=[k[0] for k in KINDS])
def test_half_a_zone_down_spills_over_as_envoy_computes(
    env: TrafficEnv, backends: Backends, kind: str, service_: str
) -> None:
    """zone-a at 50% healthy carries min(100%, 50% * 1.4) = 70% of the calls, zone-b
    the other 30% (Envoy's priority load). gRPC's priority policy fails over only
    when a whole priority is unreachable, so grpcio keeps every call in zone-a."""
    host, port = service_.split(":")
    down, up = _near(backends, kind)
    with env.caller(kind, f"{host}-partial:{port}") as caller:
        caller.calls(1)  # waits for xDS
        down.stop()
        calls_until(
            caller,
            lambda seen: up.name in seen and set(seen) <= {up.name, *FAR},
            batch=20,
            timeout=10,
            what=f"{down.name} ejected",
        )
        counts = tally(caller.calls(PARTIAL_CALLS))
    near_share = min(1.0, 0.5 * OVERPROVISIONING)
    envoy_split = {up.name: near_share, FAR[0]: 1.0 - near_share}
    expected = {up.name: 1.0} if kind == GRPCIO else envoy_split
    problems = split_problems(counts, expected)
    assert not problems, f"{kind}: {counts}: " + "; ".join(problems)
