"""What xDS clients see of ``meshctl apply / delete``: a change is pushed, an identical
re-apply pushes nothing, a deleted resource leaves the client's config. A raw ADS client
(wildcard LDS and CDS) on a real control plane process, ACKing every response."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.translate.typeurls import CLUSTER_TYPE_URL, LISTENER_TYPE_URL
from tests.controlplane.ads_harness import RawAdsClient, resource_names
from tests.controlplane.meshctl_harness import (
    Ctl,
    controlplane_with_ctl,
    service_entry,
    virtual_service,
)

pytestmark = pytest.mark.integration

QUIET_S = 1.5  # longer than the longest debounce (1 s): a push would have come


async def settle(client: RawAdsClient) -> dict[str, list[str]]:
    """ACK everything until nothing comes for QUIET_S; the latest names per type."""
    latest: dict[str, list[str]] = {}
    while True:
        try:
            response = await client.recv(QUIET_S)
        except asyncio.TimeoutError:
            return latest
        client.ack(response)
        latest[response.type_url] = sorted(resource_names(response))


async def run(ctl: Ctl, *argv: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(ctl, *argv)


async def apply(ctl: Ctl, *documents: dict[str, Any]) -> tuple[int, str, str]:
    return await asyncio.to_thread(ctl.apply, *documents)


async def test_apply_pushes_reapply_does_not_and_delete_removes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with controlplane_with_ctl(tmp_path, capsys, service_entry("sessions")) as (ctl, _):
        async with grpc.aio.insecure_channel(ctl.cp.xds_address) as channel:
            client = RawAdsClient(channel, "watcher")
            try:
                client.send(CLUSTER_TYPE_URL)
                client.send(LISTENER_TYPE_URL)
                assert await settle(client) == {
                    CLUSTER_TYPE_URL: ["outbound|50051||sessions"],
                    LISTENER_TYPE_URL: ["sessions:50051"],
                }

                attendees = service_entry("attendees", 8080)
                code, out, _ = await apply(ctl, attendees, virtual_service("attendees"))
                assert code == 0 and out.count("created") == 2
                assert await settle(client) == {
                    CLUSTER_TYPE_URL: ["outbound|50051||sessions", "outbound|8080||attendees"],
                    LISTENER_TYPE_URL: ["attendees:8080", "sessions:50051"],
                }

                code, out, _ = await apply(ctl, attendees, virtual_service("attendees"))
                assert code == 0 and out.count("unchanged") == 2
                await client.expect_silence(QUIET_S)

                assert (await run(ctl, "delete", "vs", "attendees"))[0] == 0
                assert (await run(ctl, "delete", "se", "attendees"))[0] == 0
                assert await settle(client) == {
                    CLUSTER_TYPE_URL: ["outbound|50051||sessions"],
                    LISTENER_TYPE_URL: ["sessions:50051"],
                }
            finally:
                await client.close()
