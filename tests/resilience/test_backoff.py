from __future__ import annotations

import email.utils
import random

import pytest
import tenacity

from meshlib.errors import ResilienceValueError
from meshlib.resilience.backoff import (
    BackOff,
    RateLimitedBackOff,
    ResetFormat,
    ResetHeader,
    wait_envoy_jitter,
    wait_rate_limited,
)
from tests.resilience.fakes import FixedRandom


def _state(attempt_number: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt_number
    return state


def test_envoy_jitter_ranges_double_and_cap() -> None:
    wait = wait_envoy_jitter(BackOff(base_interval_s=0.025), FixedRandom(0.999999))
    # Envoy: retry N waits in [0, (2**N - 1) * base), capped at 10 x base.
    assert wait(_state(1)) == pytest.approx(0.025, rel=1e-4)
    assert wait(_state(2)) == pytest.approx(0.075, rel=1e-4)
    assert wait(_state(3)) == pytest.approx(0.175, rel=1e-4)
    assert wait(_state(4)) == pytest.approx(0.25, rel=1e-4)  # capped
    assert wait(_state(500)) == pytest.approx(0.25, rel=1e-4)
    assert wait_envoy_jitter(BackOff(), FixedRandom(0.0))(_state(3)) == 0.0


def test_envoy_jitter_samples_stay_within_bounds() -> None:
    rng = random.Random(7)
    wait = wait_envoy_jitter(BackOff(base_interval_s=0.1, max_interval_s=0.5), rng.random)
    for retry_number in range(1, 8):
        ceiling = min((2**retry_number - 1) * 0.1, 0.5)
        samples = [wait(_state(retry_number)) for _ in range(200)]
        assert all(0.0 <= s < ceiling for s in samples)
        assert max(samples) > 0.8 * ceiling  # full jitter spreads over the range


def test_backoff_validation() -> None:
    with pytest.raises(ResilienceValueError, match="base_interval"):
        BackOff(base_interval_s=0)
    with pytest.raises(ResilienceValueError, match="max_interval"):
        BackOff(base_interval_s=1.0, max_interval_s=0.5)


def test_retry_after_seconds_and_http_date() -> None:
    policy = RateLimitedBackOff()
    assert policy.interval({"retry-after": "3"}, wall_clock=lambda: 0.0) == 3.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert policy.interval({"retry-after": date}, wall_clock=lambda: now) == pytest.approx(20.0)
    assert policy.interval({}, wall_clock=lambda: now) is None
    assert policy.interval({"retry-after": "soon"}, wall_clock=lambda: now) is None


def test_reset_headers_in_order_and_max_interval_discards() -> None:
    policy = RateLimitedBackOff(
        reset_headers=(
            ResetHeader("x-ratelimit-reset", ResetFormat.UNIX_TIMESTAMP),
            ResetHeader("retry-after"),
        ),
        max_interval_s=60.0,
    )
    headers = {"x-ratelimit-reset": "1000030", "retry-after": "5"}
    assert policy.interval(headers, wall_clock=lambda: 1_000_000.0) == 30.0
    too_far = {"x-ratelimit-reset": "1009999", "retry-after": "5"}
    assert policy.interval(too_far, wall_clock=lambda: 1_000_000.0) == 5.0


def test_rate_limited_wait_falls_back_to_jitter() -> None:
    headers: dict[str, str] = {"retry-after": "2"}
    fallback = wait_envoy_jitter(BackOff(), FixedRandom(0.5))
    wait = wait_rate_limited(
        RateLimitedBackOff(),
        lambda: headers,
        fallback,
        rng=FixedRandom(0.0),
        wall_clock=lambda: 0.0,
    )
    assert wait(_state(1)) == 2.0
    headers.clear()
    assert wait(_state(1)) == pytest.approx(0.0125)
