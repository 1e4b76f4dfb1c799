"""Every DestinationRule cluster feature is accepted (ACKed, no NACK) by grpcio's
native xDS client and by Envoy 1.40, served over ADS by the real control plane."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from controlplane.model import MeshConfig, NodeInfo
from controlplane.traffic_model import (
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    MatchKind,
    StringMatch,
    VirtualService,
)
from controlplane.translate import translate
from controlplane.translate.typeurls import CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
from controlplane.xds import XdsService
from meshlib.xds_client.decode_cluster import decode_cluster
from meshlib.xds_client.decode_endpoints import decode_cluster_load_assignment
from tests.controlplane.cluster_cases import SUBSET_HOST, feature_hosts, feature_mesh
from tests.controlplane.envoy_harness import EnvoyProcess, bootstrap
from tests.controlplane.polling import eventually
from tests.support.waiting import free_port
from tests.support.xds_service import serving_xds

CLIENT = Path(__file__).with_name("grpcio_multi_target_client.py")
LOCALITY = {"region": "r1", "zone": "z1", "sub_zone": "s1"}


async def _echo_server(reply: str) -> tuple[grpc.aio.Server, int]:
    async def say(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return reply.encode()

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(say)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.Echo", {"Say": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def backend() -> AsyncIterator[int]:
    server, port = await _echo_server("one")
    yield port
    await server.stop(None)


@pytest.fixture
async def control_plane() -> AsyncIterator[tuple[XdsService, int]]:
    service = XdsService(debounce_s=0.01)
    async with serving_xds(service) as port:
        yield service, port


def _mesh(backend_port: int) -> MeshConfig:
    """The feature mesh, plus routes to both subsets so gRPC asks for their clusters."""
    by_header = HTTPMatchRequest(headers={"x-version": StringMatch(MatchKind.EXACT, "v2")})
    routes = VirtualService(
        name=SUBSET_HOST,
        namespace="default",
        hosts=(SUBSET_HOST,),
        http=(
            HTTPRoute(
                match=(by_header,),
                route=(HTTPRouteDestination(Destination(SUBSET_HOST, "v2")),),
            ),
            HTTPRoute(route=(HTTPRouteDestination(Destination(SUBSET_HOST, "v1")),)),
        ),
    )
    return replace(feature_mesh(backend_port), virtual_services=(routes,))


def _acked_without_nack(service: XdsService, node_id: str, type_urls: tuple[str, ...]) -> bool:
    versions = service.snapshot_versions().get(node_id, {})
    for stream in service.clients_status():
        if stream["node_id"] != node_id:
            continue
        types = stream["types"]
        assert isinstance(types, dict)
        for url in type_urls:
            status = types.get(url)
            assert status is None or status["last_nack"] is None, (url, status)
            if status is None or status["acked_version"] != versions.get(url):
                return False
        return True
    return False


async def test_grpcio_acks_every_cluster_feature(
    backend: int, control_plane: tuple[XdsService, int]
) -> None:
    service, xds_port = control_plane
    service.update(config=_mesh(backend))
    config = {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{xds_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": "grpcio-features", "locality": LOCALITY},
    }
    targets = [f"xds:///{host}:50051" for host in feature_hosts()]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CLIENT),
        *targets,
        env={"GRPC_XDS_BOOTSTRAP_CONFIG": json.dumps(config), "PATH": ""},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert json.loads(line) == dict.fromkeys(targets, "one")
        types = (CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL)
        await eventually(
            lambda: _acked_without_nack(service, "grpcio-features", types),
            timeout=10,
            what="grpcio ACKs CDS and EDS",
        )
        process.stdin.close()
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_envoy_accepts_every_cluster_feature(
    backend: int, control_plane: tuple[XdsService, int], tmp_path: Path
) -> None:
    service, xds_port = control_plane
    service.update(config=_mesh(backend))
    metadata = {"mesh.proxy": "sidecar", "mesh.outbound_port": free_port()}
    config = bootstrap(xds_port, "envoy-features", locality=LOCALITY, metadata=metadata)
    async with EnvoyProcess(tmp_path / "envoy", config) as envoy:
        types = (CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL)
        await eventually(
            lambda: _acked_without_nack(service, "envoy-features", types),
            timeout=15,
            what="Envoy ACKs CDS and EDS",
        )
        stats = await envoy.stats("cluster_manager.cds.")
        assert stats["cluster_manager.cds.update_rejected"] == 0
        dump = await envoy.admin_json("/config_dump?resource=dynamic_active_clusters")
        active = {c["cluster"]["name"] for c in dump["configs"]}
        node = NodeInfo(id="envoy-features", locality="r1/z1/s1", metadata=metadata)
        expected = set(translate(_mesh(backend), (), node)[CLUSTER_TYPE_URL])
        assert len(expected) == len(feature_hosts()) + 2  # plus the two subsets
        assert expected <= active, envoy.log()
        by_name = {c["cluster"]["name"]: c["cluster"] for c in dump["configs"]}
        assert "outlier_detection" in by_name["outbound|50051||outliers"]
        assert "circuit_breakers" in by_name["outbound|50051||pool"]
        maglev = by_name["outbound|50051||maglev"]["load_balancing_policy"]
        assert maglev["policies"][0]["typed_extension_config"]["name"].endswith("maglev")


def test_meshlib_decoder_accepts_assignments_and_lb_policies() -> None:
    """meshlib's decoder takes every load assignment and LB policy. (It does not
    decode outlier_detection / circuit_breakers yet -- the client owner's part --
    so clusters carrying those are left to the resilience work.)"""
    node = NodeInfo(id="meshlib", locality="r1/z1/s1")
    resources = translate(_mesh(1234), (), node)
    for assignment in resources[ENDPOINTS_TYPE_URL].values():
        decode_cluster_load_assignment(assignment)
    decoded = {
        name: decode_cluster(message).lb_policy
        for name, message in resources[CLUSTER_TYPE_URL].items()
        if not message.HasField("outlier_detection") and not message.HasField("circuit_breakers")
    }
    assert decoded == {
        "outbound|50051||degraded": "round_robin",
        "outbound|50051||distribute": "round_robin",
        "outbound|50051||distribute-least-request": "least_request",
        "outbound|50051||distribute-maglev": "maglev",
        "outbound|50051||distribute-ring-hash": "ring_hash",
        "outbound|50051||least-request": "least_request",
        "outbound|50051||maglev": "maglev",
        "outbound|50051||random": "random",
        "outbound|50051||ring-hash": "ring_hash",
        "outbound|50051||rr-warmup": "round_robin",
    }
