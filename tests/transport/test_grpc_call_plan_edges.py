"""gRPC call plans at their edges, sync and aio:
fault / rate-limit stages, route metadata mutations, a closing channel, and the
books (load reporter, budget, thresholds, metrics) balanced after every kind of
ending. See test_grpc_call_plan for the setup."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

import meshlib
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import WHO, grpc_upstreams
from tests.routing.builders import endpoints
from tests.routing.fake_xds import FakeXds
from tests.transport.call_plan_setup import (
    AIO,
    KINDS,
    MILLION,
    PER_TRY,
    UNAVAILABLE_ONLY,
    Caller,
    MetricsSpy,
    assert_planned,
    assert_unavailable,
    cluster_of,
    in_time,
    open_caller,
    publish,
    raised_by,
    resilience,
    timed,
)
from tests.transport.recording import Recorder

# --- 7. faults and route mutations ---------------------------------------------------


@KINDS
async def test_fault_abort(kind: str, feed: FakeXds) -> None:
    abort = xds.FaultAbort(grpc_status=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                           per_million=MILLION)  # fmt: skip
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"fault-{kind}", [a.port], fault=xds.HTTPFault(abort=abort))
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.outcome() == "error: RESOURCE_EXHAUSTED"
                assert await caller.outcome() == "error: RESOURCE_EXHAUSTED"
                assert a.cue.count() == 0
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_header_controlled_fault(kind: str, feed: FakeXds) -> None:
    abort = xds.FaultAbort(header_controlled=True, per_million=MILLION)
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"hfault-{kind}", [a.port], fault=xds.HTTPFault(abort=abort))
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.outcome() == "a"
                asked = [("x-envoy-fault-abort-grpc-request", "7")]
                assert await caller.outcome(metadata=asked) == "error: PERMISSION_DENIED"
                assert a.cue.count() == 1
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_local_rate_limit(kind: str, feed: FakeXds) -> None:
    limit = xds.LocalRateLimit(
        "fast",
        token_bucket=xds.TokenBucket(max_tokens=1, fill_interval_s=60.0),
        filter_enabled_per_million=MILLION,
        filter_enforced_per_million=MILLION,
        rate_limited_as_resource_exhausted=True,
    )
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"ratelimit-{kind}", [a.port], fault=limit)
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.outcome() == "a"
                assert await caller.outcome() == "error: RESOURCE_EXHAUSTED"
                assert a.cue.count() == 1
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_retry_only_for_requests_matching_retriable_request_headers(
    kind: str, feed: FakeXds
) -> None:
    opted_in = xds.HeaderMatcher("x-retry", xds.HeaderMatchKind.EXACT, "yes")
    policy = xds.RetryPolicy(
        retry_on=UNAVAILABLE_ONLY, num_retries=2, retriable_request_headers=(opted_in,)
    )
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("UNAVAILABLE", "UNAVAILABLE")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"reqhdr-{kind}", [a.port], action={"retry_policy": policy})
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.outcome() == "error: UNAVAILABLE"  # not opted in
                assert await caller.outcome(metadata=[("x-retry", "yes")]) == "a"
                assert a.cue.count() == 3
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_fault_delay_longer_than_the_deadline(kind: str, feed: FakeXds) -> None:
    """Expired work is not started (docs/resilience.md): a call whose deadline passes
    during its fault delay ends DEADLINE_EXCEEDED there (the delay is cut at the
    deadline) without reaching the server."""
    delay = xds.FaultDelay(fixed_delay_s=0.15, per_million=MILLION)
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"delay-{kind}", [a.port], fault=xds.HTTPFault(delay=delay))
            caller = await open_caller(kind, mesh, target)
            try:
                # grpcio sends a call given timeout=0.0 (and mostly gets its answer in
                # time), so three calls make a path that sends expired work fail for sure.
                for _ in range(3):
                    answer, took = await timed(caller.outcome(timeout=0.05))
                    assert took < 1.0
                    assert (answer, a.cue.count()) == ("error: DEADLINE_EXCEEDED", 0), (
                        "the deadline passed during the fault delay, yet the "
                        f"call was sent to the server ({a.cue.count()} received, answer {answer})"
                    )
                answer, took = await timed(caller.outcome(timeout=5.0))
                assert answer == "a" and took >= 0.1
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_route_metadata_mutations_are_sent(kind: str, feed: FakeXds) -> None:
    mutations = xds.HeaderMutations(
        request_headers_to_add=(xds.HeaderValueOption("x-added", "yes"),),
        request_headers_to_remove=("x-secret",),
    )
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"mut-{kind}", [a.port], route_headers=mutations)
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call(metadata=[("x-secret", "s"), ("x-kept", "k")]) == "a"
                (seen,) = a.cue.requests()
                assert seen.headers["x-added"] == "yes" and seen.headers["x-kept"] == "k"
                assert "x-secret" not in seen.headers
                assert_planned(caller)
            finally:
                await caller.close()


# --- 8. closed channel ---------------------------------------------------------------


@KINDS
async def test_calls_after_close_fail_unavailable(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"closed-{kind}", [a.port])
            caller = await open_caller(kind, mesh, target)
            assert await caller.call() == "a"
            assert_planned(caller)
            await caller.close()
            for _ in range(2):
                error = await raised_by(caller.call())
                assert_unavailable(error, f"{kind} call after close()")
            assert a.cue.count() == 1


async def test_aio_call_made_before_close_and_awaited_after_fails_unavailable(
    feed: FakeXds,
) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, "closed-late", [a.port])
            caller = await open_caller(AIO, mesh, target)
            assert await caller.call() == "a"
            pending = caller.stub(b"", timeout=5.0)  # a LazyUnaryCall: starts when awaited
            await caller.close()
            error = await raised_by(pending)
            assert_unavailable(error, "aio call made before close(), awaited after")
            assert a.cue.count() == 1


@KINDS
async def test_a_call_queued_for_a_connection_when_the_channel_closes_fails_unavailable(
    kind: str, feed: FakeXds
) -> None:
    host = f"closed-queued-{kind}"
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("stall 5")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(
                feed, host, [a.port], thresholds=xds.CircuitBreakerThresholds(max_connections=1)
            )
            caller = await open_caller(kind, mesh, target)
            thresholds = resilience(caller, host).thresholds
            holder = asyncio.create_task(raised_by(caller.call()))
            await in_time(lambda: a.cue.count() == 1)
            queued = asyncio.create_task(raised_by(caller.call()))
            await in_time(lambda: thresholds.pending_requests.count == 1)
            await caller.close()  # cuts the holder's call: the queued one gets the slot
            # the holder's call was cut (grpc.aio surfaces that as CancelledError)
            (cut,) = await asyncio.gather(holder, return_exceptions=True)
            assert isinstance(cut, (grpc.RpcError, asyncio.CancelledError))
            assert_unavailable(await queued, f"{kind} call admitted after close()")
            assert a.cue.count() == 1


# --- 9. balanced books ---------------------------------------------------------------


@KINDS
async def test_counters_return_to_zero_after_successes_and_failures(
    kind: str, feed: FakeXds, recorder: Recorder
) -> None:
    host = f"books-{kind}"
    with grpc_upstreams(["a", "b"]) as (a, b):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, host, [a.port, b.port], action={"retry_policy": PER_TRY})
            caller = await open_caller(kind, mesh, target)
            try:
                outcomes = [await caller.outcome() for _ in range(4)]
                assert sorted(outcomes) == ["a", "a", "b", "b"]
                a.cue.set_default("INVALID_ARGUMENT")  # not retried
                b.cue.set_default("INVALID_ARGUMENT")
                outcomes = [await caller.outcome() for _ in range(2)]
                assert outcomes == ["error: INVALID_ARGUMENT"] * 2
                a.cue.set_default("ok")
                b.cue.set_default("ok")
                a.cue.push("stall 5")
                b.cue.push("stall 5")
                # the first try stalls and is cut, the retry (other host) too, the third answers
                assert await caller.outcome() in ("a", "b")
                assert_planned(caller)
                cluster = resilience(caller, host)
                thresholds = cluster.thresholds

                def settled() -> bool:
                    budget = cluster.budget.stats()
                    return (
                        len(recorder.started) == len(recorder.finished)
                        and budget.active_requests == 0
                        and budget.active_retries == 0
                        and thresholds.requests.count == 0
                        and thresholds.connections.count == 0
                        and thresholds.pending_requests.count == 0
                    )

                await in_time(settled)
                assert len(recorder.started) == a.cue.count() + b.cue.count() == 9
            finally:
                await caller.close()


@KINDS
async def test_host_stats_active_returns_to_zero(kind: str, feed: FakeXds) -> None:
    host = f"active-{kind}"
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, host, [a.port])
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call() == "a"
                a.cue.set_default("UNAVAILABLE")
                assert await caller.outcome() == "error: UNAVAILABLE"
                state = caller.snapshot.clusters[cluster_of(host)]
                runtime: Any = state.reporter
                assert state.endpoints is not None
                (endpoint,) = state.endpoints.localities[0].endpoints
                stats = runtime.stats(endpoint)
                assert stats is not None and stats.active == 0
                assert_planned(caller)
            finally:
                await caller.close()


async def test_aio_cancelled_call_leaves_balanced_books(feed: FakeXds, recorder: Recorder) -> None:
    host = "cancelled"
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("stall 5")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, host, [a.port])
            caller = await open_caller(AIO, mesh, target)
            try:
                task = asyncio.create_task(caller.call())
                await in_time(lambda: a.cue.count() == 1)
                task.cancel()
                (cancelled,) = await asyncio.gather(task, return_exceptions=True)
                assert isinstance(cancelled, asyncio.CancelledError)
                cluster = resilience(caller, host)
                thresholds = cluster.thresholds
                await in_time(lambda: len(recorder.finished) == len(recorder.started) == 1)
                assert cluster.budget.stats().active_requests == 0
                assert thresholds.requests.count == 0 and thresholds.connections.count == 0
                assert await caller.call() == "a"
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_an_eds_change_recompiles_the_call_plan(kind: str, feed: FakeXds) -> None:
    host = f"eds-{kind}"
    with grpc_upstreams(["a", "b"]) as (a, b):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, host, [a.port])
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call() == "a"
                first = caller.snapshot
                name = cluster_of(host)
                feed.set("eds", name, endpoints(name, [("127.0.0.1", b.port)]))
                await in_time(lambda: caller.snapshot is not first)
                assert [await caller.call() for _ in range(3)] == ["b", "b", "b"]
                assert a.cue.count() == 1
                assert_planned(caller)
                assert caller.plan.current()  # compiled for the new snapshot
            finally:
                await caller.close()


@KINDS
async def test_every_try_is_recorded_in_the_metrics(kind: str, feed: FakeXds) -> None:
    host = f"metrics-{kind}"
    with grpc_upstreams(["bad", "good"]) as (bad, good):
        bad.cue.set_default("UNAVAILABLE")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            policy = xds.RetryPolicy(retry_on=UNAVAILABLE_ONLY, num_retries=1)
            target = publish(feed, host, [bad.port, good.port], action={"retry_policy": policy})
            caller = Caller(kind, mesh, target)
            spy = MetricsSpy()
            caller.channel._core.routing.metrics = spy
            await caller.ready()
            try:
                assert [await caller.outcome() for _ in range(2)] == ["good", "good"]
                tries = bad.cue.count() + good.cue.count()
                assert len(spy.records) == tries
                by_endpoint = {r["endpoint"]: r for r in spy.records}
                failed = by_endpoint[f"127.0.0.1:{bad.port}"]
                assert failed["status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]
                assert failed["error_type"] == "UNAVAILABLE"
                ok = by_endpoint[f"127.0.0.1:{good.port}"]
                assert ok["status_code"] == 0 and ok["error_type"] is None
                for record in spy.records:
                    assert record["full_method"] == WHO
                    assert record["cluster"] == cluster_of(host)
                    assert record["service"] == target
                assert_planned(caller)
            finally:
                await caller.close()
