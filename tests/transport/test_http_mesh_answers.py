"""What the mesh ends is answered as an Envoy sidecar answers it, sync and async:
status, body, headers, and the typed
error in ``response.extensions["meshlib.error"]``; ``raise_mesh_errors=True`` raises
that error instead (real upstreams on loopback, config from a FakeXds feed)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

import meshlib
from meshlib.errors import (
    CircuitBreakerOverflow,
    DeadlineExceeded,
    InjectedFaultError,
    NoHealthyEndpointError,
    NoRouteError,
    RateLimitedError,
)
from meshlib.transport.http_answers import MESH_ERROR_EXTENSION
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import http_upstreams
from tests.routing.builders import endpoints
from tests.routing.fake_xds import FakeXds
from tests.support.waiting import free_port
from tests.transport.call_plan_setup import MILLION, in_time, publish
from tests.transport.http_call_plan_setup import (
    HTTP_KINDS,
    QUICK,
    HttpCaller,
    assert_planned_http,
)

RESET_BEFORE = "upstream connect error or disconnect/reset before headers. reset reason: "
RETRIED_BEFORE = (
    "upstream connect error or disconnect/reset before headers. retried and the latest "
    "reset reason: "
)


def retrying(*on: xds.RetryOn, retries: int = 1) -> dict[str, Any]:
    """``retries`` retries on ``on``: the answer is the last try's."""
    policy = xds.RetryPolicy(retry_on=frozenset(on), num_retries=retries, back_off=QUICK)
    return {"retry_policy": policy}


def assert_answer(
    response: httpx.Response, status: int, body: str, error_type: type[BaseException]
) -> BaseException:
    """Envoy's local reply: status, text/plain body, ``server: envoy``; the typed error kept."""
    assert (response.status_code, response.text) == (status, body)
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["server"] == "envoy"
    error = response.extensions[MESH_ERROR_EXTENSION]
    assert isinstance(error, error_type), repr(error)
    assert isinstance(error, httpx.HTTPError)  # what raise_mesh_errors=True raises
    return error


class Pair:
    """The same service called by a default client and by one that raises mesh errors."""

    def __init__(self, kind: str, mesh: meshlib.Mesh, target: str) -> None:
        self.answering = HttpCaller(kind, mesh, target, raise_mesh_errors=False)
        self.raising = HttpCaller(kind, mesh, target, raise_mesh_errors=True)

    async def answer(self, **kwargs: Any) -> httpx.Response:
        return await self.answering.request(**kwargs)

    async def raised(self, **kwargs: Any) -> BaseException:
        return await self.raising.raised(**kwargs)

    async def close(self) -> None:
        await self.answering.close()
        await self.raising.close()


@HTTP_KINDS
async def test_injected_abort_is_its_status(kind: str, feed: FakeXds) -> None:
    fault = xds.HTTPFault(abort=xds.FaultAbort(http_status=500, per_million=MILLION))
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            pair = Pair(kind, mesh, publish(feed, f"abort-{kind}", [a.port], fault=fault))
            try:
                answer = await pair.answer()
                error = assert_answer(answer, 500, "fault filter abort", InjectedFaultError)
                assert isinstance(error, httpx.HTTPStatusError)
                raised = await pair.raised()
                assert isinstance(raised, InjectedFaultError) and type(raised) is type(error)
                assert a.cue.count() == 0
                assert_planned_http(pair.answering)
            finally:
                await pair.close()


@HTTP_KINDS
async def test_route_timeout_is_504(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        a.cue.set_default("stall 1")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = {"request_timeout_s": 0.2}
            pair = Pair(kind, mesh, publish(feed, f"rto-{kind}", [a.port], action=action))
            try:
                answer = await pair.answer()
                assert_answer(answer, 504, "upstream request timeout", DeadlineExceeded)
                raised = await pair.raised()
                assert isinstance(raised, DeadlineExceeded)
                assert isinstance(raised, httpx.TimeoutException)
            finally:
                await pair.close()


@HTTP_KINDS
async def test_no_healthy_upstream_is_503(kind: str, feed: FakeXds) -> None:
    async with meshlib.Mesh.with_xds_client(feed) as mesh:
        target = publish(feed, f"empty-{kind}", [])
        pair = Pair(kind, mesh, target)
        try:
            answer = await pair.answer()
            assert_answer(answer, 503, "no healthy upstream", NoHealthyEndpointError)
            raised = await pair.raised()
            assert isinstance(raised, NoHealthyEndpointError)
            assert isinstance(raised, httpx.ConnectError)
        finally:
            await pair.close()


@pytest.mark.parametrize("retries", [0, 1])
@HTTP_KINDS
async def test_connect_failure_on_every_try_is_503(kind: str, retries: int, feed: FakeXds) -> None:
    async with meshlib.Mesh.with_xds_client(feed) as mesh:
        action = retrying(xds.RetryOn.CONNECT_FAILURE, retries=retries)
        dead = [free_port(), free_port()]
        host = f"refused-{retries}-{kind}"
        pair = Pair(kind, mesh, publish(feed, host, dead, action=action))
        try:
            answer = await pair.answer()
            said = RETRIED_BEFORE if retries else RESET_BEFORE  # as Envoy words it
            assert_answer(answer, 503, said + "remote connection failure", httpx.ConnectError)
            assert isinstance(await pair.raised(), httpx.ConnectError)
        finally:
            await pair.close()


@HTTP_KINDS
async def test_reset_on_every_try_is_503(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        a.cue.set_default("reset")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            action = retrying(xds.RetryOn.RESET)
            pair = Pair(kind, mesh, publish(feed, f"reset-{kind}", [a.port], action=action))
            try:
                answer = await pair.answer()
                body = RETRIED_BEFORE + "connection termination"
                assert_answer(answer, 503, body, httpx.TransportError)
                assert a.cue.count() == 2  # retried once, then answered
                assert isinstance(await pair.raised(), (httpx.ReadError, httpx.RemoteProtocolError))
            finally:
                await pair.close()


@HTTP_KINDS
async def test_overflow_is_503_overloaded(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        a.cue.push("stall 0.8")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            limit = xds.CircuitBreakerThresholds(max_requests=1)
            target = publish(feed, f"overflow-{kind}", [a.port], thresholds=limit)
            pair = Pair(kind, mesh, target)
            try:
                first = asyncio.create_task(pair.answer())
                await in_time(lambda: a.cue.count() == 1)
                answer = await pair.answer()
                body = RESET_BEFORE + "overflow"
                error = assert_answer(answer, 503, body, CircuitBreakerOverflow)
                assert answer.headers["x-envoy-overloaded"] == "true"
                assert isinstance(error, CircuitBreakerOverflow)
                assert error.threshold == "max_requests"
                raised = await pair.raised()
                assert isinstance(raised, CircuitBreakerOverflow)
                assert isinstance(raised, httpx.ConnectError)
                assert (await first).status_code == 200
                assert a.cue.count() == 1
            finally:
                await pair.close()


@HTTP_KINDS
async def test_local_rate_limit_is_429(kind: str, feed: FakeXds) -> None:
    limit = xds.LocalRateLimit(
        "answers",
        token_bucket=xds.TokenBucket(max_tokens=1, fill_interval_s=60.0),
        filter_enabled_per_million=MILLION,
        filter_enforced_per_million=MILLION,
    )
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            pair = Pair(kind, mesh, publish(feed, f"limit-{kind}", [a.port], fault=limit))
            try:
                assert (await pair.answer()).status_code == 200
                answer = await pair.answer()
                assert_answer(answer, 429, "local_rate_limited", RateLimitedError)
                raised = await pair.raised()
                assert isinstance(raised, RateLimitedError)
                assert isinstance(raised, httpx.HTTPStatusError)
                assert a.cue.count() == 1
            finally:
                await pair.close()


@HTTP_KINDS
async def test_no_route_is_an_empty_404(kind: str, feed: FakeXds) -> None:
    target = f"noroute-{kind}:1"
    down = endpoints("o", [("127.0.0.1", 9)])
    feed.set_service(target, {"o": down}, domains=("nothing-matches",))
    async with meshlib.Mesh.with_xds_client(feed) as mesh:
        pair = Pair(kind, mesh, target)
        try:
            answer = await pair.answer()
            assert (answer.status_code, answer.content) == (404, b"")
            assert answer.headers["server"] == "envoy"
            assert answer.headers["content-length"] == "0"
            assert "content-type" not in answer.headers
            assert isinstance(answer.extensions[MESH_ERROR_EXTENSION], NoRouteError)
            raised = await pair.raised()
            assert isinstance(raised, NoRouteError) and isinstance(raised, httpx.RequestError)
        finally:
            await pair.close()


@HTTP_KINDS
async def test_upstream_answers_carry_no_mesh_error(kind: str, feed: FakeXds) -> None:
    """Only the mesh's own answers carry the extension: a real 503 is the upstream's."""
    with http_upstreams(["a"]) as (a,):
        a.cue.set_default("503")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            pair = Pair(kind, mesh, publish(feed, f"real-{kind}", [a.port]))
            try:
                answer = await pair.answer()
                assert answer.status_code == 503 and answer.json()["served_by"] == "a"
                assert MESH_ERROR_EXTENSION not in answer.extensions
                assert answer.headers["server"] != "envoy"
            finally:
                await pair.close()
