"""The drivers' common call: try 1's deadline in one step, and an adapter whose answers
are all successes (gRPC) has them recorded without classifying them."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from types import FrameType
from typing import Any

import pytest

from meshlib.errors import RateLimitedError
from meshlib.resilience.breaker import BreakerConfig, BreakerRegistry
from meshlib.resilience.call import run_async, run_sync
from meshlib.resilience.call_plan import NO_HEADERS, CallPlan, TryAdapter
from meshlib.resilience.conditions import Outcome
from meshlib.resilience.retry import Attempt, RetryPolicy
from meshlib.resilience.route_resilience import RouteResilience
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.resilience.xds_filters import rate_limit
from meshlib.resilience.xds_route import RouteTimeouts, route_retry
from meshlib.xds_client import resources as xds

CLUSTER = "outbound|80||svc"


class Answering(TryAdapter[None, str]):
    """Every answer is a success (as gRPC's adapter says): the lifecycle must not ask
    how an answer reads, only record it."""

    answers_succeed = True

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def send(self, call: None, attempt: Attempt) -> str:
        self.attempts.append(attempt)
        return "ok"

    async def _answer(self, attempt: Attempt) -> str:
        return self.send(None, attempt)

    def send_async(self, call: None, attempt: Attempt) -> Awaitable[str]:
        return self._answer(attempt)

    def describe_result(self, value: str) -> Outcome:
        raise AssertionError("an answer of this adapter is a success: not classified")

    def settled(self, value: str) -> bool:
        raise AssertionError("an answer of this adapter is final: not asked")

    def describe_error(self, error: BaseException) -> Outcome:
        return Outcome(error=error)

    def headers(self, call: None) -> Mapping[str, str]:
        return NO_HEADERS


def _plan(adapter: Answering, registry: BreakerRegistry) -> CallPlan[None, str]:
    policy = xds.RetryPolicy(retry_on=frozenset({xds.RetryOn.FIVE_XX}), num_retries=2)
    route = RouteResilience(
        route_retry(xds.RouteAction(cluster=CLUSTER, retry_policy=policy)),
        RouteTimeouts(None, None),
    )
    cluster = ClusterResilience(CLUSTER, breaker_registry=registry)
    return CallPlan(route, cluster, CLUSTER, adapter, "svc:80")


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_answers_that_succeed_are_final_and_recorded_as_successes(driver: str) -> None:
    registry = BreakerRegistry()
    breaker = registry.get("svc:80", BreakerConfig(minimum_number_of_calls=10))
    adapter = Answering()
    plan = _plan(adapter, registry)
    assert plan.breaker is breaker and plan.answer_final

    for _ in range(3):
        if driver == "sync":
            assert run_sync(plan, None, 5.0) == "ok"
        else:
            assert asyncio.run(run_async(plan, None, 5.0)) == "ok"

    assert len(adapter.attempts) == 3  # each call one try: the answer was final
    window = breaker.snapshot()
    assert (window.calls, window.failures) == (3, 0)
    stats = plan.cluster.budget.stats()
    assert stats.active_requests == 0 and plan.cluster.thresholds.requests.count == 0


@pytest.mark.parametrize(
    ("per_try", "call_in", "expect_in", "per_try_set"),
    [
        (None, None, None, False),  # no deadline at all
        (None, 5.0, 5.0, False),  # the call's
        (1.0, None, 1.0, True),  # the per-try timeout's
        (1.0, 5.0, 1.0, True),  # the per-try timeout ends first
        (5.0, 1.0, 1.0, False),  # the call ends first: running out is the call's deadline
    ],
)
def test_try_one_ends_at_the_per_try_timeout_or_the_calls_end_whichever_is_first(
    per_try: float | None, call_in: float | None, expect_in: float | None, per_try_set: bool
) -> None:
    now = time.monotonic()
    call_at = None if call_in is None else now + call_in
    attempt = CallPlan.first_try(RetryPolicy(per_try_timeout_s=per_try), call_at)

    assert (attempt.number, attempt.per_try, attempt.excluded_endpoints) == (
        1,
        per_try_set,
        frozenset(),
    )
    if expect_in is None:
        assert attempt.deadline is None
    else:
        assert attempt.deadline is not None
        assert now + expect_in - 0.5 < attempt.deadline.at <= time.monotonic() + expect_in


def _limited_plan(adapter: Answering, tokens: int) -> CallPlan[None, str]:
    limiter = rate_limit(
        xds.LocalRateLimit(
            stat_prefix="s",
            token_bucket=xds.TokenBucket(max_tokens=tokens, fill_interval_s=60.0),
            filter_enabled_per_million=1_000_000,
            filter_enforced_per_million=1_000_000,
        ),
        name="svc:80",
    )
    assert limiter is not None
    route = RouteResilience(None, RouteTimeouts(None, None), stages=(limiter,))
    return CallPlan(route, ClusterResilience(CLUSTER), CLUSTER, adapter, "svc:80")


def _driver_frames(call: Callable[[], object]) -> list[str]:
    """The names of the frames the drivers and the plan ran during ``call``."""
    names: list[str] = []

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_filename.endswith(("call.py", "call_plan.py")):
            names.append(code.co_name)

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return names


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_limits_only_call_is_one_driver_frame_and_the_limit_still_acts(driver: str) -> None:
    adapter = Answering()
    plan = _limited_plan(adapter, tokens=2)

    def call() -> str:
        if driver == "sync":
            return run_sync(plan, None, 5.0)
        return asyncio.run(run_async(plan, None, 5.0))

    frames = _driver_frames(call)
    # The driver's own frame, the deadline and try 1's: no stage entry, no inner helper.
    assert frames.count("run_sync" if driver == "sync" else "run_async") == 1
    assert "enter" not in frames and "_tries" not in frames
    assert call() == "ok"
    with pytest.raises(RateLimitedError):
        call()
    assert len(adapter.attempts) == 2  # the refused call never reached the try
    assert plan.cluster.thresholds.requests.count == 0
