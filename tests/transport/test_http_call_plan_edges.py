"""HTTP call plans at their edges, sync and async:
a breaker registered late, thresholds, fault / rate-limit stages, route header
mutations, streamed bodies, and the books (load reporter, budget, thresholds,
host stats) balanced after every kind of ending. See test_http_call_plan."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import meshlib
from meshlib.errors import (
    CircuitBreakerOverflow,
    CircuitOpenError,
    DeadlineExceeded,
    InjectedFaultError,
    RateLimitedError,
    RequestNotReplayable,
)
from meshlib.resilience.breaker import BreakerConfig, BreakerRegistry, BreakerState
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import http_upstreams
from tests.routing.fake_xds import FakeXds
from tests.transport.call_plan_setup import (
    MILLION,
    PER_TRY,
    cluster_of,
    in_time,
    isolated_breakers,
    publish,
)
from tests.transport.http_call_plan_setup import (
    ASYNC,
    FIVE_XX,
    HTTP_KINDS,
    QUICK,
    HttpCaller,
    assert_planned_http,
    timed_request,
)
from tests.transport.recording import Recorder


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> BreakerRegistry:
    return isolated_breakers(monkeypatch)


def resilience(caller: HttpCaller, host: str) -> ClusterResilience:
    return caller.snapshot.resilience_of(cluster_of(host))


# --- 6. breaker registered later -----------------------------------------------------


@pytest.mark.parametrize("under", ["service", "cluster"])
@HTTP_KINDS
async def test_breaker_registered_after_planned_requests_guards_the_next_ones(
    kind: str, under: str, feed: FakeXds, registry: BreakerRegistry
) -> None:
    host = f"breaker-{under}-{kind}"
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, host, [a.port])
            caller = HttpCaller(kind, mesh, target)
            try:
                assert await caller.served_by() == "a 200"
                before = caller.plan
                assert before.breaker is None
                config = BreakerConfig(
                    minimum_number_of_calls=2,
                    sliding_window_size=2,
                    wait_duration_in_open_state_s=60.0,
                )
                breaker = registry.get(target if under == "service" else cluster_of(host), config)
                assert await caller.served_by() == "a 200"
                assert caller.plan.breaker is breaker  # recompiled with the breaker
                assert breaker.snapshot().calls == 1
                a.cue.set_default("503")
                # 1 success + 1 failure: 50% of a full window of 2 -> OPEN
                assert await caller.served_by() == "a 503"
                assert breaker.snapshot().calls == 2
                assert breaker.state is BreakerState.OPEN
                served = a.cue.count()
                error = await caller.raised()
                assert isinstance(error, CircuitOpenError), repr(error)
                assert isinstance(error, httpx.ConnectError)
                assert a.cue.count() == served  # failed fast, never sent
                assert breaker.rejected == 1
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- 7. thresholds -------------------------------------------------------------------


@HTTP_KINDS
async def test_max_requests_overflow_fails_fast(kind: str, feed: FakeXds) -> None:
    host = f"maxreq-{kind}"
    with http_upstreams(["a"]) as (a,):
        a.cue.push("stall 0.6")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            limit = xds.CircuitBreakerThresholds(max_requests=1)
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port], thresholds=limit))
            try:
                first = asyncio.create_task(caller.served_by())
                await in_time(lambda: a.cue.count() == 1)
                error = await caller.raised()
                assert isinstance(error, CircuitBreakerOverflow), repr(error)
                assert isinstance(error, httpx.ConnectError)
                assert error.threshold == "max_requests"
                assert a.cue.count() == 1
                assert await first == "a 200"
                thresholds = resilience(caller, host).thresholds
                assert thresholds.requests.overflows == 1
                assert thresholds.requests.count == 0
                assert await caller.served_by() == "a 200"
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_a_request_without_a_free_connection_waits_pending(kind: str, feed: FakeXds) -> None:
    host = f"maxconn-{kind}"
    with http_upstreams(["a"]) as (a,):
        a.cue.push("stall 0.4")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            limit = xds.CircuitBreakerThresholds(max_connections=1)
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port], thresholds=limit))
            try:
                assert await caller.served_by() == "a 200"  # the snapshot is there now
                a.cue.push("stall 0.4")
                thresholds = resilience(caller, host).thresholds
                first = asyncio.create_task(caller.served_by())
                await in_time(lambda: a.cue.count() == 2)
                second = asyncio.create_task(caller.served_by())
                await in_time(lambda: thresholds.pending_requests.count == 1)
                assert a.cue.count() == 2  # still waiting for the connection
                assert await first == "a 200" and await second == "a 200"
                assert a.cue.count() == 3
                assert thresholds.connections.count == 0 and thresholds.requests.count == 0
                assert thresholds.pending_requests.count == 0
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- 8. faults and rate limits -------------------------------------------------------


@HTTP_KINDS
async def test_fault_abort(kind: str, feed: FakeXds) -> None:
    fault = xds.HTTPFault(abort=xds.FaultAbort(http_status=503, per_million=MILLION))
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"fault-{kind}", [a.port], fault=fault)
            caller = HttpCaller(kind, mesh, target)
            try:
                for _ in range(2):
                    error = await caller.raised()
                    assert isinstance(error, InjectedFaultError), repr(error)
                    assert isinstance(error, httpx.HTTPStatusError)
                    assert error.response.status_code == 503
                assert a.cue.count() == 0
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_header_controlled_fault(kind: str, feed: FakeXds) -> None:
    fault = xds.HTTPFault(abort=xds.FaultAbort(header_controlled=True, per_million=MILLION))
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"hfault-{kind}", [a.port], fault=fault)
            caller = HttpCaller(kind, mesh, target)
            try:
                assert await caller.served_by() == "a 200"
                asked = {"x-envoy-fault-abort-request": "503"}
                error = await caller.raised(headers=asked)
                assert isinstance(error, InjectedFaultError), repr(error)
                assert isinstance(error, httpx.HTTPStatusError)
                assert error.response.status_code == 503
                assert a.cue.count() == 1
                assert await caller.served_by() == "a 200"
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_local_rate_limit(kind: str, feed: FakeXds) -> None:
    limit = xds.LocalRateLimit(
        "fast",
        token_bucket=xds.TokenBucket(max_tokens=1, fill_interval_s=60.0),
        filter_enabled_per_million=MILLION,
        filter_enforced_per_million=MILLION,
    )
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"ratelimit-{kind}", [a.port], fault=limit)
            caller = HttpCaller(kind, mesh, target)
            try:
                assert await caller.served_by() == "a 200"
                error = await caller.raised()
                assert isinstance(error, RateLimitedError), repr(error)
                assert isinstance(error, httpx.HTTPStatusError)
                assert error.response.status_code == 429
                assert a.cue.count() == 1
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- 9. route header mutations, host rewrite -----------------------------------------

MUTATIONS = xds.HeaderMutations(
    request_headers_to_add=(xds.HeaderValueOption("x-added", "yes"),),
    request_headers_to_remove=("x-secret",),
    response_headers_to_add=(xds.HeaderValueOption("x-resp", "added"),),
    response_headers_to_remove=("server",),
)


@HTTP_KINDS
async def test_route_mutations_and_host_rewrite(kind: str, feed: FakeXds) -> None:
    action = {"host_rewrite": "api.internal", "prefix_rewrite": "/v2/"}
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"mut-{kind}"
            target = publish(feed, host, [a.port], action=action, route_headers=MUTATIONS)
            caller = HttpCaller(kind, mesh, target)
            try:
                sent = {"x-secret": "s", "x-kept": "k"}
                response = await caller.request(path="/items?x=1", headers=sent)
                assert response.status_code == 200
                assert response.headers["x-resp"] == "added" and "server" not in response.headers
                (seen,) = a.cue.requests()
                assert seen.path == "/v2/items?x=1"
                assert seen.headers["host"] == "api.internal"
                assert seen.headers["x-added"] == "yes" and seen.headers["x-kept"] == "k"
                assert "x-secret" not in seen.headers
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- 10. streamed bodies ---------------------------------------------------------------


@HTTP_KINDS
async def test_a_streamed_body_is_sent_once_and_never_replayed(kind: str, feed: FakeXds) -> None:
    retry = {"retry_policy": xds.RetryPolicy(retry_on=FIVE_XX, num_retries=2, back_off=QUICK)}
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"stream-{kind}", [a.port], action=retry)
            caller = HttpCaller(kind, mesh, target)
            try:
                body = caller.streamed(b"a", b"b")
                assert await caller.served_by("PUT", content=body) == "a 200"
                a.cue.push("503")
                error = await caller.raised("PUT", content=caller.streamed(b"a", b"b"))
                assert isinstance(error, RequestNotReplayable), repr(error)
                assert isinstance(error, httpx.RequestError)
                # The server records a request as it answers: wait for the 503's record.
                await in_time(lambda: a.cue.count() >= 2)
                assert a.cue.count() == 2  # the 503 was not followed by a resend
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- 11. balanced books ----------------------------------------------------------------


@HTTP_KINDS
async def test_counters_return_to_zero_after_successes_failures_and_retries(
    kind: str, feed: FakeXds, recorder: Recorder
) -> None:
    host = f"books-{kind}"
    with http_upstreams(["a", "b"]) as (a, b):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, host, [a.port, b.port], action={"retry_policy": PER_TRY})
            caller = HttpCaller(kind, mesh, target)
            try:
                outcomes = sorted([await caller.served_by() for _ in range(4)])
                assert outcomes == ["a 200", "a 200", "b 200", "b 200"]
                a.cue.set_default("400")  # not retried
                b.cue.set_default("400")
                outcomes = sorted([await caller.outcome() for _ in range(2)])
                assert outcomes == ["a 400", "b 400"]
                a.cue.set_default("ok")
                b.cue.set_default("ok")
                a.cue.push("503")
                b.cue.push("503")
                # the first try answers 503, the retry (other host) too, the third answers
                assert (await caller.outcome()).endswith(" 200")
                a.cue.push("stall 3")
                b.cue.push("stall 3")
                # the first try stalls and is cut, the retry too, the third answers
                answer, took = await timed_request(caller)
                assert answer.endswith(" 200") and took < 2.0
                assert_planned_http(caller)
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
                assert len(recorder.started) == a.cue.count() + b.cue.count() == 12
            finally:
                await caller.close()


@HTTP_KINDS
async def test_host_stats_active_returns_to_zero(kind: str, feed: FakeXds) -> None:
    host = f"active-{kind}"
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port]))
            try:
                assert await caller.served_by() == "a 200"
                a.cue.set_default("503")
                assert await caller.served_by() == "a 503"
                a.cue.set_default("reset")
                assert (await caller.outcome()).startswith("error: ")
                state = caller.snapshot.clusters[cluster_of(host)]
                runtime: Any = state.reporter
                assert state.endpoints is not None
                (endpoint,) = state.endpoints.localities[0].endpoints
                stats = runtime.stats(endpoint)
                assert stats is not None and stats.active == 0
                assert_planned_http(caller)
            finally:
                await caller.close()


async def test_async_cancelled_request_leaves_balanced_books(
    feed: FakeXds, recorder: Recorder
) -> None:
    host = "cancelled"
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            caller = HttpCaller(ASYNC, mesh, publish(feed, host, [a.port]))
            try:
                assert await caller.served_by() == "a 200"
                a.cue.push("stall 3")
                task = asyncio.create_task(caller.served_by())
                await in_time(lambda: a.cue.count() == 2)
                task.cancel()
                (cancelled,) = await asyncio.gather(task, return_exceptions=True)
                assert isinstance(cancelled, asyncio.CancelledError)
                cluster = resilience(caller, host)
                thresholds = cluster.thresholds
                await in_time(lambda: len(recorder.finished) == len(recorder.started) == 2)
                assert cluster.budget.stats().active_requests == 0
                assert thresholds.requests.count == 0 and thresholds.connections.count == 0
                assert await caller.served_by() == "a 200"
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- retry conditions that read headers ------------------------------------------------

RETRY_HEADER = xds.HeaderMatcher("x-upstream-retry", xds.HeaderMatchKind.EXACT, "yes")
HEADER_CASES = [
    # (retry_on, first answer, expected, tries): even a 200 can be retriable
    (xds.RetryOn.RETRIABLE_HEADERS, "200 x-upstream-retry=yes", "a 200", 2),
    (xds.RetryOn.RETRIABLE_HEADERS, "200 x-upstream-retry=no", "a 200", 1),
    (xds.RetryOn.ENVOY_RATELIMITED, "429 x-envoy-ratelimited=true", "a 200", 2),
    (xds.RetryOn.ENVOY_RATELIMITED, "429", "a 429", 1),
]


@pytest.mark.parametrize(("on", "first", "expected", "tries"), HEADER_CASES)
@HTTP_KINDS
async def test_retry_conditions_on_response_headers(
    kind: str, on: xds.RetryOn, first: str, expected: str, tries: int, feed: FakeXds
) -> None:
    policy = xds.RetryPolicy(
        retry_on=frozenset({on}), num_retries=2, back_off=QUICK, retriable_headers=(RETRY_HEADER,)
    )
    with http_upstreams(["a"]) as (a,):
        a.cue.push(first)
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"rh-{on.value}-{tries}-{kind}"
            target = publish(feed, host, [a.port], action={"retry_policy": policy})
            caller = HttpCaller(kind, mesh, target)
            try:
                assert await caller.served_by() == expected
                assert a.cue.count() == tries
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_retry_only_for_requests_matching_retriable_request_headers(
    kind: str, feed: FakeXds
) -> None:
    opted_in = xds.HeaderMatcher("x-retry", xds.HeaderMatchKind.EXACT, "yes")
    policy = xds.RetryPolicy(
        retry_on=FIVE_XX, num_retries=2, back_off=QUICK, retriable_request_headers=(opted_in,)
    )
    with http_upstreams(["a"]) as (a,):
        a.cue.push("503", "503")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"reqhdr-{kind}", [a.port], action={"retry_policy": policy})
            caller = HttpCaller(kind, mesh, target)
            try:
                assert await caller.served_by() == "a 503"  # not opted in
                assert await caller.served_by(headers={"x-retry": "yes"}) == "a 200"
                assert a.cue.count() == 3
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_fault_delay_longer_than_the_deadline(kind: str, feed: FakeXds) -> None:
    """Expired work is not started (docs/resilience.md): a request whose deadline passed
    during its fault delay ends DeadlineExceeded without reaching the server."""
    fault = xds.HTTPFault(delay=xds.FaultDelay(fixed_delay_s=0.15, per_million=MILLION))
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            caller = HttpCaller(kind, mesh, publish(feed, f"delay-{kind}", [a.port], fault=fault))
            try:
                assert await caller.served_by() == "a 200"
                error = await caller.raised(scope_s=0.05)
                assert isinstance(error, DeadlineExceeded), repr(error)
                assert isinstance(error, httpx.TimeoutException)
                assert a.cue.count() == 1
                assert_planned_http(caller)
            finally:
                await caller.close()
