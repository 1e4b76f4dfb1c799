"""Unary gRPC calls through their call plans (``grpc_try``), sync and aio.

Each test publishes a service on a FakeXds feed and calls real cue-driven gRPC
upstreams on loopback through MeshChannel / AioMeshChannel. It checks that every
route compiles into a call plan, and what callers see of the one lifecycle:
retry handover, per-try timeouts, deadlines, breakers, thresholds. Faults,
closing, books: test_grpc_call_plan_edges.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

import meshlib
from meshlib.resilience.breaker import BreakerConfig, BreakerRegistry, BreakerState
from meshlib.resilience.call_plan import CallPlan
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import WHO, grpc_upstreams
from tests.routing.fake_xds import FakeXds
from tests.transport.call_plan_setup import (
    KINDS,
    PER_TRY,
    UNAVAILABLE_ONLY,
    assert_planned,
    cluster_of,
    in_time,
    isolated_breakers,
    open_caller,
    publish,
    resilience,
    timed,
)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> BreakerRegistry:
    return isolated_breakers(monkeypatch)


# --- 1. every route compiles ----------------------------------------------------------


@KINDS
async def test_plain_route_compiles_a_call_plan(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"plain-{kind}", [a.port])
            caller = await open_caller(kind, mesh, target)
            try:
                assert [await caller.call() for _ in range(3)] == ["a", "a", "a"]
                plan = caller.plan
                assert isinstance(plan, CallPlan) and plan.current()
                assert caller.compiled() == [plan]  # one plan served every call
                assert a.cue.count() == 3
            finally:
                await caller.close()


# Forward plans that cannot be reused across calls: their routes compile all the same.
CANNOT_REUSE = ["header-match", "hedging", "hash-policy", "mirror"]


@pytest.mark.parametrize("case", CANNOT_REUSE)
@KINDS
async def test_every_route_compiles_into_a_call_plan(kind: str, case: str, feed: FakeXds) -> None:
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
                if case == "mirror":  # each shadow: a try of (route, the mirror's cluster)'s plan
                    await in_time(lambda: other.cue.count() == 2)
                # (route, cluster): one plan for both calls (and both shadows)
                assert len(caller.compiled()) == (2 if case == "mirror" else 1)
                if case == "header-match":
                    assert await caller.call(metadata=[("x-group", "beta")]) == "other"
                    assert len(caller.compiled()) == 2
            finally:
                await caller.close()


# --- 2. retry handover ---------------------------------------------------------------


@KINDS
async def test_failed_first_try_hands_over_to_the_retries(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["bad", "good"]) as (bad, good):
        bad.cue.set_default("UNAVAILABLE")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            policy = xds.RetryPolicy(
                retry_on=UNAVAILABLE_ONLY, num_retries=2, retry_previous_hosts=True
            )
            host = f"retry-{kind}"
            target = publish(feed, host, [bad.port, good.port], action={"retry_policy": policy})
            caller = await open_caller(kind, mesh, target)
            try:
                answers = [await caller.outcome() for _ in range(6)]
                assert answers == ["good"] * 6
                assert bad.cue.count() >= 2  # round robin sent first tries there
                assert good.cue.count() == 6
                budget = resilience(caller, host).budget.stats()
                assert budget.retries_started == bad.cue.count()
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_without_retries_the_first_try_status_is_the_answer(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["bad", "good"]) as (bad, good):
        bad.cue.set_default("UNAVAILABLE")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"noretry-{kind}", [bad.port, good.port])
            caller = await open_caller(kind, mesh, target)
            try:
                answers = [await caller.outcome() for _ in range(4)]
                assert sorted(answers) == ["error: UNAVAILABLE"] * 2 + ["good"] * 2
                assert bad.cue.count() == 2 and good.cue.count() == 2
                assert_planned(caller)
            finally:
                await caller.close()


def test_with_call_returns_the_answer_and_the_call(feed: FakeXds) -> None:
    with grpc_upstreams(["bad", "good"]) as (bad, good), meshlib.Mesh.with_xds_client(feed) as mesh:
        bad.cue.set_default("UNAVAILABLE")
        policy = xds.RetryPolicy(retry_on=UNAVAILABLE_ONLY, num_retries=2)
        target = publish(feed, "withcall", [bad.port, good.port], action={"retry_policy": policy})
        with mesh.grpc_channel(target) as channel:
            stub: Any = channel.unary_unary(WHO)
            for _ in range(4):  # first tries on both hosts: two of them are retried
                answer, call = stub.with_call(b"", timeout=5.0)
                assert answer == b"good" and call.code() is grpc.StatusCode.OK
            assert bad.cue.count() >= 1 and good.cue.count() == 4
            entry = stub._compiled.entry
            assert entry is not None and isinstance(entry[2], CallPlan)


# --- 3. per-try timeout --------------------------------------------------------------


@KINDS
async def test_per_try_timeout_cuts_a_stalled_first_try_and_retries(
    kind: str, feed: FakeXds
) -> None:
    with grpc_upstreams(["slow"]) as (slow,):
        slow.cue.push("stall 5")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"pertry-{kind}", [slow.port], action={"retry_policy": PER_TRY})
            caller = await open_caller(kind, mesh, target)
            try:
                answer, took = await timed(caller.outcome())
                assert answer == "slow"
                assert slow.cue.count() == 2
                assert 0.15 < took < 2.0
                first = slow.cue.requests()[0].deadline_s
                assert first is not None and first <= 0.25  # the try carried its own budget
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_every_try_stalling_ends_in_deadline_exceeded(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["slow"]) as (slow,):
        slow.cue.set_default("stall 5")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"stalls-{kind}", [slow.port], action={"retry_policy": PER_TRY})
            caller = await open_caller(kind, mesh, target)
            try:
                answer, took = await timed(caller.outcome())
                assert answer == "error: DEADLINE_EXCEEDED"
                assert slow.cue.count() == 3
                assert 0.5 < took < 2.5
                assert_planned(caller)
            finally:
                await caller.close()


# --- 4. deadlines --------------------------------------------------------------------


@KINDS
async def test_an_expired_deadline_never_reaches_the_server(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"expired-{kind}", [a.port])
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call() == "a"
                assert await caller.outcome(scope_s=0.0) == "error: DEADLINE_EXCEEDED"
                assert await caller.outcome(scope_s=-1.0) == "error: DEADLINE_EXCEEDED"
                assert await caller.outcome(timeout=0.0) == "error: DEADLINE_EXCEEDED"
                assert a.cue.count() == 1
                assert await caller.call() == "a"  # and the next call is fine
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_enclosing_deadline_and_route_cap_bound_a_stalled_call(
    kind: str, feed: FakeXds
) -> None:
    with grpc_upstreams(["slow"]) as (slow,):
        slow.cue.set_default("stall 5")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"scoped-{kind}", [slow.port])
            capped = publish(feed, f"capped-{kind}", [slow.port], action={"timeout_s": 0.2})
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
                assert_planned(caller)
                assert_planned(capped_caller)
            finally:
                await caller.close()
                await capped_caller.close()


# --- 5. breaker registered later -----------------------------------------------------


@pytest.mark.parametrize("under", ["service", "cluster"])
@KINDS
async def test_breaker_registered_after_planned_calls_guards_the_next_ones(
    kind: str, under: str, feed: FakeXds, registry: BreakerRegistry
) -> None:
    host = f"breaker-{under}-{kind}"
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, host, [a.port])
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call() == "a"
                before = caller.plan
                assert before.breaker is None
                config = BreakerConfig(
                    minimum_number_of_calls=2,
                    sliding_window_size=2,
                    wait_duration_in_open_state_s=60.0,
                )
                breaker = registry.get(target if under == "service" else cluster_of(host), config)
                assert await caller.call() == "a"
                assert caller.plan.breaker is breaker  # recompiled with the breaker
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
                assert_planned(caller)
            finally:
                await caller.close()


# --- 6. thresholds -------------------------------------------------------------------


@KINDS
async def test_max_requests_overflow_fails_fast(kind: str, feed: FakeXds) -> None:
    host = f"maxreq-{kind}"
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
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_a_call_without_a_free_connection_waits_pending(kind: str, feed: FakeXds) -> None:
    host = f"maxconn-{kind}"
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
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_a_pending_call_gives_up_at_its_deadline(kind: str, feed: FakeXds) -> None:
    host = f"pending-deadline-{kind}"
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
                assert_planned(caller)
            finally:
                await caller.close()
