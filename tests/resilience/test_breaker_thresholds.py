from __future__ import annotations

import pytest

from meshlib.errors import CircuitBreakerOverflow, ResilienceValueError
from meshlib.resilience.breaker_thresholds import ClusterThresholds, Threshold

CLUSTER = "outbound|8080||attendees"


@pytest.mark.parametrize(
    ("method", "threshold"),
    [
        ("connection", "max_connections"),
        ("pending", "max_pending_requests"),
        ("request", "max_requests"),
    ],
)
def test_each_threshold_fails_fast_naming_itself(method: str, threshold: str) -> None:
    limits = {"max_connections": 5, "max_pending_requests": 5, "max_requests": 5, threshold: 2}
    thresholds = ClusterThresholds(CLUSTER, **limits)
    hold = getattr(thresholds, method)
    with hold(), hold():
        with pytest.raises(CircuitBreakerOverflow) as caught, hold():
            pass
        error = caught.value
        assert error.threshold == threshold and error.limit == 2 and error.cluster == CLUSTER
        assert threshold in str(error) and error.http_status == 503 and error.grpc_status == 14
    with hold():  # slots came back
        pass


def test_max_retries_threshold_and_budget() -> None:
    fixed = ClusterThresholds(CLUSTER, max_retries=1, retry_budget_percent=None)
    with fixed.retry():
        with pytest.raises(CircuitBreakerOverflow, match="max_retries") as caught, fixed.retry():
            pass
        assert caught.value.threshold == "max_retries"
    budgeted = ClusterThresholds(CLUSTER)  # meshlib default: 20% budget, 3 minimum
    assert budgeted.retries.stats().limit == 3.0


def test_counts_and_overflows() -> None:
    threshold = Threshold(CLUSTER, "max_requests", 1)
    assert threshold.try_acquire() and not threshold.try_acquire()
    assert threshold.count == 1 and threshold.overflows == 1
    threshold.release()
    with pytest.raises(RuntimeError, match="released more than held"):
        threshold.release()
    with pytest.raises(ResilienceValueError, match="max_requests"):
        Threshold(CLUSTER, "max_requests", -1)
