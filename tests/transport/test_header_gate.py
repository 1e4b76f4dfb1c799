"""The header gate: a route whose only header reader is a header-triggered fault
(Envoy's ``x-envoy-fault-*`` request headers, turned on by the VirtualService
annotation ``meshlib.dev/fault-headers``) reads a request's headers only when one
of those names is present, in any case.

Behaviour, over real loopback upstreams on a FakeXds feed, for sync and async
httpx and sync and aio gRPC:
a fault header aborts or delays, a request without one is never faulted, and a
retry policy with ``retriable_request_headers`` still reads every request's
headers. Plus the values of ``header_gate(stages)``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from typing import TypeVar

import grpc
import httpx
import pytest

import meshlib
from controlplane.traffic_model import VirtualServiceExtensions
from controlplane.translate.faults import header_faults
from meshlib.errors import InjectedFaultError
from meshlib.resilience.fault import (
    ABORT_GRPC_HEADER,
    ABORT_HEADER,
    DELAY_HEADER,
    FaultAbort,
    FaultDelay,
    FaultInjector,
    FaultPolicy,
    per_million,
)
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.resilience.route_resilience import Stage, header_gate
from meshlib.resilience.xds_filters import LocalRateLimiter
from meshlib.xds_client import resources as xds
from meshlib.xds_client._decode_util import DecodeContext
from meshlib.xds_client.decode_filters import http_fault
from tests.resilience_e2e.upstreams import grpc_upstreams, http_upstreams
from tests.routing.fake_xds import FakeXds
from tests.transport.call_plan_setup import (
    KINDS,
    MILLION,
    open_caller,
    publish,
    timed,
)
from tests.transport.http_call_plan_setup import (
    HTTP_KINDS,
    QUICK,
    HttpCaller,
    timed_request,
)

TRIGGERS = frozenset({DELAY_HEADER, ABORT_HEADER, ABORT_GRPC_HEADER})
DELAY_S = 0.2
SLOW_S = 3.0  # a generous upper bound for a delayed request
FREE_TICKS = 3  # of the ~20 10 ms ticks a delay of DELAY_S leaves room for (generous)
T = TypeVar("T")


def annotation_faults() -> xds.HTTPFault:
    """The fault config ``meshlib.dev/fault-headers: {"enabled": true}`` makes, as the
    control plane writes it and meshlib decodes it."""
    proto = header_faults(VirtualServiceExtensions(fault_headers_enabled=True))
    assert proto is not None
    return http_fault(DecodeContext("HTTPFault", "fault-headers"), proto, "fault")


HEADER_FAULTS = annotation_faults()


async def while_ticking(work: Awaitable[T]) -> tuple[T, int]:
    """``work``'s result, and how often a 10 ms ticker ran on this loop meanwhile (a
    fault delay must be awaited, never slept on the event loop)."""
    ticks = 0
    running = True

    async def tick() -> None:
        nonlocal ticks
        while running:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        result = await work
    finally:
        running = False
        await ticker
    return result, ticks


def test_the_annotation_makes_faults_triggered_by_headers_only() -> None:
    assert HEADER_FAULTS.delay == xds.FaultDelay(fixed_delay_s=None, per_million=MILLION)
    assert HEADER_FAULTS.abort == xds.FaultAbort(header_controlled=True, per_million=MILLION)


# --- header_gate(stages) -------------------------------------------------------------


def limiter() -> LocalRateLimiter:
    bucket = TokenBucket(max_tokens=5, tokens_per_fill=5, fill_interval_s=1.0)
    return LocalRateLimiter(bucket, enabled_per_million=MILLION, enforced_per_million=MILLION)


def injector(policy: FaultPolicy) -> FaultInjector:
    return FaultInjector(policy, rng=random.Random(1))


BY_HEADERS = FaultPolicy(headers_enabled=True)
HEADER_CONTROLLED = FaultPolicy(delay=FaultDelay(None), abort=FaultAbort(header_controlled=True))
PERCENT_ABORT = FaultPolicy(abort=FaultAbort(http_status=503, per_million=per_million(10)))
FIXED_DELAY_AND_HEADERS = FaultPolicy(delay=FaultDelay(0.1), headers_enabled=True)

GATES: list[tuple[str, tuple[Stage, ...], frozenset[str] | None]] = [
    ("no stages", (), frozenset()),
    ("rate limiter only", (limiter(),), frozenset()),
    ("x-envoy-fault-* enabled", (injector(BY_HEADERS),), TRIGGERS),
    ("header_delay + header_abort", (injector(HEADER_CONTROLLED),), TRIGGERS),
    ("rate limiter + header fault", (limiter(), injector(BY_HEADERS)), TRIGGERS),
    ("percentage abort", (injector(PERCENT_ABORT),), None),
    ("fixed delay, headers enabled too", (injector(FIXED_DELAY_AND_HEADERS),), None),
    ("header fault + percentage abort", (injector(BY_HEADERS), injector(PERCENT_ABORT)), None),
]


@pytest.mark.parametrize(("stages", "gate"), [g[1:] for g in GATES], ids=[g[0] for g in GATES])
def test_header_gate_values(stages: tuple[Stage, ...], gate: frozenset[str] | None) -> None:
    assert header_gate(stages) == gate


# --- httpx ---------------------------------------------------------------------------

ABORT_SPELLINGS = ["X-Envoy-Fault-Abort-Request", "x-envoy-fault-abort-request",
                   "X-ENVOY-FAULT-ABORT-REQUEST"]  # fmt: skip


@pytest.mark.parametrize("name", ABORT_SPELLINGS)
@HTTP_KINDS
async def test_http_abort_header_in_any_case_aborts_with_its_status(
    kind: str, name: str, feed: FakeXds
) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"habort-{kind}-{ABORT_SPELLINGS.index(name)}"
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port], fault=HEADER_FAULTS))
            try:
                assert await caller.served_by() == "a 200"
                assert caller.plan.header_gate == TRIGGERS
                error = await caller.raised(headers={name: "503"})
                assert isinstance(error, InjectedFaultError), repr(error)
                assert isinstance(error, httpx.HTTPStatusError)
                assert error.response.status_code == 503
                assert a.cue.count() == 1  # never sent
                assert await caller.served_by() == "a 200"
            finally:
                await caller.close()


@pytest.mark.parametrize("name", ["X-Envoy-Fault-Delay-Request", "x-envoy-fault-delay-request"])
@HTTP_KINDS
async def test_http_delay_header_delays_the_request(kind: str, name: str, feed: FakeXds) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"hdelay-{kind}-{int(name.islower())}"
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port], fault=HEADER_FAULTS))
            try:
                assert await caller.served_by() == "a 200"
                asked = {name: str(int(DELAY_S * 1000))}
                (answer, elapsed), ticks = await while_ticking(timed_request(caller, headers=asked))
                assert answer == "a 200"
                assert DELAY_S <= elapsed < SLOW_S
                assert ticks >= FREE_TICKS  # the loop ran other tasks during the delay
            finally:
                await caller.close()


NOT_FAULTING = [
    {},
    {"x-other": "1", "X-Envoy-Upstream-Rq-Timeout-Ms": "5000"},
    {"x-envoy-fault-abort-request-percentage": "100"},  # narrows a fault, never triggers one
    {"x-envoy-fault-abort-request": "700", "x-envoy-fault-delay-request": "soon"},  # invalid
]


@pytest.mark.parametrize("headers", NOT_FAULTING, ids=["none", "others", "percent", "invalid"])
@HTTP_KINDS
async def test_http_requests_without_a_valid_fault_header_are_not_faulted(
    kind: str, headers: dict[str, str], feed: FakeXds
) -> None:
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"hnone-{kind}-{NOT_FAULTING.index(headers)}"
            caller = HttpCaller(kind, mesh, publish(feed, host, [a.port], fault=HEADER_FAULTS))
            try:
                for _ in range(3):
                    answer, elapsed = await timed_request(caller, headers=headers)
                    assert answer == "a 200"
                    assert elapsed < SLOW_S
                assert a.cue.count() == 3
            finally:
                await caller.close()


@HTTP_KINDS
async def test_retriable_request_headers_are_read_on_every_request(
    kind: str, feed: FakeXds
) -> None:
    opted_in = xds.HeaderMatcher("x-retry", xds.HeaderMatchKind.EXACT, "yes")
    policy = xds.RetryPolicy(
        retry_on=frozenset({xds.RetryOn.FIVE_XX}),
        num_retries=2,
        back_off=QUICK,
        retriable_request_headers=(opted_in,),
    )
    with http_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"hretry-{kind}"
            action = {"retry_policy": policy}
            target = publish(feed, host, [a.port], action=action, fault=HEADER_FAULTS)
            caller = HttpCaller(kind, mesh, target)
            try:
                a.cue.push("503")
                assert await caller.served_by(headers={"X-Retry": "yes"}) == "a 200"
                assert a.cue.count() == 2  # retried: its headers were read
                assert caller.plan.header_gate is None
                a.cue.push("503")
                assert await caller.served_by() == "a 503"  # not opted in: not retried
                assert a.cue.count() == 3
                error = await caller.raised(headers={"X-Envoy-Fault-Abort-Request": "502"})
                assert isinstance(error, InjectedFaultError), repr(error)
                assert isinstance(error, httpx.HTTPStatusError)
                assert error.response.status_code == 502
                assert a.cue.count() == 3
            finally:
                await caller.close()


# --- gRPC ----------------------------------------------------------------------------


@KINDS
async def test_grpc_fault_metadata_aborts_and_delays(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["a"]) as (a,):
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            host = f"gfault-{kind}"
            target = publish(feed, host, [a.port], fault=HEADER_FAULTS)
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.outcome() == "a"
                assert caller.plan.header_gate == TRIGGERS
                aborted = await caller.outcome(metadata=[(ABORT_GRPC_HEADER, "14")])
                assert aborted == f"error: {grpc.StatusCode.UNAVAILABLE.name}"
                assert a.cue.count() == 1  # never sent
                delayed = [(DELAY_HEADER, str(int(DELAY_S * 1000)))]
                (answer, elapsed), ticks = await while_ticking(
                    timed(caller.outcome(metadata=delayed))
                )
                assert answer == "a"
                assert DELAY_S <= elapsed < SLOW_S
                assert ticks >= FREE_TICKS
                others = [("x-other", "1"), ("x-envoy-fault-abort-request-percentage", "100")]
                for metadata in ((), others):
                    answer, elapsed = await timed(caller.outcome(metadata=metadata))
                    assert answer == "a" and elapsed < SLOW_S
                assert a.cue.count() == 4
            finally:
                await caller.close()
