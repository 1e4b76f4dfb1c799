"""The per-request driver: deadline, stages, breaker, fast first try, retries, admission."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from meshlib.errors import (
    CircuitBreakerOverflow,
    CircuitOpenError,
    DeadlineExceeded,
    PerTryTimeoutError,
    RateLimitedError,
)
from meshlib.resilience.breaker import BreakerConfig, BreakerRegistry, BreakerState
from meshlib.resilience.call import async_resilient_call, resilient_call
from meshlib.resilience.conditions import FailureKind, Outcome
from meshlib.resilience.deadline import deadline_scope
from meshlib.resilience.retry import Attempt
from meshlib.resilience.route_resilience import RouteResilience
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.resilience.xds_filters import rate_limit
from meshlib.resilience.xds_route import RouteTimeouts, route_retry
from meshlib.xds_client import resources as xds

CLUSTER = "outbound|80||svc"
MILLION = 1_000_000


def _route(**retry: object) -> RouteResilience:
    policy = xds.RetryPolicy(
        retry_on=frozenset({xds.RetryOn.FIVE_XX}),
        back_off=xds.RetryBackOff(base_interval_s=0.001, max_interval_s=0.002),
        retry_previous_hosts=True,
        **retry,  # type: ignore[arg-type]
    )
    compiled = route_retry(xds.RouteAction(cluster=CLUSTER, retry_policy=policy))
    return RouteResilience(compiled, RouteTimeouts(None, None))


def _cluster(config: xds.CircuitBreakerThresholds | None = None) -> ClusterResilience:
    return ClusterResilience(
        CLUSTER, config or xds.CircuitBreakerThresholds(), breaker_registry=BreakerRegistry()
    )


def _describe(status: int) -> Outcome:
    return Outcome(status=status)


def _describe_error(error: BaseException) -> Outcome:
    if isinstance(error, ConnectionRefusedError):
        return Outcome(failure=FailureKind.CONNECT_FAILURE, error=error)
    if isinstance(error, PerTryTimeoutError):
        return Outcome(failure=FailureKind.TIMEOUT, error=error)
    return Outcome(failure=FailureKind.OTHER, error=error)


class Upstream:
    """Answers from a script, one entry per try; records each attempt."""

    def __init__(self, *answers: int | BaseException) -> None:
        self.answers = list(answers)
        self.attempts: list[Attempt] = []

    def __call__(self, attempt: Attempt) -> int:
        self.attempts.append(attempt)
        attempt.endpoint = f"10.0.0.{len(self.attempts)}:80"
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _call(
    upstream: Callable[[Attempt], int],
    route: RouteResilience,
    cluster: ClusterResilience,
    *,
    method: str | None = "GET",
    timeout_s: float | None = None,
) -> int:
    return resilient_call(
        upstream, route=route, cluster=cluster, headers={}, method=method, timeout_s=timeout_s,
        describe_result=_describe, describe_error=_describe_error, name="svc:80",
    )  # fmt: skip


def test_a_good_first_try_is_the_answer_and_leaves_no_state() -> None:
    cluster = _cluster()
    upstream = Upstream(200)
    assert _call(upstream, _route(num_retries=3), cluster) == 200
    assert len(upstream.attempts) == 1
    stats = cluster.budget.stats()
    assert (stats.active_requests, stats.active_retries, stats.retries_started) == (0, 0, 0)
    assert cluster.thresholds.requests.count == 0 and cluster.thresholds.connections.count == 0


def test_a_retriable_answer_is_retried_on_another_host() -> None:
    upstream = Upstream(503, 503, 200)
    assert _call(upstream, _route(num_retries=3), _cluster()) == 200
    assert [sorted(a.excluded_endpoints) for a in upstream.attempts] == [
        [], ["10.0.0.1:80"], ["10.0.0.1:80", "10.0.0.2:80"],
    ]  # fmt: skip


def test_retries_run_out_and_the_caller_gets_the_last_answer() -> None:
    upstream = Upstream(503)
    assert _call(upstream, _route(num_retries=2), _cluster()) == 503
    assert len(upstream.attempts) == 3


def test_post_is_retried_only_when_it_was_never_sent() -> None:
    route = _route(num_retries=2)
    refused = Upstream(ConnectionRefusedError(), 200)
    assert _call(refused, route, _cluster(), method="POST") == 200
    failing = Upstream(503, 200)
    assert _call(failing, route, _cluster(), method="POST") == 503
    assert len(failing.attempts) == 1


def test_expired_work_is_not_started() -> None:
    upstream = Upstream(200)
    with deadline_scope(0.0), pytest.raises(DeadlineExceeded):
        _call(upstream, _route(), _cluster())
    assert upstream.attempts == []


def test_route_timeout_and_per_try_timeout_reach_the_try() -> None:
    upstream = Upstream(200)
    _call(upstream, _route(num_retries=1, per_try_timeout_s=0.2), _cluster(), timeout_s=5.0)
    timeout = upstream.attempts[0].timeout_s
    assert timeout is not None and 0.1 < timeout <= 0.2


def test_max_requests_fails_fast_naming_the_threshold() -> None:
    cluster = _cluster(xds.CircuitBreakerThresholds(max_requests=1))
    entered, release = threading.Event(), threading.Event()

    def slow(attempt: Attempt) -> int:
        entered.set()
        release.wait(5)
        return 200

    worker = threading.Thread(target=_call, args=(slow, _route(), cluster))
    worker.start()
    try:
        assert entered.wait(5)
        with pytest.raises(CircuitBreakerOverflow) as caught:
            _call(Upstream(200), _route(), cluster)
        assert caught.value.threshold == "max_requests"
    finally:
        release.set()
        worker.join(5)


def test_max_connections_makes_tries_pending_and_pending_overflows() -> None:
    cluster = _cluster(xds.CircuitBreakerThresholds(max_connections=1, max_pending_requests=1))
    entered, release = threading.Event(), threading.Event()
    results: list[int] = []

    def slow(attempt: Attempt) -> int:
        entered.set()
        release.wait(5)
        return 200

    first = threading.Thread(target=lambda: results.append(_call(slow, _route(), cluster)))
    first.start()
    assert entered.wait(5)
    second = threading.Thread(
        target=lambda: results.append(_call(Upstream(201), _route(), cluster))
    )
    second.start()
    deadline = time.monotonic() + 5
    while cluster.thresholds.pending_requests.count == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(CircuitBreakerOverflow) as caught:
        _call(Upstream(202), _route(), cluster)
    assert caught.value.threshold == "max_pending_requests"
    release.set()
    first.join(5)
    second.join(5)
    assert sorted(results) == [200, 201]


def test_a_registered_breaker_opens_on_failures_and_rejects() -> None:
    registry = BreakerRegistry()
    cluster = ClusterResilience(CLUSTER, breaker_registry=registry)
    breaker = registry.get(
        "svc:80", BreakerConfig(minimum_number_of_calls=4, sliding_window_size=4)
    )
    for _ in range(4):
        assert _call(Upstream(500), _route(num_retries=0), cluster) == 500
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        _call(Upstream(200), _route(), cluster)


def test_a_rate_limit_stage_runs_before_the_try() -> None:
    limiter = rate_limit(
        xds.LocalRateLimit(
            stat_prefix="s",
            token_bucket=xds.TokenBucket(max_tokens=1, fill_interval_s=60.0),
            filter_enabled_per_million=MILLION,
            filter_enforced_per_million=MILLION,
        ),
        name="svc:80",
    )
    assert limiter is not None
    route = RouteResilience(None, RouteTimeouts(None, None), stages=(limiter,))
    upstream = Upstream(200)
    assert _call(upstream, route, _cluster()) == 200
    with pytest.raises(RateLimitedError):
        _call(upstream, route, _cluster())
    assert len(upstream.attempts) == 1


async def test_async_per_try_timeout_cancels_and_retries() -> None:
    calls: list[Attempt] = []

    async def upstream(attempt: Attempt) -> int:
        calls.append(attempt)
        attempt.endpoint = f"10.0.0.{len(calls)}:80"
        if len(calls) == 1:
            await asyncio.sleep(5)
        return 200

    route = _route(num_retries=1, per_try_timeout_s=0.05)
    started = time.monotonic()
    result = await async_resilient_call(
        upstream, route=route, cluster=_cluster(), headers={}, method="GET", timeout_s=None,
        describe_result=_describe, describe_error=_describe_error, name="svc:80",
    )  # fmt: skip
    assert result == 200 and len(calls) == 2
    assert time.monotonic() - started < 2


async def test_async_route_timeout_raises_deadline_exceeded() -> None:
    async def stuck(attempt: Attempt) -> int:
        await asyncio.sleep(5)
        return 200

    with pytest.raises(DeadlineExceeded) as caught:
        await async_resilient_call(
            stuck, route=_route(num_retries=2), cluster=_cluster(), headers={}, method="GET",
            timeout_s=0.05, describe_result=_describe, describe_error=_describe_error,
            name="svc:80",
        )  # fmt: skip
    assert not isinstance(caught.value, PerTryTimeoutError)
