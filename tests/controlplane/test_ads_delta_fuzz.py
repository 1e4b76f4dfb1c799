"""A seeded fuzz of bad Delta requests: whatever a client sends (unknown or empty
type URLs, nonces that answer nothing, NACKs without a nonce, huge name lists,
unsubscribes of names never subscribed, initial versions on later requests,
missing nodes), the stream handler never fails: the stream either goes on or
ends with INVALID_ARGUMENT and a message, and the server keeps serving others."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)
from controlplane.xds import XdsService
from controlplane.xds.delta_subscription import MAX_NAMES
from tests.controlplane.ads_harness import mesh, service_entry
from tests.controlplane.delta_harness import RawDeltaClient, names
from tests.support.xds_service import xds_channel

SEED = 1207
STREAMS = 40
TYPE_URLS = [
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    "type.googleapis.com/not.a.Type",
    "garbage",
]
NAMES = ["*", "outbound|80||a", "outbound|80||b", "a:80", "", "x" * 3000, "ünïcødé", "*/*"]


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    service = XdsService(debounce_s=0.01, max_debounce_s=0.1)
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    async with xds_channel(service) as channel:
        yield channel


def _names(rng: random.Random) -> list[str]:
    if rng.random() < 0.1:
        return [f"huge-{i}" for i in range(rng.choice([5_000, 20_000]))]
    return rng.sample(NAMES, rng.randint(0, 4))


def _request(rng: random.Random, nonces: list[str]) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=rng.choice(TYPE_URLS) if rng.random() < 0.95 else "",
        resource_names_subscribe=_names(rng),
        resource_names_unsubscribe=_names(rng) if rng.random() < 0.4 else [],
        response_nonce=rng.choice(["", "0", "999", "-1", "nonce", "9" * 400, *nonces]),
    )
    if rng.random() < 0.3:
        request.initial_resource_versions.update({name: rng.choice(["", "v1"]) for name in NAMES})
    if rng.random() < 0.3:
        request.error_detail.code = rng.randint(0, 20)
        request.error_detail.message = rng.choice(["", "bad", "ü" * 2000])
    return request


async def _fuzz_one(channel: grpc.aio.Channel, rng: random.Random, index: int) -> str:
    """Run one stream of random requests; its outcome: ``open`` or the status code."""
    client = RawDeltaClient(channel, f"fuzz-{index}")
    nonces: list[str] = []
    try:
        if rng.random() < 0.1:
            client.send_request(
                discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER_TYPE_URL, node={})
            )
        for _ in range(rng.randint(1, 8)):
            client.send_request(_request(rng, nonces))
            try:
                while True:
                    nonces.append((await client.recv(timeout=0.02)).nonce)
            except asyncio.TimeoutError:
                pass
            if client.error is not None:
                break
        # Half-close: the server has read every request in order when it sees the end,
        # so the stream's status is the verdict on all of them (no guess by timing).
        client.end_requests()
        await client.wait_closed(timeout=30)
        if client.error is None:
            return "open"
        details = client.error.details() or ""
        assert details, "a refused stream must say why"
        return client.error.code().name
    finally:
        await client.close()


async def test_bad_delta_requests_never_break_the_stream_handler(
    channel: grpc.aio.Channel,
) -> None:
    rng = random.Random(SEED)
    outcomes = [await _fuzz_one(channel, rng, i) for i in range(STREAMS)]
    assert set(outcomes) <= {"open", "INVALID_ARGUMENT"}, outcomes
    assert "open" in outcomes and "INVALID_ARGUMENT" in outcomes  # both paths were taken

    good = RawDeltaClient(channel, "after-fuzz")
    try:
        good.send(CLUSTER_TYPE_URL)
        assert names(await good.recv()) == ["outbound|80||a", "outbound|80||b"]
    finally:
        await good.close()


async def test_too_many_names_is_refused_naming_the_limit(channel: grpc.aio.Channel) -> None:
    client = RawDeltaClient(channel, "greedy")
    try:
        half = MAX_NAMES // 2 + 1
        client.send(ENDPOINTS_TYPE_URL, [f"first-{i}" for i in range(half)])
        first = await client.recv(timeout=10)
        assert len(first.removed_resources) == half  # none exists: each is said to be gone
        client.send(ENDPOINTS_TYPE_URL, [f"second-{i}" for i in range(half)])
        await client.wait_closed(timeout=10)
        assert client.error is not None
        assert client.error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"more than {MAX_NAMES}" in (client.error.details() or "")
    finally:
        await client.close()
