"""Weights below the route: ``localityLbSetting.distribute`` (a client in zone-a
sends 80% to zone-a and 20% to zone-b) and endpoint weights (WorkloadEntry
``weight`` 1 and 3 in one locality). Proportions within a binomial tolerance
(tests/support/stats.py), 2000 calls.

grpc's own client takes locality weights (xds_wrr_locality) but ignores endpoint
weights under round robin (gRFC A52 leaves them to the child policy), so the
endpoint-weight case runs on meshlib and Envoy only.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import ENVOY_GRPC, ENVOY_HTTP, GRPCIO, MESHLIB_GRPC, MESHLIB_HTTPX
from tests.support.echo_servers import grpc_echoes, http_echoes
from tests.support.stats import split_problems, tally
from tests.support.traffic_config import Doc, destination_rule, endpoint, service
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

CALLS = 2000
REGION = "r1"
DISTRIBUTE = {
    "loadBalancer": {
        "simple": "ROUND_ROBIN",
        "localityLbSetting": {
            "distribute": [
                {
                    "from": f"{REGION}/zone-a/*",
                    "to": {f"{REGION}/zone-a/*": 80, f"{REGION}/zone-b/*": 20},
                }
            ]
        },
    }
}
NAMES = ["a", "b", "light", "heavy"]  # a: zone-a, b: zone-b; light/heavy: weights 1 and 3


def _docs(prefix: str, protocol: str, port: int, ports: list[int]) -> list[Doc]:
    a, b, light, heavy = ports
    located = [endpoint(a, locality=f"{REGION}/zone-a"), endpoint(b, locality=f"{REGION}/zone-b")]
    weighted = [endpoint(light), endpoint(heavy)]
    weighted[0]["weight"] = 1
    weighted[1]["weight"] = 3
    return [
        service(f"{prefix}-zones", port, protocol, located),
        destination_rule(f"{prefix}-zones", traffic_policy=DISTRIBUTE),
        service(f"{prefix}-weights", port, protocol, weighted),
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrafficEnv]:
    with http_echoes(NAMES) as https, grpc_echoes(NAMES) as grpcs:
        docs = _docs("web", "HTTP", 8080, [b.port for b in https])
        docs += _docs("echo", "GRPC", 50051, [b.port for b in grpcs])
        workdir = tmp_path_factory.mktemp("weights")
        with traffic_env(workdir, docs, region=REGION, zone="zone-a") as mesh_env:
            yield mesh_env


KINDS = [
    (MESHLIB_HTTPX, "web", 8080),
    (ENVOY_HTTP, "web", 8080),
    (MESHLIB_GRPC, "echo", 50051),
    (GRPCIO, "echo", 50051),
    (ENVOY_GRPC, "echo", 50051),
]
IDS = [k[0] for k in KINDS]


def _sample(env: TrafficEnv, kind: str, service_: str) -> dict[str, int]:
    with env.caller(kind, service_) as caller:
        caller.calls(1)  # waits for xDS
        return tally(caller.calls(CALLS))


@pytest.mark.parametrize(("kind", "prefix", "port"), KINDS, ids=IDS)
def test_locality_distribute_weights(env: TrafficEnv, kind: str, prefix: str, port: int) -> None:
    counts = _sample(env, kind, f"{prefix}-zones:{port}")
    problems = split_problems(counts, {"a": 0.8, "b": 0.2})
    assert not problems, f"{kind} 80/20 by locality: {counts}: " + "; ".join(problems)


@pytest.mark.parametrize(
    ("kind", "prefix", "port"),
    [k for k in KINDS if k[0] != GRPCIO],
    ids=[i for i in IDS if i != GRPCIO],
)
def test_endpoint_weights(env: TrafficEnv, kind: str, prefix: str, port: int) -> None:
    counts = _sample(env, kind, f"{prefix}-weights:{port}")
    problems = split_problems(counts, {"light": 0.25, "heavy": 0.75})
    assert not problems, f"{kind} endpoint weights 1:3: {counts}: " + "; ".join(problems)
