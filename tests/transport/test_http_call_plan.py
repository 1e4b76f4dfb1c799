"""httpx requests through their call plans (``http_try``), sync and async.

Each test publishes a service on a FakeXds feed and calls real cue-driven HTTP
upstreams on loopback through MeshTransport / AsyncMeshTransport. It checks that
every route compiles into a call plan, and what callers see of the one
lifecycle: retries on answers and errors, per-try and route timeouts, deadlines.
Breakers, thresholds, faults, mutations, streamed bodies and the books:
test_http_call_plan_edges.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

import meshlib
from meshlib.errors import DeadlineExceeded, PerTryTimeoutError
from meshlib.resilience.call_plan import CallPlan
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import http_upstreams
from tests.routing.fake_xds import FakeXds
from tests.support.waiting import free_port
from tests.transport.call_plan_setup import PER_TRY, cluster_of, publish
from tests.transport.http_call_plan_setup import (
    ASYNC,
    HTTP_KINDS,
    QUICK,
    HttpCaller,
    assert_planned_http,
    drip_server,
    timed_request,
)
from tests.transport.polling import eventually_async


def retry(*on: xds.RetryOn, **fields: Any) -> dict[str, Any]:
    """A route action with a retry policy on ``on`` (2 retries, quick back-off)."""
    fields.setdefault("num_retries", 2)
    policy = xds.RetryPolicy(retry_on=frozenset(on), back_off=QUICK, **fields)
    return {"retry_policy": policy}


# --- 1. every route compiles ----------------------------------------------------------


@HTTP_KINDS
async def test_plain_route_compiles_a_call_plan(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            caller = HttpCaller(kind, mesh, publish(feed, f"plain-{kind}", [a.port]))
            try:
                assert [await caller.served_by() for _ in range(3)] == ["a 200"] * 3
                plan = caller.plan
                assert isinstance(plan, CallPlan) and plan.current()
                assert a.cue.count() == 3
            finally:
                await caller.close()


# Forward plans that cannot be reused across requests: their routes compile all the same.
CANNOT_REUSE = ["header-match", "hedging", "hash-policy", "mirror"]


@pytest.mark.parametrize("case", CANNOT_REUSE)
@HTTP_KINDS
async def test_every_route_compiles_into_a_call_plan(kind: str, case: str, feed: FakeXds) -> None:
    with http_upstreams(["a", "other"]) as (a, other):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            kwargs: dict[str, Any] = {}
            if case == "header-match":
                beta = xds.HeaderMatcher("x-group", xds.HeaderMatchKind.EXACT, "beta")
                match = xds.RouteMatch(xds.PathMatchKind.PREFIX, "/", headers=(beta,))
                kwargs["before"] = [xds.Route("beta", match, xds.RouteAction(cluster="other"))]
                kwargs["more_clusters"] = {"other": [other.port]}
            elif case == "hedging":
                kwargs["action"] = {
                    **retry(xds.RetryOn.FIVE_XX, num_retries=1, per_try_timeout_s=2.0),
                    "hedge_policy": xds.HedgePolicy(hedge_on_per_try_timeout=True),
                }
            elif case == "hash-policy":
                kwargs["action"] = {"hash_policies": (xds.HashPolicy("header", "x-user"),)}
            else:
                kwargs["action"] = {"request_mirror_policies": (xds.RequestMirrorPolicy("other"),)}
                kwargs["more_clusters"] = {"other": [other.port]}
            target = publish(feed, f"left-{case}-{kind}", [a.port], **kwargs)
            caller = HttpCaller(kind, mesh, target)
            try:
                assert await caller.served_by(headers={"x-user": "u1"}) == "a 200"
                assert await caller.served_by(headers={"x-user": "u2"}) == "a 200"
                if case == "mirror":  # each shadow: a try of (route, the mirror's cluster)'s plan
                    await eventually_async(lambda: other.cue.count() == 2)
                # (route, cluster): one plan for both requests (and both shadows)
                assert len(caller.compiled()) == (2 if case == "mirror" else 1)
                if case == "header-match":
                    assert await caller.served_by(headers={"x-group": "beta"}) == "other 200"
                    assert len(caller.compiled()) == 2
            finally:
                await caller.close()


# --- 2. retries on answers -----------------------------------------------------------


@HTTP_KINDS
async def test_a_503_first_try_is_retried_on_another_endpoint(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["bad", "good"]) as (bad, good):
        bad.cue.set_default("503")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = retry(xds.RetryOn.FIVE_XX, retry_previous_hosts=True)
            target = publish(feed, f"r503-{kind}", [bad.port, good.port], action=action)
            caller = HttpCaller(kind, mesh, target)
            try:
                assert [await caller.served_by() for _ in range(6)] == ["good 200"] * 6
                assert bad.cue.count() >= 2  # round robin sent first tries there
                assert good.cue.count() == 6
                assert_planned_http(caller)
            finally:
                await caller.close()


RETRY_ON_ANSWERS = [
    # (retry_on, retriable_status_codes, first answer, expected answer, tries)
    ("5xx", (), "503", "a 200", 2),
    ("gateway-error", (), "503", "a 200", 2),
    ("gateway-error", (), "500", "a 500", 1),
    ("retriable-4xx", (), "409", "a 200", 2),
    ("retriable-4xx", (), "429", "a 429", 1),
    ("retriable-status-codes", (418,), "418", "a 200", 2),
    ("retriable-status-codes", (418,), "503", "a 503", 1),
    ("connect-failure", (), "503", "a 503", 1),
]


@pytest.mark.parametrize(("on", "codes", "first", "answer", "tries"), RETRY_ON_ANSWERS)
@HTTP_KINDS
async def test_retry_conditions_on_answers(
    kind: str,
    on: str,
    codes: tuple[int, ...],
    first: str,
    answer: str,
    tries: int,
    feed: FakeXds,
) -> None:
    with http_upstreams(["a"]) as (a,):
        a.cue.push(first)
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = retry(xds.RetryOn(on), retriable_status_codes=codes)
            host = f"on-{on}-{first}-{kind}"
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port], action=action))
            try:
                response = await caller.request()
                # the final answer's body is readable, retried or not
                assert f"{response.json()['served_by']} {response.status_code}" == answer
                assert a.cue.count() == tries
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_retries_exhausted_answer_the_last_503(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        a.cue.set_default("503")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = retry(xds.RetryOn.FIVE_XX)
            caller = HttpCaller(kind, mesh, publish(feed, f"out-{kind}", [a.port], action=action))
            try:
                response = await caller.request()
                assert response.status_code == 503 and response.json()["served_by"] == "a"
                assert a.cue.count() == 3
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- 3. retries on errors ------------------------------------------------------------


@HTTP_KINDS
async def test_connect_failure_is_retried_on_the_live_endpoint(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["alive"]) as (alive,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            ports = [free_port(), alive.port]
            action = retry(xds.RetryOn.CONNECT_FAILURE, retry_previous_hosts=True)
            retried = HttpCaller(kind, mesh, publish(feed, f"cf-{kind}", ports, action=action))
            bare = HttpCaller(kind, mesh, publish(feed, f"nocf-{kind}", ports))
            try:
                # POST too: a connect failure provably never reached the server
                answers = [await retried.outcome(m) for m in ["GET", "POST"] * 3]
                assert answers == ["alive 200"] * 6
                answers = [await bare.outcome() for _ in range(4)]
                assert sorted(answers) == ["alive 200"] * 2 + ["error: ConnectError"] * 2
                assert_planned_http(retried)
                assert_planned_http(bare)
            finally:
                await retried.close()
                await bare.close()


METHOD_IS_POST = xds.HeaderMatcher(":method", xds.HeaderMatchKind.EXACT, "POST")
RESET_CASES = [
    # (method, retriable_request_headers, expected outcome, tries)
    ("GET", (), "a 200", 2),
    ("PUT", (), "a 200", 2),
    ("POST", (), "reset", 1),  # may have reached the server: not resent
    ("POST", (METHOD_IS_POST,), "a 200", 2),  # the route names POST: resent
]


@pytest.mark.parametrize(("method", "opt_in", "expected", "tries"), RESET_CASES)
@HTTP_KINDS
async def test_a_reset_is_retried_only_for_requests_that_may_be_resent(
    kind: str,
    method: str,
    opt_in: tuple[xds.HeaderMatcher, ...],
    expected: str,
    tries: int,
    feed: FakeXds,
) -> None:
    with http_upstreams(["a"]) as (a,):
        a.cue.push("reset")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = retry(xds.RetryOn.RESET, retriable_request_headers=opt_in)
            host = f"reset-{method.lower()}-{len(opt_in)}-{kind}"
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port], action=action))
            try:
                answer = await caller.outcome(method, content=b"body")
                if expected == "reset":
                    assert answer in ("error: RemoteProtocolError", "error: ReadError")
                else:
                    assert answer == expected
                assert a.cue.count() == tries
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_a_non_idempotent_503_is_not_resent(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = retry(xds.RetryOn.FIVE_XX)
            caller = HttpCaller(kind, mesh, publish(feed, f"post-{kind}", [a.port], action=action))
            try:
                a.cue.push("503")
                assert await caller.served_by("POST", content=b"x") == "a 503"
                assert a.cue.count() == 1
                a.cue.push("503")
                assert await caller.served_by("PUT", content=b"x") == "a 200"
                assert a.cue.count() == 3
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_a_reset_while_reading_a_retriable_answer_is_retried(
    kind: str, feed: FakeXds
) -> None:
    """A 503 whose body is cut by a reset: reading it is part of the try (the general
    path reads it inside ``_try``), so the reset is a try failure the route retries."""
    with drip_server("cut") as cut, http_upstreams(["good"]) as (good,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = retry(xds.RetryOn.FIVE_XX, xds.RetryOn.RESET, retry_previous_hosts=True)
            host = f"cut-{kind}"
            caller = HttpCaller(
                kind, mesh, publish(feed, host, [cut.port, good.port], action=action)
            )
            try:
                # round robin sends a first try to the cutting upstream
                answers = [await caller.outcome() for _ in range(2)]
                cluster = caller.snapshot.resilience_of(cluster_of(host))
                thresholds = cluster.thresholds
                assert cluster.budget.stats().active_requests == 0
                assert thresholds.requests.count == thresholds.connections.count == 0
                assert cut.count() >= 1
                assert answers == ["good 200"] * 2, (
                    f"{kind}: a 503 whose body was cut by a reset was not "
                    f"retried under retry_on reset; the caller got {answers!r}"
                )
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- 4. per-try timeout --------------------------------------------------------------


@HTTP_KINDS
async def test_per_try_timeout_cuts_a_stall_and_retries(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["slow"]) as (slow,):
        slow.cue.push("stall 3")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = {"retry_policy": PER_TRY}
            caller = HttpCaller(
                kind, mesh, publish(feed, f"pertry-{kind}", [slow.port], action=action)
            )
            try:
                answer, took = await timed_request(caller)
                assert answer == "slow 200"
                assert slow.cue.count() == 2
                assert 0.15 < took < 2.0
                first = slow.cue.requests()[0].deadline_s
                assert first is not None and first <= 0.2  # the try carried its own budget
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_every_try_stalling_ends_in_a_per_try_timeout_error(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["slow"]) as (slow,):
        slow.cue.set_default("stall 3")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = {"retry_policy": PER_TRY}
            caller = HttpCaller(
                kind, mesh, publish(feed, f"stalls-{kind}", [slow.port], action=action)
            )
            try:
                error = await caller.raised()
                assert isinstance(error, PerTryTimeoutError), repr(error)
                assert isinstance(error, httpx.TimeoutException)
                assert slow.cue.count() == 3
                assert_planned_http(caller)
            finally:
                await caller.close()


@pytest.mark.parametrize("mode", ["head", "body"])
async def test_async_try_is_bounded_as_a_whole_against_a_dripping_upstream(
    mode: str, feed: FakeXds
) -> None:
    """Each read makes progress (a byte every 20 ms), so only a bound on the whole try
    ends it at the per-try timeout (0.2 s). ``body``: a 503 whose body drips -- with
    a retry policy the try reads a >= 400 answer's body itself, inside the try."""
    with drip_server(mode) as dripping, http_upstreams(["good"]) as (good,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = {"retry_policy": PER_TRY}
            host = f"drip-{mode}"
            target = publish(feed, host, [dripping.port, good.port], action=action)
            caller = HttpCaller(ASYNC, mesh, target)
            try:
                for _ in range(2):  # round robin sends a first try to the dripping upstream
                    answer, took = await timed_request(caller)
                    assert answer == "good 200"
                    assert took < 1.0, (
                        f"a try against an upstream dripping its {mode} "
                        f"took {took:.2f}s, past the 0.2 s per-try timeout"
                    )
                assert dripping.count() >= 1
                assert_planned_http(caller)
            finally:
                await caller.close()


# --- 5. route timeout, enclosing deadline --------------------------------------------


@HTTP_KINDS
async def test_route_timeout_and_enclosing_deadline_cap_a_stalled_request(
    kind: str, feed: FakeXds
) -> None:
    with http_upstreams(["slow"]) as (slow,):
        slow.cue.set_default("stall 3")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            plain = HttpCaller(kind, mesh, publish(feed, f"scoped-{kind}", [slow.port]))
            capped = HttpCaller(
                kind,
                mesh,
                publish(feed, f"capped-{kind}", [slow.port], action={"request_timeout_s": 0.2}),
            )
            try:
                for caller, scope in ((plain, 0.2), (capped, None)):
                    error, took = await _timed_error(caller, scope)
                    assert isinstance(error, DeadlineExceeded), repr(error)
                    assert not isinstance(error, PerTryTimeoutError)
                    assert isinstance(error, httpx.TimeoutException)
                    assert 0.15 < took < 1.0
                seen = [s.deadline_s for s in slow.cue.requests()]
                assert len(seen) == 2 and all(s is not None and s <= 0.2 for s in seen)
                assert_planned_http(plain)
                assert_planned_http(capped)
            finally:
                await plain.close()
                await capped.close()


async def _timed_error(caller: HttpCaller, scope_s: float | None) -> tuple[BaseException, float]:
    started = time.monotonic()
    error = await caller.raised(scope_s=scope_s)
    return error, time.monotonic() - started


@HTTP_KINDS
async def test_an_expired_deadline_never_reaches_the_server(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            caller = HttpCaller(kind, mesh, publish(feed, f"expired-{kind}", [a.port]))
            try:
                assert await caller.served_by() == "a 200"
                for scope in (0.0, -1.0):
                    error = await caller.raised(scope_s=scope)
                    assert isinstance(error, DeadlineExceeded), repr(error)
                    assert isinstance(error, httpx.TimeoutException)
                assert a.cue.count() == 1
                assert await caller.served_by() == "a 200"  # and the next request is fine
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_the_deadline_header_reaches_the_server(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            caller = HttpCaller(kind, mesh, publish(feed, f"dlhdr-{kind}", [a.port]))
            try:
                assert await caller.served_by() == "a 200"  # route timeout: Envoy's 15 s
                assert await caller.served_by(scope_s=2.0) == "a 200"
                route, scoped = (s.deadline_s for s in a.cue.requests())
                assert route is not None and 14.0 < route <= 15.0
                assert scoped is not None and 1.0 < scoped <= 2.0
                assert_planned_http(caller)
            finally:
                await caller.close()


@pytest.mark.parametrize("cap", ["scope", "route"])
@HTTP_KINDS
async def test_a_call_deadline_before_the_per_try_timeout_is_a_deadline_error(
    kind: str, cap: str, feed: FakeXds
) -> None:
    """The call's deadline (0.2 s, enclosing scope or route timeout) ends the try long
    before the 2 s per-try timeout: docs/resilience.md says DeadlineExceeded ("deadline
    passed"), not PerTryTimeoutError (whose message would claim 2 s had passed)."""
    action: dict[str, Any] = retry(xds.RetryOn.FIVE_XX, per_try_timeout_s=2.0)
    if cap == "route":
        action["request_timeout_s"] = 0.2
    with http_upstreams(["slow"]) as (slow,):
        slow.cue.set_default("stall 3")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"dl-vs-try-{cap}-{kind}"
            caller = HttpCaller(kind, mesh, publish(feed, host, [slow.port], action=action))
            try:
                error, took = await _timed_error(caller, 0.2 if cap == "scope" else None)
                assert isinstance(error, DeadlineExceeded), repr(error)
                assert not isinstance(error, PerTryTimeoutError), (
                    f"{kind}: the {cap} deadline of 0.2 s ended the request after "
                    f"{took:.2f}s, yet the caller got {error!r}"
                )
                assert took < 1.0 and slow.cue.count() == 1
                assert_planned_http(caller)
            finally:
                await caller.close()
