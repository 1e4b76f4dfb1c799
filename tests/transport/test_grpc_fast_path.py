"""The compiled first try of unary gRPC calls (``grpc_fast_path``), sync and aio.

Each test publishes a service on a FakeXds feed and calls real cue-driven gRPC
upstreams on loopback through MeshChannel / AioMeshChannel. It checks that the
fast path is taken (or left) when it should be, and -- run once over the fast
path and once with it switched off (``path``) -- that callers see the same as
with the general path (``resilient_call``): retry handover, per-try timeouts,
deadlines, breakers, thresholds. Faults, closing, books: test_grpc_fast_path_edges.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

import meshlib
from meshlib.resilience.breaker import BreakerConfig, BreakerRegistry, BreakerState
from meshlib.transport.grpc_fast_path import FastRoute
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import WHO, grpc_upstreams
from tests.routing.fake_xds import FakeXds
from tests.transport.fast_path_setup import (
    FAST,
    GENERAL,
    KINDS,
    PER_TRY,
    UNAVAILABLE_ONLY,
    assert_took,
    choose_path,
    cluster_of,
    in_time,
    isolated_breakers,
    open_caller,
    publish,
    resilience,
    spy_on_general_path,
    timed,
)


@pytest.fixture
def general(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    return spy_on_general_path(monkeypatch)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> BreakerRegistry:
    return isolated_breakers(monkeypatch)


@pytest.fixture(params=[FAST, GENERAL])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs over the compiled first try, then with it off: same answers both ways."""
    return choose_path(str(request.param), monkeypatch)


# --- 1. taken / left -----------------------------------------------------------------


@KINDS
async def test_plain_route_compiles_a_fast_route(
    kind: str, feed: FakeXds, general: list[str]
) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"plain-{kind}", [a.port])
            caller = await open_caller(kind, mesh, target)
            try:
                assert [await caller.call() for _ in range(3)] == ["a", "a", "a"]
                fast = caller.fast
                assert isinstance(fast, FastRoute)
                assert fast.snapshot is caller.snapshot
                assert general == []  # every call took the compiled first try
                assert a.cue.count() == 3
            finally:
                await caller.close()


# Plans a FastRoute cannot stand for: each call takes the general path.
CANNOT_REUSE = ["header-match", "hedging", "hash-policy", "mirror"]


@pytest.mark.parametrize("case", CANNOT_REUSE)
@KINDS
async def test_fast_route_is_not_compiled_for_plans_it_cannot_reuse(
    kind: str, case: str, feed: FakeXds, general: list[str]
) -> None:
    with grpc_upstreams(["a", "other"]) as (a, other):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"left-{case}-{kind}"
            kwargs: dict[str, Any] = {}
            if case == "header-match":
                beta = xds.HeaderMatcher("x-group", xds.HeaderMatchKind.EXACT, "beta")
                match = xds.RouteMatch(xds.PathMatchKind.PREFIX, "/", headers=(beta,))
                kwargs["before"] = [xds.Route("beta", match, xds.RouteAction(cluster="other"))]
                kwargs["more_clusters"] = {"other": [other.port]}
            elif case == "hedging":
                kwargs["action"] = {
                    "retry_policy": xds.RetryPolicy(
                        retry_on=UNAVAILABLE_ONLY, num_retries=1, per_try_timeout_s=2.0
                    ),
                    "hedge_policy": xds.HedgePolicy(hedge_on_per_try_timeout=True),
                }
            elif case == "hash-policy":
                kwargs["action"] = {"hash_policies": (xds.HashPolicy("header", "x-user"),)}
            else:
                kwargs["action"] = {"request_mirror_policies": (xds.RequestMirrorPolicy("other"),)}
                kwargs["more_clusters"] = {"other": [other.port]}
            target = publish(feed, host, [a.port], **kwargs)
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call() == "a"
                assert await caller.call() == "a"
                assert caller.fast is None
                assert general == [kind, kind]
                if case == "header-match":
                    assert await caller.call(metadata=[("x-group", "beta")]) == "other"
                if case == "mirror":
                    await in_time(lambda: other.cue.count() == 2)
            finally:
                await caller.close()


# --- 2. retry handover ---------------------------------------------------------------


@KINDS
async def test_failed_first_try_hands_over_to_the_retries(
    kind: str, path: str, feed: FakeXds, general: list[str]
) -> None:
    with grpc_upstreams(["bad", "good"]) as (bad, good):
        bad.cue.set_default("UNAVAILABLE")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            policy = xds.RetryPolicy(
                retry_on=UNAVAILABLE_ONLY, num_retries=2, retry_previous_hosts=True
            )
            host = f"retry-{kind}-{path}"
            target = publish(feed, host, [bad.port, good.port], action={"retry_policy": policy})
            caller = await open_caller(kind, mesh, target)
            try:
                answers = [await caller.outcome() for _ in range(6)]
                assert answers == ["good"] * 6
                assert bad.cue.count() >= 2  # round robin sent first tries there
                assert good.cue.count() == 6
                budget = resilience(caller, host).budget.stats()
                assert budget.retries_started == bad.cue.count()
                assert_took(caller, path)
                assert (general == []) is (path == FAST)
            finally:
                await caller.close()


@KINDS
async def test_without_retries_the_first_try_status_is_the_answer(
    kind: str, path: str, feed: FakeXds
) -> None:
    with grpc_upstreams(["bad", "good"]) as (bad, good):
        bad.cue.set_default("UNAVAILABLE")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"noretry-{kind}-{path}", [bad.port, good.port])
            caller = await open_caller(kind, mesh, target)
            try:
                answers = [await caller.outcome() for _ in range(4)]
                assert sorted(answers) == ["error: UNAVAILABLE"] * 2 + ["good"] * 2
                assert bad.cue.count() == 2 and good.cue.count() == 2
                assert_took(caller, path)
            finally:
                await caller.close()


def test_with_call_on_the_fast_path_returns_the_answer_and_the_call(
    path: str, feed: FakeXds
) -> None:
    with grpc_upstreams(["bad", "good"]) as (bad, good), meshlib.Mesh.with_xds_client(feed) as mesh:
        bad.cue.set_default("UNAVAILABLE")
        policy = xds.RetryPolicy(retry_on=UNAVAILABLE_ONLY, num_retries=2)
        target = publish(
            feed, f"withcall-{path}", [bad.port, good.port], action={"retry_policy": policy}
        )
        with mesh.grpc_channel(target) as channel:
            stub: Any = channel.unary_unary(WHO)
            for _ in range(4):  # first tries on both hosts: two of them are retried
                answer, call = stub.with_call(b"", timeout=5.0)
                assert answer == b"good" and call.code() is grpc.StatusCode.OK
            assert bad.cue.count() >= 1 and good.cue.count() == 4
            entry = stub._fast.entry
            assert entry is not None and isinstance(entry[1], FastRoute) is (path == FAST)


# --- 3. per-try timeout --------------------------------------------------------------


@KINDS
async def test_per_try_timeout_cuts_a_stalled_first_try_and_retries(
    kind: str, path: str, feed: FakeXds
) -> None:
    with grpc_upstreams(["slow"]) as (slow,):
        slow.cue.push("stall 5")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(
                feed, f"pertry-{kind}-{path}", [slow.port], action={"retry_policy": PER_TRY}
            )
            caller = await open_caller(kind, mesh, target)
            try:
                answer, took = await timed(caller.outcome())
                assert answer == "slow"
                assert slow.cue.count() == 2
                assert 0.15 < took < 2.0
                first = slow.cue.requests()[0].deadline_s
                assert first is not None and first <= 0.25  # the try carried its own budget
                assert_took(caller, path)
            finally:
                await caller.close()


@KINDS
async def test_every_try_stalling_ends_in_deadline_exceeded(
    kind: str, path: str, feed: FakeXds
) -> None:
    with grpc_upstreams(["slow"]) as (slow,):
        slow.cue.set_default("stall 5")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(
                feed, f"stalls-{kind}-{path}", [slow.port], action={"retry_policy": PER_TRY}
            )
            caller = await open_caller(kind, mesh, target)
            try:
                answer, took = await timed(caller.outcome())
                assert answer == "error: DEADLINE_EXCEEDED"
                assert slow.cue.count() == 3
                assert 0.5 < took < 2.5
                assert_took(caller, path)
            finally:
                await caller.close()


# --- 4. deadlines --------------------------------------------------------------------


@KINDS
async def test_an_expired_deadline_never_reaches_the_server(
    kind: str, path: str, feed: FakeXds
) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"expired-{kind}-{path}", [a.port])
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call() == "a"
                assert await caller.outcome(scope_s=0.0) == "error: DEADLINE_EXCEEDED"
                assert await caller.outcome(scope_s=-1.0) == "error: DEADLINE_EXCEEDED"
                assert await caller.outcome(timeout=0.0) == "error: DEADLINE_EXCEEDED"
                assert a.cue.count() == 1
                assert await caller.call() == "a"  # and the next call is fine
                assert_took(caller, path)
            finally:
                await caller.close()


@KINDS
async def test_enclosing_deadline_and_route_cap_bound_a_stalled_call(
    kind: str, path: str, feed: FakeXds
) -> None:
    with grpc_upstreams(["slow"]) as (slow,):
        slow.cue.set_default("stall 5")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"scoped-{kind}-{path}", [slow.port])
            capped = publish(feed, f"capped-{kind}-{path}", [slow.port], action={"timeout_s": 0.2})
            caller = await open_caller(kind, mesh, target)
            capped_caller = await open_caller(kind, mesh, capped)
            try:
                answer, took = await timed(caller.outcome(timeout=5.0, scope_s=0.2))
                assert answer == "error: DEADLINE_EXCEEDED"
                assert 0.15 < took < 1.0
                answer, took = await timed(capped_caller.outcome(timeout=5.0))
                assert answer == "error: DEADLINE_EXCEEDED"
                assert 0.15 < took < 1.0
                seen = [s.deadline_s for s in slow.cue.requests()]
                assert len(seen) == 2 and all(s is not None and s <= 0.25 for s in seen)
                assert_took(caller, path)
                assert_took(capped_caller, path)
            finally:
                await caller.close()
                await capped_caller.close()


# --- 5. breaker registered later -----------------------------------------------------


@pytest.mark.parametrize("under", ["service", "cluster"])
@KINDS
async def test_breaker_registered_after_fast_calls_guards_the_next_ones(
    kind: str, under: str, path: str, feed: FakeXds, registry: BreakerRegistry
) -> None:
    host = f"breaker-{under}-{kind}-{path}"
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, host, [a.port])
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call() == "a"
                if path == FAST:
                    before = caller.fast
                    assert before is not None and before.breaker is None
                config = BreakerConfig(
                    minimum_number_of_calls=2,
                    sliding_window_size=2,
                    wait_duration_in_open_state_s=60.0,
                )
                breaker = registry.get(target if under == "service" else cluster_of(host), config)
                assert await caller.call() == "a"
                if path == FAST:  # recompiled with the breaker
                    assert caller.fast is not None and caller.fast.breaker is breaker
                assert breaker.snapshot().calls == 1
                a.cue.set_default("UNAVAILABLE")
                # 1 success + 1 failure: 50% of a full window of 2 -> OPEN
                assert await caller.outcome() == "error: UNAVAILABLE"
                assert breaker.snapshot().calls == 2
                assert breaker.state is BreakerState.OPEN
                served = a.cue.count()
                assert await caller.outcome() == "error: UNAVAILABLE"  # failed fast
                assert a.cue.count() == served
                assert breaker.rejected == 1
                assert_took(caller, path)
            finally:
                await caller.close()


# --- 6. thresholds -------------------------------------------------------------------


@KINDS
async def test_max_requests_overflow_fails_fast(kind: str, path: str, feed: FakeXds) -> None:
    host = f"maxreq-{kind}-{path}"
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("stall 0.6")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(
                feed, host, [a.port], thresholds=xds.CircuitBreakerThresholds(max_requests=1)
            )
            caller = await open_caller(kind, mesh, target)
            try:
                first = asyncio.create_task(caller.outcome())
                await in_time(lambda: a.cue.count() == 1)
                answer, took = await timed(caller.outcome())
                assert answer == "error: UNAVAILABLE"
                assert took < 0.4 and a.cue.count() == 1
                assert await first == "a"
                thresholds = resilience(caller, host).thresholds
                assert thresholds.requests.overflows == 1
                assert thresholds.requests.count == 0
                assert await caller.call() == "a"
                assert_took(caller, path)
            finally:
                await caller.close()


@KINDS
async def test_a_call_without_a_free_connection_waits_pending(
    kind: str, path: str, feed: FakeXds
) -> None:
    host = f"maxconn-{kind}-{path}"
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("stall 0.4")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(
                feed, host, [a.port], thresholds=xds.CircuitBreakerThresholds(max_connections=1)
            )
            caller = await open_caller(kind, mesh, target)
            try:
                thresholds = resilience(caller, host).thresholds
                first = asyncio.create_task(caller.outcome())
                await in_time(lambda: a.cue.count() == 1)
                second = asyncio.create_task(caller.outcome())
                await in_time(lambda: thresholds.pending_requests.count == 1)
                assert a.cue.count() == 1  # still waiting for the connection
                assert await first == "a" and await second == "a"
                assert a.cue.count() == 2
                assert thresholds.connections.count == 0 and thresholds.requests.count == 0
                assert thresholds.pending_requests.count == 0
                assert_took(caller, path)
            finally:
                await caller.close()


@KINDS
async def test_a_pending_call_gives_up_at_its_deadline(kind: str, path: str, feed: FakeXds) -> None:
    host = f"pending-deadline-{kind}-{path}"
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("stall 0.8")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(
                feed, host, [a.port], thresholds=xds.CircuitBreakerThresholds(max_connections=1)
            )
            caller = await open_caller(kind, mesh, target)
            try:
                thresholds = resilience(caller, host).thresholds
                first = asyncio.create_task(caller.outcome())
                await in_time(lambda: a.cue.count() == 1)
                answer, took = await timed(caller.outcome(timeout=0.2))
                assert answer == "error: DEADLINE_EXCEEDED"
                assert 0.15 < took < 0.7 and a.cue.count() == 1
                assert await first == "a"
                assert thresholds.pending_requests.count == 0
                assert thresholds.requests.count == 0 and thresholds.connections.count == 0
                assert_took(caller, path)
            finally:
                await caller.close()
