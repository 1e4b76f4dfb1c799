from __future__ import annotations

import threading

import pytest

from meshlib.errors import RateLimitedError, ResilienceValueError
from meshlib.resilience.grpc_codes import GrpcCode
from meshlib.resilience.rate_limit import TokenBucket
from tests.resilience.fakes import FakeClock


def test_starts_full_and_refills_in_whole_intervals() -> None:
    clock = FakeClock()
    bucket = TokenBucket(max_tokens=3, tokens_per_fill=2, fill_interval_s=1.0, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.99)
    assert not bucket.try_acquire()
    clock.advance(0.01)
    assert bucket.tokens == 2
    clock.advance(10.0)
    assert bucket.tokens == 3  # never above max_tokens
    assert bucket.rejected == 2


def test_refill_keeps_its_phase() -> None:
    clock = FakeClock()
    bucket = TokenBucket(max_tokens=1, tokens_per_fill=1, fill_interval_s=1.0, clock=clock)
    bucket.acquire()
    clock.advance(1.5)
    bucket.acquire()  # filled at t=1.0
    clock.advance(0.5)
    bucket.acquire()  # filled at t=2.0, not t=2.5


def test_rejection_carries_status_and_retry_after() -> None:
    clock = FakeClock()
    bucket = TokenBucket(max_tokens=1, tokens_per_fill=1, fill_interval_s=2.0, clock=clock)
    bucket.acquire()
    clock.advance(0.5)
    with pytest.raises(RateLimitedError) as caught:
        bucket.acquire()
    assert caught.value.http_status == 429 and caught.value.grpc_status == GrpcCode.UNAVAILABLE
    assert caught.value.retry_after_s == pytest.approx(1.5)
    custom = TokenBucket(
        max_tokens=1, tokens_per_fill=1, fill_interval_s=1.0, status=503,
        rate_limited_as_resource_exhausted=True, clock=clock,
    )  # fmt: skip
    custom.acquire()
    with pytest.raises(RateLimitedError) as caught:
        custom.acquire()
    assert caught.value.http_status == 503
    assert caught.value.grpc_status == GrpcCode.RESOURCE_EXHAUSTED


def test_thread_safe_under_contention() -> None:
    clock = FakeClock()
    bucket = TokenBucket(max_tokens=100, tokens_per_fill=1, fill_interval_s=60.0, clock=clock)
    granted: list[bool] = []

    def worker() -> None:
        results = [bucket.try_acquire() for _ in range(50)]
        granted.extend(results)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sum(granted) == 100


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"tokens_per_fill": 0}, "tokens_per_fill"),
        ({"fill_interval_s": 0.0}, "fill_interval"),
        ({"status": 200}, "status"),
    ],
)
def test_validation(kwargs: dict[str, float], field: str) -> None:
    settings: dict[str, float] = {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval_s": 1.0}
    settings.update(kwargs)
    with pytest.raises(ResilienceValueError, match=field):
        TokenBucket(**settings)  # type: ignore[arg-type]
