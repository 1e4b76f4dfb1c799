"""Ring hash on a header (DestinationRule consistentHash.httpHeaderName): each key
always reaches one endpoint, different keys spread, and every client sends a key
to the SAME endpoint Envoy does (same xxHash ring over the same addresses).

HTTP and gRPC services have different endpoints (ports), so the comparison is
within a protocol: meshlib-httpx against Envoy over HTTP; meshlib-grpc and
grpcio against Envoy over gRPC.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clients import ENVOY_GRPC, ENVOY_HTTP, GRPCIO, MESHLIB_GRPC, MESHLIB_HTTPX
from tests.support.echo_servers import grpc_echoes, http_echoes
from tests.support.traffic_config import Doc, destination_rule, endpoint, service
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

HEADER = "x-user"
KEYS = [f"user-{i}" for i in range(40)]
REPEATS = 3
BACKENDS = ["e0", "e1", "e2", "e3"]
HTTP_SERVICE = "web:8080"
GRPC_SERVICE = "echo:50051"
# 40 keys over 4 equal-weight endpoints: the chance that a correct ring puts them
# all on 2 or fewer endpoints is about 6 * 0.5**40 (plus ring-share skew): never.
MIN_ENDPOINTS_USED = 3


def _docs(host: str, protocol: str, port: int, ports: list[int]) -> list[Doc]:
    policy = {"loadBalancer": {"consistentHash": {"httpHeaderName": HEADER}}}
    return [
        service(host, port, protocol, [endpoint(p) for p in ports]),
        destination_rule(host, traffic_policy=policy),
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrafficEnv]:
    with http_echoes(BACKENDS) as https, grpc_echoes(BACKENDS) as grpcs:
        docs = _docs("web", "HTTP", 8080, [b.port for b in https])
        docs += _docs("echo", "GRPC", 50051, [b.port for b in grpcs])
        with traffic_env(tmp_path_factory.mktemp("ringhash"), docs) as mesh_env:
            yield mesh_env


def _key_map(env: TrafficEnv, kind: str, service_: str) -> dict[str, list[str]]:
    """key -> the outcomes of REPEATS calls carrying it."""
    with env.caller(kind, service_) as caller:
        return {key: caller.calls(REPEATS, {HEADER: key}) for key in KEYS}


def _check_consistent_and_spread(kind: str, outcomes: dict[str, list[str]]) -> dict[str, str]:
    unstable = {key: seen for key, seen in outcomes.items() if len(set(seen)) != 1}
    assert not unstable, f"{kind}: a key reached several endpoints (or failed): {unstable}"
    chosen = {key: seen[0] for key, seen in outcomes.items()}
    used = set(chosen.values())
    assert used <= set(BACKENDS), f"{kind}: unexpected outcomes {used - set(BACKENDS)}"
    assert len(used) >= MIN_ENDPOINTS_USED, f"{kind}: {len(KEYS)} keys used only {sorted(used)}"
    return chosen


@pytest.fixture(scope="module")
def envoy_http_map(env: TrafficEnv) -> dict[str, str]:
    return _check_consistent_and_spread(ENVOY_HTTP, _key_map(env, ENVOY_HTTP, HTTP_SERVICE))


@pytest.fixture(scope="module")
def envoy_grpc_map(env: TrafficEnv) -> dict[str, str]:
    return _check_consistent_and_spread(ENVOY_GRPC, _key_map(env, ENVOY_GRPC, GRPC_SERVICE))


def test_envoy_http_keys_stick_and_spread(envoy_http_map: dict[str, str]) -> None:
    assert len(envoy_http_map) == len(KEYS)


def test_envoy_grpc_keys_stick_and_spread(envoy_grpc_map: dict[str, str]) -> None:
    assert len(envoy_grpc_map) == len(KEYS)


def _differences(mine: dict[str, str], envoy: dict[str, str]) -> list[str]:
    return [f"{key}: {mine[key]} (envoy {envoy[key]})" for key in KEYS if mine[key] != envoy[key]]


def test_meshlib_httpx_sends_each_key_where_envoy_does(
    env: TrafficEnv, envoy_http_map: dict[str, str]
) -> None:
    mine = _check_consistent_and_spread(MESHLIB_HTTPX, _key_map(env, MESHLIB_HTTPX, HTTP_SERVICE))
    differences = _differences(mine, envoy_http_map)
    assert not differences, f"{len(differences)}/{len(KEYS)} keys differ: {differences}"


@pytest.mark.parametrize("kind", [MESHLIB_GRPC, GRPCIO])
def test_grpc_clients_send_each_key_where_envoy_does(
    env: TrafficEnv, envoy_grpc_map: dict[str, str], kind: str
) -> None:
    mine = _check_consistent_and_spread(kind, _key_map(env, kind, GRPC_SERVICE))
    differences = _differences(mine, envoy_grpc_map)
    assert not differences, f"{len(differences)}/{len(KEYS)} keys differ: {differences}"
