"""Changes translate could not serve are refused whole, through the real control plane.

* a registration that would leave a route without its port: HTTP 400 / gRPC
  INVALID_ARGUMENT naming the VirtualService and field, registry unchanged;
* a config edit that parses but does not translate with the live registrations:
  the last good config stays, ``GET /v1/config`` shows why;
* an initial config that does not translate: ``start`` raises ConfigError;
* a rebuild refused later: ``/readyz`` says not ready until a rebuild succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.app import ControlPlane
from controlplane.config import ConfigError
from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.registration_service import REGISTER_METHOD
from controlplane.translate import Resources, TranslationError, translate
from meshlib._protos import registry_v1_pb2 as pb
from tests.support.meshconfig import service_entry, write_config

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
FRONT = service_entry("front", 8080, [18080], protocol="HTTP")


def virtual_service(*destinations: dict[str, Any]) -> dict[str, object]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "front", "namespace": "default"},
        "spec": {"hosts": ["front"], "http": [{"route": list(destinations)}]},
    }


def hashing_rule(host: str, key: dict[str, object], port: int | None = None) -> dict[str, object]:
    balancer = {"loadBalancer": {"consistentHash": key}}
    policy: dict[str, object] = dict(balancer)
    if port is not None:
        policy = {"portLevelSettings": [{"port": {"number": port}, **balancer}]}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": host, "namespace": "default"},
        "spec": {"host": host, "trafficPolicy": policy},
    }


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def started(path: Path, translate_fn: Any = translate) -> ControlPlane:
    cp = ControlPlane(
        path, "127.0.0.1:0", "127.0.0.1:0", debounce_s=0.01, translate_fn=translate_fn
    )
    await cp.start()
    return cp


@pytest.fixture
async def front_to_backend(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """front:8080 routes to `backend`, a host only registrations serve (no port named)."""
    path = write_config(
        tmp_path / "mesh.yaml", FRONT, virtual_service({"destination": {"host": "backend"}})
    )
    cp = await started(path)
    try:
        yield cp
    finally:
        await cp.stop()


AMBIGUOUS = (
    "ports: refused, it would leave a route without its port: VirtualService default/front "
    "({config}#2): http[0].route[0].destination: host 'backend' has ports 9000, 9001 and none "
    "is the routed port 8080; name one with destination.port"
)


async def test_admin_refuses_a_registration_that_leaves_a_route_without_its_port(
    front_to_backend: ControlPlane,
) -> None:
    cp = front_to_backend
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cp.admin_port}") as http:
        first = {"service": "backend", "address": "127.0.0.1", "ports": {"9000": 19000}}
        assert (await http.post("/v1/workloads", json=first)).status_code == 201
        second = {"service": "backend", "address": "127.0.0.2", "ports": {"9001": 19001}}
        refused = await http.post("/v1/workloads", json=second)
        assert refused.status_code == 400
        assert refused.json() == {
            "error": AMBIGUOUS.format(config=cp.config_path),
            "field": "ports",
        }
        # The same host with the routed port is unambiguous again: accepted.
        routed = {"service": "backend", "address": "127.0.0.3", "ports": {"8080": 18081}}
        assert (await http.post("/v1/workloads", json=routed)).status_code == 201
        assert (await http.get("/readyz")).status_code == 200
    assert sorted(w.address for w in cp.registry.snapshot()) == ["127.0.0.1", "127.0.0.3"]
    assert cp.xds.last_error is None


async def test_only_a_new_ambiguity_is_refused(front_to_backend: ControlPlane) -> None:
    """A deregistration can leave a route ambiguous (it is never refused; translation
    then follows Istio and keeps the routed port); later registrations that do not make
    it worse are accepted."""
    cp = front_to_backend
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cp.admin_port}") as http:

        async def register(address: str, ports: dict[str, int]) -> httpx.Response:
            body = {"service": "backend", "address": address, "ports": ports}
            return await http.post("/v1/workloads", json=body)

        routed = (await register("127.0.0.1", {"8080": 1, "9000": 2})).json()["id"]
        assert (await register("127.0.0.2", {"9001": 3})).status_code == 201
        assert (await register("127.0.0.3", {"9000": 4})).status_code == 201
        assert (await http.delete(f"/v1/workloads/{routed}")).status_code == 204  # 9000, 9001
        assert (await register("127.0.0.5", {"9001": 6})).status_code == 201
        other = {"service": "other", "address": "127.0.0.4", "ports": {"7000": 5}}
        assert (await http.post("/v1/workloads", json=other)).status_code == 201
        assert (await http.get("/readyz")).status_code == 200
    assert cp.xds.last_error is None


async def test_grpc_refuses_a_registration_that_leaves_a_route_without_its_port(
    front_to_backend: ControlPlane,
) -> None:
    cp = front_to_backend
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}") as channel:
        register = channel.unary_unary(
            REGISTER_METHOD,
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        await register(pb.RegisterRequest(service="backend", address="127.0.0.1", ports={9000: 1}))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await register(
                pb.RegisterRequest(service="backend", address="127.0.0.2", ports={9001: 2})
            )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == AMBIGUOUS.format(config=cp.config_path)
    assert [w.address for w in cp.registry.snapshot()] == ["127.0.0.1"]


async def test_untranslatable_edit_is_refused_and_shown_while_the_last_good_stays(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path / "mesh.yaml", FRONT)
    cp = await started(path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cp.admin_port}") as http:
            for service, address in (("b", "127.0.0.1"), ("c", "127.0.0.2")):
                body = {"service": service, "address": address, "ports": {"9000": 19000}}
                assert (await http.post("/v1/workloads", json=body)).status_code == 201
            # The parser cannot know b and c serve port 9000 only (registrations do),
            # so it cannot see that b hashes on a header and c on a cookie there.
            split = virtual_service(
                {"destination": {"host": "b"}, "weight": 50},
                {"destination": {"host": "c"}, "weight": 50},
            )
            cookie = hashing_rule("c", {"httpCookie": {"name": "sid"}})
            write_config(
                path, FRONT, split, hashing_rule("b", {"httpHeaderName": "x-user"}, 9000), cookie
            )

            async def refused() -> bool:
                return (await http.get("/v1/config")).json()["last_error"] is not None

            await until(refused)
            shown = (await http.get("/v1/config")).json()
            assert shown["last_error"]["issues"] == [
                f"{path}#2: VirtualService default/front cannot be served over xDS: http[0]: the "
                "destinations use different consistentHash keys; one route hashes one way "
                "(use the same key in their DestinationRules)"
            ]
            assert [r["kind"] for r in shown["resources"]] == ["ServiceEntry"]
            assert shown["xds_error"] is None
            assert (await http.get("/readyz")).status_code == 200

            header = hashing_rule("c", {"httpHeaderName": "x-user"})
            write_config(
                path, FRONT, split, hashing_rule("b", {"httpHeaderName": "x-user"}, 9000), header
            )

            async def accepted() -> bool:
                return (await http.get("/v1/config")).json()["last_error"] is None

            await until(accepted)
            kinds = [r["kind"] for r in (await http.get("/v1/config")).json()["resources"]]
            assert kinds == ["ServiceEntry", "VirtualService", "DestinationRule", "DestinationRule"]
    finally:
        await cp.stop()


def refusing_virtual_services(
    config: MeshConfig, workloads: Sequence[RegisteredWorkload], node: NodeInfo
) -> Resources:
    """Real translation, except that it refuses every VirtualService (a stand-in for a
    translation bug the parser cannot catch)."""
    for vs in config.virtual_services:
        raise TranslationError(f"VirtualService default/{vs.name} ({vs.source}): http[0]: no")
    return translate(config, workloads, node)


async def test_initial_config_that_does_not_translate_refuses_start(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "mesh.yaml", FRONT, virtual_service({"destination": {"host": "front"}})
    )
    cp = ControlPlane(path, "127.0.0.1:0", "127.0.0.1:0", translate_fn=refusing_virtual_services)
    with pytest.raises(ConfigError) as caught:
        await cp.start()
    assert str(caught.value) == (
        f"{path}#2: VirtualService default/front cannot be served over xDS: http[0]: no"
    )
    with pytest.raises(RuntimeError, match="not started"):
        _ = cp.admin_port
    await cp.stop()


async def test_readyz_is_not_ready_while_a_rebuild_is_refused(tmp_path: Path) -> None:
    broken = {"now": False}

    def flaky(
        config: MeshConfig, workloads: Sequence[RegisteredWorkload], node: NodeInfo
    ) -> Resources:
        if broken["now"]:
            raise TranslationError("translation broke")
        return translate(config, workloads, node)

    cp = await started(write_config(tmp_path / "mesh.yaml", FRONT), flaky)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}")
    stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    try:
        # A connected client: rebuilds translate for connected nodes.
        await stream.write(discovery_pb2.DiscoveryRequest(type_url=CDS, node={"id": "client"}))
        assert (await stream.read()).resources
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cp.admin_port}") as http:
            body = {"service": "b", "address": "127.0.0.1", "ports": {"9000": 19000}}
            workload_id = (await http.post("/v1/workloads", json=body)).json()["id"]
            broken["now"] = True  # a deregistration is never refused: its rebuild fails
            assert (await http.delete(f"/v1/workloads/{workload_id}")).status_code == 204

            async def not_ready() -> bool:
                return (await http.get("/readyz")).status_code == 503

            await until(not_ready)
            reasons = (await http.get("/readyz")).json()["reasons"]
            assert reasons == ["xDS rebuild refused, clients keep older config: translation broke"]
            assert (await http.get("/v1/config")).json()["xds_error"] == "translation broke"
            broken["now"] = False
            assert (await http.post("/v1/workloads", json=body)).status_code == 201

            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await until(ready)
    finally:
        stream.cancel()
        await channel.close(None)
        await cp.stop()
