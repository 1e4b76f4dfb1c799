"""``meshctl bootstrap``: the JSON it writes, its errors, and grpcio reading it.

grpcio proves it loaded the bootstrap by dialing the ``server_uri`` and
sending the ``node`` we wrote: a small ADS stand-in records the first
DiscoveryRequest. The grpcio client runs in a subprocess so its process-wide
xDS client never leaks into other tests.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.meshctl import main
from tests.controlplane.grpcio_probe import finish, start_grpcio_xds_client
from tests.support.waiting import wait_for


def run_meshctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_minimal_bootstrap_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_meshctl(
        capsys, "bootstrap", "--xds-address", "127.0.0.1:15010", "--node-id", "n1"
    )
    assert code == 0
    assert json.loads(out) == {
        "xds_servers": [
            {
                "server_uri": "127.0.0.1:15010",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": "n1"},
        "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s",
    }


def test_full_bootstrap_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "sub" / "bootstrap.json"
    code, out, _ = run_meshctl(
        capsys,
        "bootstrap",
        "--xds-address",
        "controlplane.mesh:15010",
        "--node-id",
        "sessions-1",
        "--cluster",
        "sessions",
        "--region",
        "eu",
        "--zone",
        "eu-west-1",
        "--sub-zone",
        "a",
        "--metadata",
        "version=v1",
        "--metadata-json",
        "mesh.outbound_port=15001",
        "-o",
        str(target),
    )
    assert (code, out) == (0, "")
    document = json.loads(target.read_text())
    assert document["xds_servers"][0]["server_uri"] == "controlplane.mesh:15010"
    assert document["node"] == {
        "id": "sessions-1",
        "cluster": "sessions",
        "locality": {"region": "eu", "zone": "eu-west-1", "sub_zone": "a"},
        "metadata": {"version": "v1", "mesh.outbound_port": 15001},
    }
    assert [p.name for p in target.parent.iterdir()] == ["bootstrap.json"]


def test_labels_go_to_node_metadata_labels(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--xds-address", "h:1", "--node-id", "n", "--metadata", "NAMESPACE=shop"]
    code, out, _ = run_meshctl(capsys, *argv, "--label", "app=web", "--label", "version=v1")
    assert code == 0
    assert json.loads(out)["node"]["metadata"] == {
        "NAMESPACE": "shop",
        "LABELS": {"app": "web", "version": "v1"},
    }


def test_ipv6_server_address(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bootstrap", "--xds-address", "[::1]:15010", "--node-id", "n"]
    code, out, _ = run_meshctl(capsys, *argv)
    assert code == 0
    assert json.loads(out)["xds_servers"][0]["server_uri"] == "[::1]:15010"


def test_repeated_xds_addresses_are_the_servers_in_that_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    addresses = ["cp-1.mesh:15010", "[::1]:15010", "10.0.0.3:15010"]
    argv = [arg for address in addresses for arg in ("--xds-address", address)]
    code, out, _ = run_meshctl(capsys, "bootstrap", *argv, "--node-id", "n")
    assert code == 0
    servers = json.loads(out)["xds_servers"]
    assert [s["server_uri"] for s in servers] == addresses
    # Every server gets the same credentials and features: only the address differs.
    assert {json.dumps({**s, "server_uri": ""}) for s in servers} == {
        json.dumps(
            {
                "server_uri": "",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        )
    }


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--xds-address", "127.0.0.1", "--node-id", "n"], "--xds-address: expected HOST:PORT"),
        (["--xds-address", "127.0.0.1:0", "--node-id", "n"], "port 0 is outside 1..65535"),
        (["--xds-address", "h:99999", "--node-id", "n"], "outside 1..65535"),
        (["--xds-address", "h:http", "--node-id", "n"], "is not a number"),
        (["--xds-address", "bad host:1", "--node-id", "n"], "neither an IP address nor a DNS"),
        (["--xds-address", "::1:15010", "--node-id", "n"], "in brackets"),
        (["--xds-address", "h:1", "--node-id", " "], "--node-id: must not be empty"),
        (
            ["--xds-address", "h:1", "--xds-address", "h2", "--node-id", "n"],
            "--xds-address: expected HOST:PORT, got 'h2'",
        ),
        (
            ["--xds-address", "h:1", "--xds-address", "h:0", "--node-id", "n"],
            "port 0 is outside 1..65535",
        ),
        (
            [
                *("--xds-address", "h:1", "--xds-address", "h:2", "--xds-address", "h:1"),
                "--node-id",
                "n",
            ],
            "--xds-address: 'h:1' is given twice",
        ),
        (["--xds-address", "h:1", "--node-id", "n", "--metadata", "novalue"], "KEY=VALUE"),
        (
            ["--xds-address", "h:1", "--node-id", "n", "--metadata-json", "p=oops"],
            "value is not JSON",
        ),
        (
            ["--xds-address", "h:1", "--node-id", "n", "--metadata", "a=1", "--metadata", "a=2"],
            "given twice",
        ),
        (["--xds-address", "h:1", "--node-id", "n", "--label", "app"], "--label 'app': expected"),
        (
            ["--xds-address", "h:1", "--node-id", "n", "--label", "a b=c"],
            "--label 'a b=c': label key 'a b' is invalid",
        ),
        (
            ["--xds-address", "h:1", "--node-id", "n", "--label", "app=a b"],
            "--label 'app=a b': label value 'a b' is invalid",
        ),
        (
            ["--xds-address", "h:1", "--node-id", "n", "--label", "a=1", "--label", "a=2"],
            "--label 'a=2': label 'a' given twice",
        ),
        (
            [
                "--xds-address",
                "h:1",
                "--node-id",
                "n",
                "--label",
                "a=1",
                "--metadata-json",
                'LABELS={"b": "2"}',
            ],
            "--label: LABELS is also given with --metadata/--metadata-json",
        ),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    capsys: pytest.CaptureFixture[str], args: list[str], error: str
) -> None:
    code, out, err = run_meshctl(capsys, "bootstrap", *args)
    assert (code, out) == (2, "")
    assert err.startswith("meshctl bootstrap: ")
    assert error in err


def test_missing_required_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_meshctl(capsys, "bootstrap", "--node-id", "n")
    assert code == 2
    assert "--xds-address" in err


class RecordingAds:
    """An ADS stand-in that records the node of each stream's first request."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []

    def stream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for request in requests:
            node = request.node
            self.nodes.append(
                {
                    "id": node.id,
                    "cluster": node.cluster,
                    "zone": node.locality.zone,
                    "metadata": dict(node.metadata.fields.items()),
                }
            )
            break
        stopped = threading.Event()
        context.add_callback(stopped.set)
        stopped.wait(timeout=10)
        return iter(())


@pytest.fixture
def recording_ads() -> Iterator[tuple[RecordingAds, int]]:
    ads = RecordingAds()
    handler = grpc.method_handlers_generic_handler(
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        {
            "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                ads.stream,
                request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield ads, port
    finally:
        server.stop(grace=None).wait(timeout=5)


def test_grpcio_native_xds_client_loads_the_bootstrap(
    tmp_path: Path, recording_ads: tuple[RecordingAds, int]
) -> None:
    ads, port = recording_ads
    bootstrap = tmp_path / "bootstrap.json"
    assert (
        main(
            [
                "bootstrap",
                "--xds-address",
                f"127.0.0.1:{port}",
                "--node-id",
                "grpcio-node",
                "--cluster",
                "legacy",
                "--zone",
                "z1",
                "--metadata",
                "version=v1",
                "-o",
                str(bootstrap),
            ]
        )
        == 0
    )
    client = start_grpcio_xds_client(bootstrap)
    try:
        wait_for(lambda: ads.nodes, timeout=10, what="grpcio to open an ADS stream")
    finally:
        code, stderr = finish(client)
    assert code == 0, stderr
    assert ads.nodes[0]["id"] == "grpcio-node"
    assert ads.nodes[0]["cluster"] == "legacy"
    assert ads.nodes[0]["zone"] == "z1"
    assert ads.nodes[0]["metadata"]["version"].string_value == "v1"


def test_grpcio_native_xds_client_falls_back_to_the_next_address(
    tmp_path: Path, recording_ads: tuple[RecordingAds, int]
) -> None:
    ads, port = recording_ads
    bootstrap = tmp_path / "bootstrap.json"
    with socket.socket() as refused:  # bound, never listening: connections are refused
        refused.bind(("127.0.0.1", 0))
        first = f"127.0.0.1:{refused.getsockname()[1]}"
        argv = ["bootstrap", "--xds-address", first, "--xds-address", f"127.0.0.1:{port}"]
        assert main([*argv, "--node-id", "replicas-node", "-o", str(bootstrap)]) == 0
        client = start_grpcio_xds_client(bootstrap)
        try:
            wait_for(lambda: ads.nodes, timeout=10, what="grpcio to reach the second server")
        finally:
            code, stderr = finish(client)
    assert code == 0, stderr
    assert ads.nodes[0]["id"] == "replicas-node"
