"""More hash keys and maglev, meshlib against Envoy (grpc's own client supports
only ring hash on a header, covered in test_ring_hash.py): a query parameter, a
cookie, maglev on a header (HTTP and gRPC), and a small ring (minimumRingSize 64,
also through grpc's own client). Every key must reach the
endpoint Envoy sends it to, keys must stick, and keys must spread."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.clients import ENVOY_GRPC, ENVOY_HTTP, GRPCIO, MESHLIB_GRPC, MESHLIB_HTTPX
from tests.support.echo_servers import grpc_echoes, http_echoes
from tests.support.traffic_config import Doc, destination_rule, endpoint, service
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

KEYS = [f"k{i}" for i in range(40)]
REPEATS = 2
BACKENDS = ["e0", "e1", "e2", "e3"]
MIN_ENDPOINTS_USED = 3  # see test_ring_hash.py
# variant -> (consistentHash, protocol)
VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "query": ({"httpQueryParameterName": "user"}, "HTTP"),
    "cookie": ({"httpCookie": {"name": "session"}}, "HTTP"),
    "maglev-http": ({"httpHeaderName": "x-user", "maglev": {"tableSize": 65537}}, "HTTP"),
    "maglev-grpc": ({"httpHeaderName": "x-user", "maglev": {"tableSize": 65537}}, "GRPC"),
    "small-ring-http": ({"httpHeaderName": "x-user", "ringHash": {"minimumRingSize": 64}}, "HTTP"),
    "small-ring-grpc": ({"httpHeaderName": "x-user", "ringHash": {"minimumRingSize": 64}}, "GRPC"),
}
SOURCE_IP = {"source-ip": ({"useSourceIp": True}, "HTTP")}
SOURCE_IP_CALLS = 20
PORTS = {"HTTP": 8080, "GRPC": 50051}


def _send(variant: str, key: str) -> tuple[dict[str, str], str]:
    """(headers, path) carrying ``key`` the way ``variant`` hashes it."""
    if variant == "query":
        return {}, f"/?user={key}"
    if variant == "cookie":
        return {"cookie": f"session={key}"}, "/"
    return {"x-user": key}, "/"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrafficEnv]:
    with http_echoes(BACKENDS) as https, grpc_echoes(BACKENDS) as grpcs:
        docs: list[Doc] = []
        for variant, (consistent_hash, protocol) in {**VARIANTS, **SOURCE_IP}.items():
            backends = https if protocol == "HTTP" else grpcs
            policy = {"loadBalancer": {"consistentHash": consistent_hash}}
            endpoints = [endpoint(b.port) for b in backends]
            docs.append(service(variant, PORTS[protocol], protocol, endpoints))
            docs.append(destination_rule(variant, traffic_policy=policy))
        with traffic_env(tmp_path_factory.mktemp("hashes"), docs) as mesh_env:
            yield mesh_env


def _key_map(env: TrafficEnv, kind: str, variant: str) -> dict[str, str]:
    protocol = VARIANTS[variant][1]
    with env.caller(kind, f"{variant}:{PORTS[protocol]}") as caller:
        outcomes = {}
        for key in KEYS:
            headers, path = _send(variant, key)
            outcomes[key] = caller.calls(REPEATS, headers, path)
    unstable = {key: seen for key, seen in outcomes.items() if len(set(seen)) != 1}
    assert not unstable, f"{kind} {variant}: a key reached several endpoints: {unstable}"
    chosen = {key: seen[0] for key, seen in outcomes.items()}
    used = set(chosen.values())
    assert used <= set(BACKENDS), f"{kind} {variant}: unexpected outcomes {used}"
    assert len(used) >= MIN_ENDPOINTS_USED, f"{kind} {variant}: keys used only {sorted(used)}"
    return chosen


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_meshlib_hashes_each_key_to_the_endpoint_envoy_picks(env: TrafficEnv, variant: str) -> None:
    grpc = VARIANTS[variant][1] == "GRPC"
    envoy = _key_map(env, ENVOY_GRPC if grpc else ENVOY_HTTP, variant)
    mine = _key_map(env, MESHLIB_GRPC if grpc else MESHLIB_HTTPX, variant)
    differences = [f"{k}: {mine[k]} (envoy {envoy[k]})" for k in KEYS if mine[k] != envoy[k]]
    assert not differences, f"{variant}: {len(differences)}/{len(KEYS)} keys differ: {differences}"


def test_grpcio_honours_the_minimum_ring_size_as_envoy_does(env: TrafficEnv) -> None:
    envoy = _key_map(env, ENVOY_GRPC, "small-ring-grpc")
    mine = _key_map(env, GRPCIO, "small-ring-grpc")
    differences = [f"{k}: {mine[k]} (envoy {envoy[k]})" for k in KEYS if mine[k] != envoy[k]]
    assert not differences, f"{len(differences)}/{len(KEYS)} keys differ: {differences}"


def test_source_ip_hash_sticks_to_one_endpoint(env: TrafficEnv) -> None:
    """Each client hashes one source address, so all its calls reach one endpoint.

    The two need not agree: Envoy hashes the downstream address it sees (the app
    connects to the sidecar from 127.0.0.1), meshlib the host's outbound IP (what
    a server-side proxy would see), see meshlib/routing/_hash_policy.py.
    """
    for kind in (ENVOY_HTTP, MESHLIB_HTTPX):
        with env.caller(kind, "source-ip:8080") as caller:
            picked = set(caller.calls(SOURCE_IP_CALLS))
        assert len(picked) == 1 and picked <= set(BACKENDS), f"{kind}: {picked}"
