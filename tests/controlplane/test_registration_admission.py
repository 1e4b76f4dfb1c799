"""Registrations are admitted cheaply and never stop xDS, through the real control plane.

* one more endpoint of a service the mesh has is admitted without a trial translation
  (a registration that makes or changes a service is still translated on trial);
* a registration the mesh could not be served with is still refused, with why;
* a burst of registrations (gRPC and the admin API) all land, and a client's EDS ends
  with exactly their set;
* while registrations keep coming, a new stream gets its config and a watch its push.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.app import ControlPlane
from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.registration_service import DEREGISTER_METHOD, REGISTER_METHOD
from controlplane.registry import RegistrationRequest
from controlplane.translate import Resources, translate
from meshlib._protos import registry_v1_pb2 as pb
from tests.support.meshconfig import service_entry, write_config

EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
FRONT = service_entry("front", 8080, [18080], protocol="HTTP")
POOL = service_entry("pool", 9000, [])  # endpoints come from registrations only
POOL_CLUSTER = "outbound|9000||pool"


def virtual_service(*destinations: dict[str, Any], timeout: str = "5s") -> dict[str, object]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "front", "namespace": "default"},
        "spec": {"hosts": ["front"], "http": [{"route": list(destinations), "timeout": timeout}]},
    }


def port_hashing(host: str, port: int, key: dict[str, object]) -> dict[str, object]:
    balancer = {"loadBalancer": {"consistentHash": key}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": host, "namespace": "default"},
        "spec": {
            "host": host,
            "trafficPolicy": {"portLevelSettings": [{"port": {"number": port}, **balancer}]},
        },
    }


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class CountingTranslate:
    """The real translation, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, config: MeshConfig, workloads: Sequence[RegisteredWorkload], node: NodeInfo
    ) -> Resources:
        self.calls += 1
        return translate(config, workloads, node)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, *, counted: bool = True
) -> AsyncIterator[tuple[ControlPlane, CountingTranslate]]:
    """A control plane serving ``front`` and ``pool``, translating through a counter
    (``counted``) or as it does by default (endpoint changes rebuilt in part)."""
    counting = CountingTranslate()
    path = write_config(tmp_path / "mesh.yaml", FRONT, POOL)
    extra: dict[str, Any] = {"translate_fn": counting} if counted else {}
    cp = ControlPlane(path, "127.0.0.1:0", "127.0.0.1:0", debounce_s=0.01, **extra)
    await cp.start()
    try:
        yield cp, counting
    finally:
        await cp.stop()


def request(service: str, address: str, port: int, **fields: Any) -> RegistrationRequest:
    return RegistrationRequest(service=service, address=address, ports={port: port}, **fields)


async def test_more_endpoints_of_a_known_service_are_admitted_without_a_trial_translation(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as (cp, counting):
        await _admitted_without_trial(cp, counting)


async def _admitted_without_trial(cp: ControlPlane, counting: CountingTranslate) -> None:
    # Called on the event loop, as the gRPC and admin handlers call it; no rebuild runs
    # between the call and the counts below (nothing awaits).
    before = counting.calls
    cp.registry.register(request("pool", "10.0.0.1", 9000))  # a declared host
    cp.registry.register(request("pool", "10.0.0.2", 9000, id="moving", weight=3))
    cp.registry.register(request("pool", "10.0.0.3", 9000, id="moving"))  # replaced
    assert counting.calls == before
    cp.registry.register(request("fresh", "10.0.1.1", 7000, id="fresh-1"))  # a new service
    made_service = counting.calls
    assert made_service > before
    cp.registry.register(request("fresh", "10.0.1.2", 7000))  # its second endpoint
    assert counting.calls == made_service
    cp.registry.register(request("fresh", "10.0.1.3", 7001))  # a new port of it
    assert counting.calls > made_service
    moved = counting.calls
    cp.registry.register(request("fresh", "10.0.1.1", 7000, id="fresh-1", namespace="aaa"))
    assert counting.calls > moved  # the namespace the implicit service takes changed
    moved = counting.calls
    cp.registry.register(request("fresh", "10.0.1.4", 7000, namespace="aa"))  # lower still
    assert counting.calls > moved
    moved = counting.calls
    cp.registry.register(request("fresh", "10.0.1.5", 7001, namespace="ab"))  # ports, ns held
    assert counting.calls == moved
    assert cp.admission.trials == 4
    assert len(cp.registry.snapshot()) == 7


async def test_a_registration_the_mesh_cannot_serve_is_still_refused_with_why(
    tmp_path: Path,
) -> None:
    """front splits between b and c, whose DestinationRules hash differently on port
    9000: fine while c has no endpoint there, untranslatable once one registers."""
    split = virtual_service(
        {"destination": {"host": "b"}, "weight": 50}, {"destination": {"host": "c"}, "weight": 50}
    )
    path = write_config(
        tmp_path / "mesh.yaml",
        FRONT,
        split,
        port_hashing("b", 9000, {"httpHeaderName": "x-user"}),
        port_hashing("c", 9000, {"httpCookie": {"name": "sid"}}),
    )
    cp = ControlPlane(path, "127.0.0.1:0", "127.0.0.1:0", debounce_s=0.01)
    await cp.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cp.admin_port}") as http:
            b = {"service": "b", "address": "127.0.0.1", "ports": {"9000": 19000}}
            assert (await http.post("/v1/workloads", json=b)).status_code == 201
            c = {"service": "c", "address": "127.0.0.2", "ports": {"9000": 19001}}
            refused = await http.post("/v1/workloads", json=c)
            assert refused.status_code == 400
            assert refused.json() == {
                "error": (
                    "service: refused, the mesh could not be served with it: VirtualService "
                    f"default/front ({path}#2): http[0]: the destinations use different "
                    "consistentHash keys; one route hashes one way (use the same key in their "
                    "DestinationRules)"
                ),
                "field": "service",
            }
            more_b = {"service": "b", "address": "127.0.0.3", "ports": {"9000": 19000}}
            assert (await http.post("/v1/workloads", json=more_b)).status_code == 201
            assert (await http.get("/readyz")).status_code == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}") as channel:
            register = channel.unary_unary(
                REGISTER_METHOD,
                request_serializer=pb.RegisterRequest.SerializeToString,
                response_deserializer=pb.RegisterResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await register(
                    pb.RegisterRequest(service="c", address="127.0.0.2", ports={9000: 1})
                )
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == refused.json()["error"]
        assert sorted(w.address for w in cp.registry.snapshot()) == ["127.0.0.1", "127.0.0.3"]
        assert cp.xds.last_error is None
    finally:
        await cp.stop()


class Ads:
    """One raw ADS stream over grpc.aio; ACKs every response it reads."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self._stream: Any = stub.StreamAggregatedResources()
        self._node_id = node_id
        self._names: dict[str, list[str]] = {}

    async def subscribe(self, type_url: str, names: Sequence[str]) -> None:
        self._names[type_url] = list(names)
        await self._stream.write(
            discovery_pb2.DiscoveryRequest(
                type_url=type_url, resource_names=list(names), node={"id": self._node_id}
            )
        )

    async def read(self) -> discovery_pb2.DiscoveryResponse:
        response: discovery_pb2.DiscoveryResponse = await self._stream.read()
        await self._stream.write(
            discovery_pb2.DiscoveryRequest(
                type_url=response.type_url,
                resource_names=self._names[response.type_url],
                version_info=response.version_info,
                response_nonce=response.nonce,
            )
        )
        return response

    def cancel(self) -> None:
        self._stream.cancel()


def addresses(response: discovery_pb2.DiscoveryResponse) -> set[str]:
    found: set[str] = set()
    for raw in response.resources:
        assignment = endpoint_pb2.ClusterLoadAssignment.FromString(raw.value)
        for group in assignment.endpoints:
            found.update(e.endpoint.address.socket_address.address for e in group.lb_endpoints)
    return found


async def test_a_burst_of_registrations_all_land_and_clients_see_the_final_set(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, counted=False) as (cp, _):
        await _burst(cp)


async def _burst(cp: ControlPlane) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}") as channel:
        watch = Ads(channel, "eds-watcher")
        await watch.subscribe(EDS, [POOL_CLUSTER])
        seen = addresses(await watch.read())
        register = channel.unary_unary(
            REGISTER_METHOD,
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        deregister = channel.unary_unary(
            DEREGISTER_METHOD,
            request_serializer=pb.DeregisterRequest.SerializeToString,
            response_deserializer=pb.DeregisterResponse.FromString,
        )
        wanted = {f"10.1.0.{n}" for n in range(1, 61)} | {f"10.1.1.{n}" for n in range(1, 21)}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{cp.admin_port}") as http:
            answers = await asyncio.gather(
                *(
                    register(
                        pb.RegisterRequest(service="pool", address=a, ports={9000: 9000}, id=a)
                    )
                    for a in sorted(wanted)
                    if a.startswith("10.1.0.")
                ),
                *(
                    register(
                        pb.RegisterRequest(service="pool", address=f"10.2.0.{n}", ports={9000: 1})
                    )
                    for n in range(1, 21)
                ),
                *(  # the admin API's registrations, at the same time
                    http.post(
                        "/v1/workloads",
                        json={"service": "pool", "address": a, "ports": {"9000": 9000}},
                    )
                    for a in sorted(wanted)
                    if a.startswith("10.1.1.")
                ),
            )
        assert [a.status_code for a in answers if isinstance(a, httpx.Response)] == [201] * 20
        gone = [w.id for w in cp.registry.snapshot() if w.address.startswith("10.2.")]
        await asyncio.gather(*(deregister(pb.DeregisterRequest(id=i)) for i in gone))
        try:
            while seen != wanted:
                seen = addresses(await asyncio.wait_for(watch.read(), 30))
        finally:
            watch.cancel()
    assert {w.address for w in cp.registry.snapshot()} == wanted


async def test_xds_is_served_while_registrations_keep_coming(tmp_path: Path) -> None:
    async with running(tmp_path, counted=False) as (cp, _):
        await _served_during_churn(cp)


async def _served_during_churn(cp: ControlPlane) -> None:
    assert cp.config_path is not None
    calls = 0
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cp.xds_port}") as channel:
        register = channel.unary_unary(
            REGISTER_METHOD,
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )

        async def churn() -> None:
            nonlocal calls
            while not stop.is_set():
                address = f"10.3.{calls // 200}.{calls % 200 + 1}"
                await register(pb.RegisterRequest(service="pool", address=address, ports={9000: 1}))
                calls += 1

        churning = [asyncio.create_task(churn()) for _ in range(4)]
        try:
            await until(lambda: _true(calls >= 20))
            routes = Ads(channel, "route-watcher")  # connects during the burst
            await routes.subscribe(RDS, ["front:8080"])
            first = await asyncio.wait_for(routes.read(), 30)
            assert first.resources
            at_connect = calls
            write_config(
                cp.config_path, FRONT, POOL, virtual_service({"destination": {"host": "front"}})
            )

            async def pushed() -> bool:
                response = await asyncio.wait_for(routes.read(), 30)
                return any(
                    route.route.timeout.seconds == 5
                    for raw in response.resources
                    for host in route_pb2.RouteConfiguration.FromString(raw.value).virtual_hosts
                    for route in host.routes
                )

            await until(pushed)
            routes.cancel()
            pushed_at = calls
            await until(lambda: _true(calls > pushed_at))  # still registering after the push
            assert pushed_at > at_connect
        finally:
            stop.set()
            await asyncio.gather(*churning)
    assert len(cp.registry.snapshot()) == calls


async def _true(value: bool) -> bool:
    return value
