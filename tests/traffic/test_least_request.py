"""LEAST_REQUEST under concurrency: one of four endpoints answers 200 ms late, 8
calls are kept in flight. Round robin would hand the slow one exactly 1/4 of the
calls; least request (power of two choices, Envoy's default choice_count 2)
sends it a call only when both choices land on it (1/16) or it is no busier than
the other choice, so its share stays under 1/8: the test accepts at most the
upper binomial bound for p = 1/8 (tests/support/stats.py), which is below 1/4.

grpcio's C core has no least-request policy: the control plane sends
``load_balancing_policy`` [LeastRequest, RoundRobin] and gRPC takes the round
robin fallback (controlplane/translate/lb_policy.py), which is checked as such.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import ENVOY_GRPC, ENVOY_HTTP, GRPCIO, MESHLIB_GRPC, MESHLIB_HTTPX
from tests.support.echo_servers import grpc_echoes, http_echoes
from tests.support.stats import binomial_bounds, tally
from tests.support.traffic_config import destination_rule, endpoint, service
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

NAMES = ["slow", "fast-0", "fast-1", "fast-2"]
CALLS = 400
WORKERS = 8
SLOW_DELAY_S = 0.2
POLICY = {"loadBalancer": {"simple": "LEAST_REQUEST"}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrafficEnv]:
    with http_echoes(NAMES) as https, grpc_echoes(NAMES) as grpcs:
        https[0].state.delay_s = SLOW_DELAY_S
        grpcs[0].state.delay_s = SLOW_DELAY_S
        docs = [
            service("web", 8080, "HTTP", [endpoint(b.port) for b in https]),
            destination_rule("web", traffic_policy=POLICY),
            service("echo", 50051, "GRPC", [endpoint(b.port) for b in grpcs]),
            destination_rule("echo", traffic_policy=POLICY),
        ]
        with traffic_env(tmp_path_factory.mktemp("least"), docs) as mesh_env:
            yield mesh_env


KINDS = [
    (MESHLIB_HTTPX, "web:8080"),
    (ENVOY_HTTP, "web:8080"),
    (MESHLIB_GRPC, "echo:50051"),
    (ENVOY_GRPC, "echo:50051"),
]


@pytest.mark.parametrize(("kind", "service_"), KINDS, ids=[k[0] for k in KINDS])
def test_least_request_avoids_the_slow_endpoint(env: TrafficEnv, kind: str, service_: str) -> None:
    with env.caller(kind, service_) as caller:
        caller.calls(1)  # waits for xDS
        counts = tally(caller.concurrent_calls(CALLS, WORKERS))
    assert set(counts) <= set(NAMES), f"{kind}: {counts}"
    _, most = binomial_bounds(CALLS, 1 / 8)
    assert counts.get("slow", 0) <= most, (
        f"{kind}: the slow endpoint got {counts.get('slow', 0)}/{CALLS} calls "
        f"(round robin would give {CALLS // 4}; least request at most {most:.0f}): {counts}"
    )


def test_grpcio_takes_the_round_robin_fallback(env: TrafficEnv) -> None:
    with env.caller(GRPCIO, "echo:50051") as caller:
        caller.calls(1)  # waits for xDS
        counts = tally(caller.concurrent_calls(CALLS, WORKERS))
    assert counts == {name: CALLS // len(NAMES) for name in NAMES}
