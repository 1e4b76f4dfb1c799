"""``meshlib.client.requests`` labels one outcome one way, sync or async, and its series
never carry the other protocol's attributes (real upstreams on loopback; the OpenTelemetry
SDK's InMemoryMetricReader reads what was recorded)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import meshlib
from meshlib.observability import metrics as mesh_metrics
from meshlib.observability.metrics import HTTP_DURATION, REQUESTS, RPC_DURATION, ClientMetrics
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import grpc_upstreams, http_upstreams
from tests.routing.fake_xds import FakeXds
from tests.transport.call_plan_setup import (
    KINDS,
    PER_TRY,
    open_caller,
    publish,
)
from tests.transport.http_call_plan_setup import (
    FIVE_XX,
    HTTP_KINDS,
    QUICK,
    HttpCaller,
)

HTTP_PER_TRY = xds.RetryPolicy(
    retry_on=FIVE_XX, num_retries=2, per_try_timeout_s=0.2, back_off=QUICK
)


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """The client metrics of the meshes made in the test record to an SDK provider."""
    memory = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[memory])
    monkeypatch.setattr(mesh_metrics, "_default", ClientMetrics(provider))
    yield memory
    provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list[dict[str, Any]]:
    """The attributes of every data point of instrument ``name``."""
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [
        dict(point.attributes or {})
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


@HTTP_KINDS
async def test_an_http_per_try_timeout_is_labelled_timeout_sync_and_async(
    kind: str, feed: FakeXds, reader: InMemoryMetricReader
) -> None:
    with http_upstreams(["a"]) as (a,):
        a.cue.push("stall 2")  # the first try is cut by its 0.2 s per-try timeout
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"label-{kind}", [a.port], action={"retry_policy": HTTP_PER_TRY})
            caller = HttpCaller(kind, mesh, target)
            try:
                assert await caller.served_by() == "a 200"
            finally:
                await caller.close()
    failures = [p for p in points(reader, REQUESTS) if p["mesh.outcome"] == "failure"]
    assert [p.get("error.type") for p in failures] == ["timeout"]


@KINDS
async def test_a_grpc_per_try_timeout_is_labelled_alike_sync_and_aio(
    kind: str, feed: FakeXds, reader: InMemoryMetricReader
) -> None:
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("stall 2")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"glabel-{kind}", [a.port], action={"retry_policy": PER_TRY})
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call() == "a"
            finally:
                await caller.close()
    failures = [p for p in points(reader, REQUESTS) if p["mesh.outcome"] == "failure"]
    assert [p.get("error.type") for p in failures] == ["DEADLINE_EXCEEDED"]


async def test_request_counter_series_carry_only_shared_attributes(
    feed: FakeXds, reader: InMemoryMetricReader
) -> None:
    with http_upstreams(["h"]) as (h,), grpc_upstreams(["g"]) as (g,):
        h.cue.push("503")
        g.cue.push("UNAVAILABLE")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            http_caller = HttpCaller("async", mesh, publish(feed, "labels-http", [h.port]))
            grpc_caller = await open_caller("aio", mesh, publish(feed, "labels-grpc", [g.port]))
            try:
                assert await http_caller.served_by() == "h 503"
                assert await http_caller.served_by() == "h 200"
                assert await grpc_caller.outcome() == "error: UNAVAILABLE"
                assert await grpc_caller.outcome() == "g"
            finally:
                await http_caller.close()
                await grpc_caller.close()
    counted = points(reader, REQUESTS)
    assert sorted(p["mesh.protocol"] for p in counted) == ["grpc", "grpc", "http", "http"]
    # One set of keys for every series (error.type only on failures, as semconv says): an
    # export that gives every series of a metric the same labels adds no empty one.
    keys = {frozenset(set(p) - {"error.type"}) for p in counted}
    assert len(keys) == 1, keys
    assert not any(k.startswith(("http.", "rpc.")) for k in next(iter(keys)))
    failed = {p["mesh.protocol"]: p["error.type"] for p in counted if "error.type" in p}
    assert failed == {"http": "503", "grpc": "UNAVAILABLE"}
    # the per-protocol durations keep their own attributes
    assert all("http.request.method" in p for p in points(reader, HTTP_DURATION))
    assert all(p["rpc.system"] == "grpc" for p in points(reader, RPC_DURATION))
    assert not any("mesh.protocol" in p for p in points(reader, HTTP_DURATION))
