"""``loadBalancer.simple`` ROUND_ROBIN, LEAST_REQUEST and RANDOM spread sequential
calls evenly over three endpoints in every client. One call at a time leaves
least request nothing to prefer, so it picks among ties at random (Envoy and
gRFC A48 alike); each endpoint's share is checked against Binomial(n, 1/3)
(tests/support/stats.py), which round robin meets exactly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import ENVOY_GRPC, ENVOY_HTTP, GRPCIO, MESHLIB_GRPC, MESHLIB_HTTPX
from tests.support.echo_servers import grpc_echoes, http_echoes
from tests.support.stats import split_problems, tally
from tests.support.traffic_config import Doc, destination_rule, endpoint, service
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

CALLS = 900
NAMES = ["e0", "e1", "e2"]
POLICIES = ["ROUND_ROBIN", "LEAST_REQUEST", "RANDOM"]


def _host(prefix: str, policy: str) -> str:
    return f"{prefix}-{policy.lower().replace('_', '-')}"


def _docs(prefix: str, protocol: str, port: int, ports: list[int]) -> list[Doc]:
    docs: list[Doc] = []
    for policy in POLICIES:
        host = _host(prefix, policy)
        docs.append(service(host, port, protocol, [endpoint(p) for p in ports]))
        docs.append(destination_rule(host, traffic_policy={"loadBalancer": {"simple": policy}}))
    return docs


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrafficEnv]:
    with http_echoes(NAMES) as https, grpc_echoes(NAMES) as grpcs:
        docs = _docs("web", "HTTP", 8080, [b.port for b in https])
        docs += _docs("echo", "GRPC", 50051, [b.port for b in grpcs])
        with traffic_env(tmp_path_factory.mktemp("simple"), docs) as mesh_env:
            yield mesh_env


KINDS = [
    (MESHLIB_HTTPX, "web", 8080),
    (ENVOY_HTTP, "web", 8080),
    (MESHLIB_GRPC, "echo", 50051),
    (GRPCIO, "echo", 50051),
    (ENVOY_GRPC, "echo", 50051),
]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("kind", "prefix", "port"), KINDS, ids=[k[0] for k in KINDS])
def test_simple_policy_spreads_evenly(
    env: TrafficEnv, kind: str, prefix: str, port: int, policy: str
) -> None:
    with env.caller(kind, f"{_host(prefix, policy)}:{port}") as caller:
        caller.calls(1)  # waits for xDS
        counts = tally(caller.calls(CALLS))
    problems = split_problems(counts, {name: 1 / len(NAMES) for name in NAMES})
    assert not problems, f"{kind} {policy}: {counts}: " + "; ".join(problems)
