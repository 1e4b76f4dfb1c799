"""ControlPlane in-process: registrations on the xDS port reach ADS clients; start/stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.app import ControlPlane, DataDirError
from controlplane.config import ConfigError
from controlplane.registration_service import DEREGISTER_METHOD, REGISTER_METHOD
from meshlib._protos import registry_v1_pb2 as pb
from tests.support.meshconfig import service_entry, write_config

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "mesh.yaml", service_entry("sessions", 50051, [50052]))


@pytest.fixture
async def plane(config: Path) -> AsyncIterator[ControlPlane]:
    cp = ControlPlane(config, "127.0.0.1:0", "127.0.0.1:0", debounce_s=0.01)
    await cp.start()
    try:
        yield cp
    finally:
        await cp.stop()


class CdsWatch:
    """A wildcard CDS subscription that ACKs everything and keeps the latest names."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._out: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
        self._out.put_nowait(discovery_pb2.DiscoveryRequest(type_url=CDS, node={"id": "app-test"}))
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.call = stub.StreamAggregatedResources(self._requests())

    async def _requests(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await self._out.get()

    async def until(self, predicate: Any, timeout: float = 5.0) -> list[str]:
        async def read() -> list[str]:
            while True:
                response = await self.call.read()
                assert isinstance(response, discovery_pb2.DiscoveryResponse)
                ack = discovery_pb2.DiscoveryRequest(
                    type_url=CDS, version_info=response.version_info, response_nonce=response.nonce
                )
                self._out.put_nowait(ack)
                names = []
                for packed in response.resources:
                    cluster = cluster_pb2.Cluster()
                    packed.Unpack(cluster)
                    names.append(cluster.name)
                if predicate(names):
                    return names

        return await asyncio.wait_for(read(), timeout)


async def test_grpc_registration_reaches_ads_clients(plane: ControlPlane) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.xds_port}") as channel:
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
        watch = CdsWatch(channel)
        try:
            await watch.until(lambda names: "outbound|50051||sessions" in names)
            response: Any = await register(
                pb.RegisterRequest(service="attendees", address="127.0.0.1", ports={8080: 18080})
            )
            await watch.until(lambda names: "outbound|8080||attendees" in names)
            await deregister(pb.DeregisterRequest(id=response.id))
            await watch.until(lambda names: "outbound|8080||attendees" not in names)
        finally:
            watch.call.cancel()


async def test_admin_reports_ready_and_the_config(plane: ControlPlane, config: Path) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{plane.admin_port}") as http:
        assert (await http.get("/readyz")).status_code == 200
        shown = (await http.get("/v1/config")).json()
    assert shown["files"] == [str(config)]
    assert shown["resources"] == [
        {
            "kind": "ServiceEntry",
            "namespace": "default",
            "name": "sessions",
            "source": f"{config}#1",
        }
    ]
    assert plane.not_ready_reasons() == []


async def test_bad_initial_config_fails_start_and_frees_everything(tmp_path: Path) -> None:
    bad = service_entry("sessions", 50051, [50052])
    bad["spec"]["resolution"] = "BOGUS"  # type: ignore[index]
    path = write_config(tmp_path / "mesh.yaml", bad)
    cp = ControlPlane(path, "127.0.0.1:0", "127.0.0.1:0")
    with pytest.raises(ConfigError, match=r"mesh\.yaml#1: spec\.resolution"):
        await cp.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = cp.xds_port
    await cp.stop()  # idempotent


async def test_data_dir_must_be_writable_folder(config: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    cp = ControlPlane(config, "127.0.0.1:0", "127.0.0.1:0", data_dir=blocker / "sub")
    with pytest.raises(DataDirError, match="not a writable folder"):
        await cp.start()


async def test_stop_closes_the_ports(config: Path) -> None:
    cp = ControlPlane(config, "127.0.0.1:0", "127.0.0.1:0")
    await cp.start()
    admin_port = cp.admin_port
    await cp.stop()
    await cp.stop()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{admin_port}/livez")
