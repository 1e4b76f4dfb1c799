"""Outlier detection through the cluster runtime, on an injected clock."""

from __future__ import annotations

import random
from collections import Counter

from meshlib.balancing._outlier import OutlierDetector
from meshlib.balancing.picker import Outcome
from meshlib.balancing.policy import LbPolicy, get_policy
from meshlib.balancing.runtime import ClusterRuntime
from meshlib.routing.snapshot import build_cluster_state
from meshlib.xds_client.resources import OutlierDetection
from tests.balancing.builders import cluster, eds, ep, loc
from tests.balancing.tolerance import assert_binomial


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def runtime_for(
    detection: OutlierDetection, ports: range = range(1, 11)
) -> tuple[ClusterRuntime, Clock]:
    clock = Clock()
    runtime = ClusterRuntime("c", clock=clock, rng=random.Random(7))
    runtime.update(
        cluster(outlier_detection=detection), eds(loc("a", [ep(p) for p in ports])), _rr()
    )
    return runtime, clock


def _rr() -> LbPolicy:
    return get_policy("round_robin")


def fail(runtime: ClusterRuntime, port: int, outcome: Outcome, times: int) -> None:
    for _ in range(times):
        runtime.call_started(ep(port))
        runtime.call_finished(ep(port), outcome, 0.01)


def picked(runtime: ClusterRuntime, n: int = 90) -> set[int]:
    return {runtime.pick().port for _ in range(n)}


def test_consecutive_5xx_ejects_and_the_host_returns_after_base_time() -> None:
    runtime, clock = runtime_for(OutlierDetection(base_ejection_time_s=30, interval_s=10))
    fail(runtime, 3, Outcome.ERROR_5XX, 4)
    assert 3 in picked(runtime)
    fail(runtime, 3, Outcome.ERROR_5XX, 1)
    assert runtime.ejected == {"10.0.0.1:3"}
    assert 3 not in picked(runtime)
    clock.now += 29
    runtime.tick()
    assert runtime.ejected  # 30 s not over yet (ticks at 10 s intervals)
    clock.now += 2
    runtime.tick()
    assert not runtime.ejected
    assert 3 in picked(runtime)


def test_a_success_resets_the_consecutive_count() -> None:
    runtime, _ = runtime_for(OutlierDetection())
    fail(runtime, 3, Outcome.ERROR_5XX, 4)
    fail(runtime, 3, Outcome.SUCCESS, 1)
    fail(runtime, 3, Outcome.ERROR_5XX, 4)
    assert not runtime.ejected


def test_ejection_time_grows_with_repeats_and_is_capped() -> None:
    config = OutlierDetection(base_ejection_time_s=10, max_ejection_time_s=25, interval_s=1)
    detector = OutlierDetector(config, 0.0, random.Random(1))
    detector.sync(["h", *[f"x{i}" for i in range(9)]])
    durations = []
    now = 0.0
    for _ in range(4):
        for _ in range(5):
            detector.record("h", Outcome.ERROR_5XX, now)
        assert detector.ejected == {"h"}
        durations.append(detector.changes[-1].duration_s)
        while detector.ejected:
            now += 1
            detector.tick(now)
    assert durations == [10, 20, 25, 25]  # base * times ejected, capped at max


def test_gateway_errors_and_local_origin_failures() -> None:
    config = OutlierDetection(enforcing_consecutive_gateway_failure=100, consecutive_5xx=100)
    runtime, _ = runtime_for(config)
    fail(runtime, 1, Outcome.GATEWAY_ERROR, 5)
    assert runtime.ejected == {"10.0.0.1:1"}
    # Without the split a connect failure counts as a gateway error (Envoy maps it to 503).
    fail(runtime, 2, Outcome.LOCAL_ORIGIN_FAILURE, 5)
    assert "10.0.0.1:2" in runtime.ejected or len(runtime.ejected) == 1  # capped at 10 %
    split = OutlierDetection(split_external_local_origin_errors=True, max_ejection_percent=100)
    runtime, _ = runtime_for(split)
    fail(runtime, 4, Outcome.LOCAL_ORIGIN_FAILURE, 5)
    assert runtime.ejected == {"10.0.0.1:4"}


def test_max_ejection_percent_and_always_eject_one_host() -> None:
    runtime, _ = runtime_for(OutlierDetection(max_ejection_percent=20))
    for port in (1, 2, 3):
        fail(runtime, port, Outcome.ERROR_5XX, 5)
    assert len(runtime.ejected) == 2  # 20 % of 10
    small, _ = runtime_for(OutlierDetection(max_ejection_percent=0), range(1, 3))
    fail(small, 1, Outcome.ERROR_5XX, 5)
    assert not small.ejected
    one, _ = runtime_for(
        OutlierDetection(max_ejection_percent=0, always_eject_one_host=True), range(1, 3)
    )
    fail(one, 1, Outcome.ERROR_5XX, 5)
    fail(one, 2, Outcome.ERROR_5XX, 5)
    assert one.ejected == {"10.0.0.1:1"}


def test_success_rate_ejects_the_outlier_each_interval() -> None:
    config = OutlierDetection(consecutive_5xx=1000, interval_s=10, success_rate_request_volume=20)
    runtime, clock = runtime_for(config)
    for port in range(1, 11):
        fail(runtime, port, Outcome.SUCCESS, 30)
    fail(runtime, 7, Outcome.ERROR_5XX, 20)  # 30/50 = 60 % against 100 % for the rest
    assert not runtime.ejected  # only evaluated at the interval
    clock.now += 10
    runtime.tick()
    assert runtime.ejected == {"10.0.0.1:7"}


def test_failure_percentage() -> None:
    config = OutlierDetection(
        consecutive_5xx=1000,
        enforcing_success_rate=0,
        enforcing_failure_percentage=100,
        failure_percentage_request_volume=10,
        max_ejection_percent=50,
    )
    runtime, clock = runtime_for(config)
    for port in range(1, 11):
        fail(runtime, port, Outcome.SUCCESS, 10)
    fail(runtime, 2, Outcome.ERROR_5XX, 90)  # 90 % >= 85 %
    fail(runtime, 5, Outcome.ERROR_5XX, 40)  # 80 % < 85 %
    clock.now += 10
    runtime.tick()
    assert runtime.ejected == {"10.0.0.1:2"}


def test_enforcing_percentage_is_a_chance() -> None:
    hits = 0
    trials = 400
    rng = random.Random(3)
    for _ in range(trials):
        detector = OutlierDetector(OutlierDetection(enforcing_consecutive_5xx=30), 0.0, rng)
        detector.sync(["h", "a", "b", "c", "d", "e", "f", "g", "i", "j"])
        for _ in range(5):
            detector.record("h", Outcome.ERROR_5XX, 0.0)
        hits += bool(detector.ejected)
    assert_binomial(hits, trials, 0.30, "enforced ejections")


def test_runtime_state_survives_rebuilds() -> None:
    clock = Clock()
    runtime = ClusterRuntime("c", clock=clock)
    resource = cluster("least_request", outlier_detection=OutlierDetection(max_ejection_percent=50))
    state = build_cluster_state(resource, eds(loc("a", [ep(1), ep(2), ep(3)])), runtime)
    state.reporter.call_started(ep(1))
    fail(runtime, 2, Outcome.ERROR_5XX, 5)
    assert runtime.ejected == {"10.0.0.1:2"}
    # An EDS update (a new endpoint) rebuilds the picker; counts and ejections stay.
    state = build_cluster_state(resource, eds(loc("a", [ep(1), ep(2), ep(3), ep(4)])), runtime)
    assert runtime.stats(ep(1)).active == 1  # type: ignore[union-attr]
    assert runtime.ejected == {"10.0.0.1:2"}
    assert 2 not in {state.picker.pick().port for _ in range(100)}
    got = Counter(state.picker.pick().port for _ in range(100))
    assert set(got) <= {1, 3, 4}


def test_active_counts_stay_exact_across_threads() -> None:
    import threading

    runtime, _ = runtime_for(OutlierDetection(consecutive_5xx=10**9, interval_s=3600))
    target = ep(1)

    def work() -> None:
        for _ in range(2000):
            runtime.call_started(target)
            runtime.call_finished(target, Outcome.SUCCESS, 0.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runtime.stats(target).active == 0  # type: ignore[union-attr]
