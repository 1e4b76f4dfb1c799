"""Outlier detection: one of three backends fails every call (gRPC UNAVAILABLE,
HTTP 503); it is ejected and the calls go to the two healthy ones.

* failure percentage (annotation ``meshlib.dev/outlier-failure-percentage`` +
  outlierDetection interval / baseEjectionTime): every client, grpcio included;
* consecutive 5xx (``consecutive5xxErrors``, short baseEjectionTime): meshlib and
  Envoy (gRPC ignores it, gRFC A50); once healed, the backend comes back.

The route turns retries off (``retries.attempts: 0``): Istio's default retry
policy (2 retries on unavailable / 503, on another host) would hide the failures
from the caller, and this test wants to see them stop because of the ejection.
"""

from __future__ import annotations

from collections.abc import Iterator
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

NAMES = ["ok-0", "ok-1", "bad"]
HEALTHY = NAMES[:2]
FAILURE_PERCENTAGE = {"threshold": 50, "minimumHosts": 3, "requestVolume": 10, "enforcing": 100}
POLICY = {
    "outlierDetection": {
        "consecutive5xxErrors": 0,  # failure percentage alone decides
        "interval": "0.5s",
        "baseEjectionTime": "30s",
        "maxEjectionPercent": 50,
    }
}
ANNOTATIONS = {"meshlib.dev/outlier-failure-percentage": FAILURE_PERCENTAGE}
AFTER_EJECTION_CALLS = 60


# Consecutive 5xx (Envoy and meshlib; grpc's client ignores it, gRFC A50), with a
# short ejection so the healed backend is seen coming back.
CONSECUTIVE_POLICY = {
    "outlierDetection": {
        "consecutive5xxErrors": 3,
        "interval": "0.5s",
        "baseEjectionTime": "1s",
        "maxEjectionPercent": 50,
    }
}


def _docs(host: str, protocol: str, port: int, ports: list[int]) -> list[Doc]:
    docs: list[Doc] = []
    for name, policy, notes in (
        (host, POLICY, ANNOTATIONS),
        (f"{host}-c5", CONSECUTIVE_POLICY, None),
    ):
        docs += [
            service(name, port, protocol, [endpoint(p) for p in ports]),
            destination_rule(name, traffic_policy=policy, annotations=notes),
            virtual_service(name, [{"route": [to(name)], "retries": {"attempts": 0}}]),
        ]
    return docs


Backends = tuple[list[HttpEcho], list[GrpcEcho]]


@pytest.fixture
def backends() -> Iterator[Backends]:
    with http_echoes(NAMES) as https, grpc_echoes(NAMES) as grpcs:
        https[-1].failing = True
        grpcs[-1].failing = True
        yield https, grpcs


@pytest.fixture
def env(tmp_path: Path, backends: Backends) -> Iterator[TrafficEnv]:
    https, grpcs = backends
    docs = _docs("web", "HTTP", 8080, [b.port for b in https])
    docs += _docs("echo", "GRPC", 50051, [b.port for b in grpcs])
    with traffic_env(tmp_path, docs) as mesh_env:
        yield mesh_env


KINDS = [
    (MESHLIB_HTTPX, "web:8080"),
    (ENVOY_HTTP, "web:8080"),
    (MESHLIB_GRPC, "echo:50051"),
    (GRPCIO, "echo:50051"),
    (ENVOY_GRPC, "echo:50051"),
]


@pytest.mark.parametrize(("kind", "service_"), KINDS, ids=[k[0] for k in KINDS])
def test_the_failing_backend_is_ejected(env: TrafficEnv, kind: str, service_: str) -> None:
    failure = "error: UNAVAILABLE" if kind in GRPC_KINDS else "http 503"
    with env.caller(kind, service_) as caller:
        caller.calls(1)  # waits for xDS
        before = caller.calls(30)
        # ejection needs requestVolume (10) calls on the bad one: not before 30 calls
        assert failure in before, f"{kind}: the bad backend's failures must show first: {before}"
        calls_until(
            caller,
            lambda outcomes: set(outcomes) <= set(HEALTHY),
            batch=30,
            timeout=10,
            what="the failing backend to be ejected",
        )
        after = caller.calls(AFTER_EJECTION_CALLS)
    assert set(after) == set(HEALTHY), f"{kind}: after ejection: {after}"


@pytest.mark.parametrize(
    ("kind", "service_"),
    [k for k in KINDS if k[0] != GRPCIO],
    ids=[k[0] for k in KINDS if k[0] != GRPCIO],
)
def test_consecutive_5xx_ejects_and_the_healed_backend_returns(
    env: TrafficEnv, backends: Backends, kind: str, service_: str
) -> None:
    host, port = service_.split(":")
    bad = backends[1][-1] if kind in GRPC_KINDS else backends[0][-1]
    with env.caller(kind, f"{host}-c5:{port}") as caller:
        caller.calls(1)  # waits for xDS
        calls_until(
            caller,
            lambda outcomes: set(outcomes) <= set(HEALTHY),
            batch=30,
            timeout=10,
            what="the failing backend to be ejected",
        )
        bad.failing = False
        calls_until(
            caller,
            lambda outcomes: set(outcomes) == set(NAMES),
            batch=30,
            timeout=10,
            what="the healed backend to come back after baseEjectionTime",
        )
