"""Several xds_servers (gRFC A71's order): the client tries them in the bootstrap's order,
at once when one does not answer, and leaves a server that went away for the next one
even when everything it watches is cached (so endpoint changes keep coming)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlib.xds_client import ENDPOINTS, XdsClient, parse_bootstrap
from meshlib.xds_client.resources import EndpointsResource
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import running_controlplane
from tests.xds_client.recording import RecordingWatcher

pytestmark = pytest.mark.integration

CLUSTER = "outbound|50051||echo"


def client_for(*addresses: str, backoff_base_s: float) -> XdsClient:
    bootstrap = parse_bootstrap(
        {
            "xds_servers": [
                {"server_uri": a, "channel_creds": [{"type": "insecure"}]} for a in addresses
            ],
            "node": {"id": "fallback-node", "cluster": "test"},
        },
        "bootstrap test",
    )
    return XdsClient(bootstrap, backoff_base_s=backoff_base_s, backoff_max_s=backoff_base_s)


def seen_ports(events: list[tuple[str, object]]) -> list[list[int]]:
    """The endpoint ports of each update, in order."""
    return [
        [e.port for e in resource.all_endpoints()]
        for kind, resource in events
        if kind == "changed" and isinstance(resource, EndpointsResource)
    ]


def test_an_unreachable_primary_falls_back_at_once(tmp_path: Path, refused_address: str) -> None:
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    with running_controlplane(config) as cp:
        # A backoff far longer than the wait: only an immediate fallback gets the resource.
        client = client_for(refused_address, cp.xds_address, backoff_base_s=60.0)
        try:
            watcher = RecordingWatcher()
            client.watch(ENDPOINTS, CLUSTER, watcher)
            watcher.wait_for(lambda events: seen_ports(events) == [[7001]], timeout_s=15)
        finally:
            client.close()


def test_a_server_that_went_away_is_left_for_the_next(tmp_path: Path) -> None:
    first = write_config(tmp_path / "one.yaml", service_entry("echo", 50051, [7001]))
    second = write_config(tmp_path / "two.yaml", service_entry("echo", 50051, [7002]))
    with running_controlplane(second) as fallback, running_controlplane(first) as primary:
        client = client_for(primary.xds_address, fallback.xds_address, backoff_base_s=0.05)
        try:
            watcher = RecordingWatcher()
            client.watch(ENDPOINTS, CLUSTER, watcher)
            watcher.wait_for(lambda events: seen_ports(events) == [[7001]], timeout_s=15)
            primary.stop()  # everything is cached: the client moves on all the same
            watcher.wait_for(lambda events: [7002] in seen_ports(events), timeout_s=15)
            assert seen_ports(watcher.events)[-1] == [7002]
        finally:
            client.close()
