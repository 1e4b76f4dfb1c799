"""Istio's default retry policy, side by side: with no ``retries`` on the route the
control plane sends every client the same RetryPolicy (2 retries on
connect-failure, refused-stream, unavailable, cancelled and 503, on another
host), so one of three backends failing every call (HTTP 503 / gRPC
UNAVAILABLE) is invisible to callers -- in Envoy, in grpc's own client (gRFC A44)
and in meshlib alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import ENVOY_GRPC, ENVOY_HTTP, GRPCIO, MESHLIB_GRPC, MESHLIB_HTTPX
from tests.support.echo_servers import grpc_echoes, http_echoes
from tests.support.traffic_config import endpoint, service
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

NAMES = ["ok-0", "ok-1", "bad"]
CALLS = 60


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrafficEnv]:
    with http_echoes(NAMES) as https, grpc_echoes(NAMES) as grpcs:
        https[-1].failing = True
        grpcs[-1].failing = True
        docs = [
            service("web", 8080, "HTTP", [endpoint(b.port) for b in https]),
            service("echo", 50051, "GRPC", [endpoint(b.port) for b in grpcs]),
        ]
        with traffic_env(tmp_path_factory.mktemp("retries"), docs) as mesh_env:
            yield mesh_env


KINDS = [
    (MESHLIB_HTTPX, "web:8080"),
    (ENVOY_HTTP, "web:8080"),
    (MESHLIB_GRPC, "echo:50051"),
    (GRPCIO, "echo:50051"),
    (ENVOY_GRPC, "echo:50051"),
]


@pytest.mark.parametrize(("kind", "service_"), KINDS, ids=[k[0] for k in KINDS])
def test_default_retries_hide_one_failing_backend(
    env: TrafficEnv, kind: str, service_: str
) -> None:
    with env.caller(kind, service_) as caller:
        outcomes = caller.calls(CALLS)
    failed = [o for o in outcomes if o not in NAMES[:2]]
    assert not failed, f"{kind}: {len(failed)}/{CALLS} calls failed despite retries: {failed[:5]}"
