from __future__ import annotations

import math
import random
from collections.abc import Mapping

import pytest

from meshlib.errors import DeadlineExceeded, InjectedFaultError, ResilienceValueError
from meshlib.resilience.deadline import Deadline, deadline_scope
from meshlib.resilience.fault import (
    FaultAbort,
    FaultDelay,
    FaultInjector,
    FaultPolicy,
    per_million,
)
from tests.resilience.fakes import FakeClock

N = 20_000


def _within_binomial(count: int, n: int, p: float) -> None:
    """The count is within 4 standard deviations of n*p (false alarm ~6e-5)."""
    sd = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= 4 * sd + 1, (count, n * p, sd)


@pytest.mark.parametrize("percent", [0.5, 10.0, 30.0, 99.0])
def test_abort_percentage_is_respected(percent: float) -> None:
    injector = FaultInjector(
        FaultPolicy(abort=FaultAbort(http_status=503, per_million=per_million(percent))),
        rng=random.Random(1234),
    )
    aborted = sum(injector.decide({}).abort is not None for _ in range(N))
    _within_binomial(aborted, N, percent / 100)


def test_delay_and_abort_are_drawn_independently() -> None:
    policy = FaultPolicy(
        delay=FaultDelay(0.2, per_million=per_million(50)),
        abort=FaultAbort(grpc_status=14, per_million=per_million(20)),
    )
    injector = FaultInjector(policy, rng=random.Random(99))
    decisions = [injector.decide({}) for _ in range(N)]
    both = sum(d.delay_s > 0 and d.abort is not None for d in decisions)
    _within_binomial(both, N, 0.5 * 0.2)


def _opted_in(headers: Mapping[str, str]) -> bool:
    return headers.get("x-testing") == "true"


def test_only_requests_that_opt_in_by_header_are_faulted() -> None:
    injector = FaultInjector(
        FaultPolicy(abort=FaultAbort(http_status=500), applies_to=_opted_in), rng=random.Random(1)
    )
    assert injector.decide({"X-Testing": "true"}).abort is not None
    assert injector.decide({"x-testing": "false"}).abort is None
    assert injector.decide([("x-testing", b"true")]).abort is not None  # gRPC metadata


def test_inject_delays_then_aborts_with_the_status() -> None:
    clock = FakeClock()
    injector = FaultInjector(
        FaultPolicy(delay=FaultDelay(0.25), abort=FaultAbort(http_status=503)),
        rng=random.Random(1),
    )
    with pytest.raises(InjectedFaultError) as caught, injector.inject({}, sleep=clock.sleep):
        pass
    assert clock.sleeps == [0.25]
    assert caught.value.http_status == 503 and caught.value.grpc_status is None
    assert injector.active == 0 and injector.aborts_injected == 1 and injector.delays_injected == 1


@pytest.mark.parametrize("start", [0.0, 1e9])
def test_a_delay_is_cut_at_the_deadline(start: float) -> None:
    clock = FakeClock(start)
    policy = FaultPolicy(delay=FaultDelay(20.0), abort=FaultAbort(http_status=503))
    injector = FaultInjector(policy, rng=random.Random(1))
    deadline = Deadline.after(1.5, clock=clock)
    cut = pytest.raises(DeadlineExceeded, match="fault delay of 20s")  # not the abort
    with cut, injector.inject({}, deadline=deadline, sleep=clock.sleep):
        pass
    # without one, the current deadline
    current = deadline_scope(0.5, clock=clock)
    with current, pytest.raises(DeadlineExceeded), injector.inject({}, sleep=clock.sleep):
        pass
    assert clock.sleeps == [pytest.approx(1.5), pytest.approx(0.5)]
    assert injector.active == 0
    with (
        pytest.raises(InjectedFaultError),
        injector.inject(  # a delay within its deadline
            {}, deadline=Deadline.after(30.0, clock=clock), sleep=clock.sleep
        ),
    ):
        pass
    assert clock.sleeps[-1] == 20.0


async def test_an_async_delay_is_cut_at_the_deadline() -> None:
    clock = FakeClock()
    injector = FaultInjector(FaultPolicy(delay=FaultDelay(20.0)), rng=random.Random(1))
    with pytest.raises(DeadlineExceeded):
        async with injector.async_inject(
            {}, deadline=Deadline.after(2.0, clock=clock), sleep=clock.async_sleep
        ):
            pass
    assert clock.sleeps == [pytest.approx(2.0)] and injector.active == 0


async def test_async_inject_grpc_abort() -> None:
    clock = FakeClock()
    injector = FaultInjector(FaultPolicy(abort=FaultAbort(grpc_status=14)), rng=random.Random(1))
    with pytest.raises(InjectedFaultError) as caught:
        async with injector.async_inject({}, sleep=clock.async_sleep):
            pass
    assert caught.value.grpc_status == 14 and caught.value.http_status is None


def test_envoy_fault_headers_only_when_enabled() -> None:
    headers = {"x-envoy-fault-abort-request": "418", "x-envoy-fault-delay-request": "150"}
    off = FaultInjector(FaultPolicy(), rng=random.Random(1))
    assert not off.decide(headers).is_fault
    on = FaultInjector(FaultPolicy(headers_enabled=True), rng=random.Random(1))
    decision = on.decide(headers)
    assert decision.delay_s == pytest.approx(0.15)
    assert decision.abort is not None and decision.abort.http_status == 418


def test_grpc_abort_header_and_http_precedence() -> None:
    injector = FaultInjector(FaultPolicy(headers_enabled=True), rng=random.Random(1))
    grpc_only = injector.decide({"x-envoy-fault-abort-grpc-request": "8"}).abort
    assert grpc_only is not None and grpc_only.grpc_status == 8 and grpc_only.http_status is None
    both = injector.decide(
        {"x-envoy-fault-abort-grpc-request": "8", "x-envoy-fault-abort-request": "503"}
    ).abort
    assert both is not None and both.http_status == 503 and both.grpc_status is None


def test_percentage_headers_are_capped_by_the_configured_percentage() -> None:
    policy = FaultPolicy(
        abort=FaultAbort(http_status=503, per_million=per_million(10)), headers_enabled=True
    )
    injector = FaultInjector(policy, rng=random.Random(5))
    headers = {"x-envoy-fault-abort-request": "500", "x-envoy-fault-abort-request-percentage": "80"}
    aborted = sum(injector.decide(headers).abort is not None for _ in range(N))
    _within_binomial(aborted, N, 0.10)
    lower = {**headers, "x-envoy-fault-abort-request-percentage": "2"}
    aborted = sum(injector.decide(lower).abort is not None for _ in range(N))
    _within_binomial(aborted, N, 0.02)


def test_delay_percentage_header() -> None:
    injector = FaultInjector(FaultPolicy(headers_enabled=True), rng=random.Random(8))
    headers = {"x-envoy-fault-delay-request": "5", "x-envoy-fault-delay-request-percentage": "25"}
    delayed = sum(injector.decide(headers).delay_s > 0 for _ in range(N))
    _within_binomial(delayed, N, 0.25)


def test_header_controlled_delay_and_abort_need_the_headers() -> None:
    policy = FaultPolicy(
        delay=FaultDelay(None, per_million=per_million(100)),
        abort=FaultAbort(header_controlled=True, per_million=per_million(100)),
    )
    injector = FaultInjector(policy, rng=random.Random(3))
    assert not injector.decide({}).is_fault  # nothing to inject without the headers
    decision = injector.decide(
        {"x-envoy-fault-delay-request": "20", "x-envoy-fault-abort-grpc-request": "14"}
    )
    assert decision.delay_s == pytest.approx(0.02)
    assert decision.abort is not None and decision.abort.grpc_status == 14


def test_invalid_fault_headers_are_ignored() -> None:
    injector = FaultInjector(FaultPolicy(headers_enabled=True), rng=random.Random(1))
    bad = {"x-envoy-fault-abort-request": "700", "x-envoy-fault-delay-request": "soon"}
    assert not injector.decide(bad).is_fault


def test_max_active_faults() -> None:
    injector = FaultInjector(
        FaultPolicy(delay=FaultDelay(0.01), max_active_faults=1), rng=random.Random(1)
    )
    clock = FakeClock()
    with injector.inject({}, sleep=clock.sleep) as first:
        assert first.is_fault and injector.active == 1
        with injector.inject({}, sleep=clock.sleep) as second:
            assert not second.is_fault
    assert injector.active == 0 and injector.faults_overflow == 1


def test_validation() -> None:
    with pytest.raises(ResilienceValueError, match="exactly one"):
        FaultAbort()
    with pytest.raises(ResilienceValueError, match="exactly one"):
        FaultAbort(http_status=503, grpc_status=14)
    with pytest.raises(ResilienceValueError, match="exactly one"):
        FaultAbort(http_status=503, header_controlled=True)
    with pytest.raises(ResilienceValueError, match="http_status"):
        FaultAbort(http_status=99)
    with pytest.raises(ResilienceValueError, match="percentage"):
        per_million(101)
    with pytest.raises(ResilienceValueError, match="fixed_delay"):
        FaultDelay(-1.0)
