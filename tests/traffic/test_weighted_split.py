"""Weighted split across subsets (VirtualService route weights over DestinationRule
subsets v1/v2): every client's proportions match the weights within a binomial
tolerance (tests/support/stats.py) -- 20/80 and 1/99, 2000 calls each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import ENVOY_GRPC, ENVOY_HTTP, GRPCIO, MESHLIB_GRPC, MESHLIB_HTTPX
from tests.support.echo_servers import grpc_echoes, http_echoes
from tests.support.stats import split_problems, tally
from tests.support.traffic_config import (
    Doc,
    destination_rule,
    endpoint,
    service,
    to,
    virtual_service,
)
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

CALLS = 2000
SPLITS = {"split-a": (20, 80), "split-b": (1, 99)}  # host -> (v1 %, v2 %)
HTTP_PORT = 8080
GRPC_PORT = 50051


def _docs(protocol: str, port: int, v1_port: int, v2_port: int, prefix: str) -> list[Doc]:
    docs: list[Doc] = []
    for base, (v1, v2) in SPLITS.items():
        host = f"{prefix}-{base}"
        endpoints = [
            endpoint(v1_port, labels={"version": "v1"}),
            endpoint(v2_port, labels={"version": "v2"}),
        ]
        docs.append(service(host, port, protocol, endpoints))
        docs.append(
            destination_rule(host, subsets={"v1": {"version": "v1"}, "v2": {"version": "v2"}})
        )
        docs.append(virtual_service(host, [{"route": [to(host, "v1", v1), to(host, "v2", v2)]}]))
    return docs


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrafficEnv]:
    with http_echoes(["v1", "v2"]) as (h1, h2), grpc_echoes(["v1", "v2"]) as (g1, g2):
        docs = _docs("HTTP", HTTP_PORT, h1.port, h2.port, "web")
        docs += _docs("GRPC", GRPC_PORT, g1.port, g2.port, "echo")
        with traffic_env(tmp_path_factory.mktemp("split"), docs) as mesh_env:
            yield mesh_env


KINDS = [
    (MESHLIB_HTTPX, "web", HTTP_PORT),
    (ENVOY_HTTP, "web", HTTP_PORT),
    (MESHLIB_GRPC, "echo", GRPC_PORT),
    (GRPCIO, "echo", GRPC_PORT),
    (ENVOY_GRPC, "echo", GRPC_PORT),
]


@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize(("kind", "prefix", "port"), KINDS, ids=[k[0] for k in KINDS])
def test_weighted_split_matches_the_route_weights(
    env: TrafficEnv, kind: str, prefix: str, port: int, split: str
) -> None:
    v1, v2 = SPLITS[split]
    with env.caller(kind, f"{prefix}-{split}:{port}") as caller:
        caller.calls(1)  # the first call waits for xDS; it is not part of the sample
        counts = tally(caller.calls(CALLS))
    problems = split_problems(counts, {"v1": v1 / 100, "v2": v2 / 100})
    assert not problems, f"{kind} {v1}/{v2}: {counts}: " + "; ".join(problems)
