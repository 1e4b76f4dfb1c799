"""The ADS retry schedule: gRPC's xDS backoff (1 s, x1.6, ±20%, 120 s cap, reset on response)."""

from __future__ import annotations

import pytest

from meshlib.xds_client.backoff import INITIAL_S, JITTER, MAX_S, MULTIPLIER, XdsBackoff


class PinnedJitter:
    """An injected ``uniform(lo, hi)`` that records its bounds and returns lo, mid or hi."""

    def __init__(self, where: str = "mid") -> None:
        self.where = where
        self.bounds: list[tuple[float, float]] = []

    def __call__(self, lo: float, hi: float) -> float:
        self.bounds.append((lo, hi))
        return {"lo": lo, "mid": (lo + hi) / 2, "hi": hi}[self.where]


def delays(backoff: XdsBackoff, n: int) -> list[float]:
    return [round(backoff.next_delay(), 6) for _ in range(n)]


def test_defaults_are_grpcs_xds_schedule() -> None:
    assert (INITIAL_S, MULTIPLIER, JITTER, MAX_S) == (1.0, 1.6, 0.2, 120.0)
    backoff = XdsBackoff(uniform=PinnedJitter())
    assert (backoff.initial_s, backoff.multiplier, backoff.jitter, backoff.max_s) == (
        1.0,
        1.6,
        0.2,
        120.0,
    )


def test_initial_then_times_the_multiplier() -> None:
    assert delays(XdsBackoff(uniform=PinnedJitter()), 5) == [1.0, 1.6, 2.56, 4.096, 6.5536]


def test_jitter_is_plus_or_minus_twenty_percent() -> None:
    jitter = PinnedJitter("lo")
    assert delays(XdsBackoff(uniform=jitter), 3) == [0.8, 1.28, 2.048]
    assert set(jitter.bounds) == {(0.8, 1.2)}
    assert delays(XdsBackoff(uniform=PinnedJitter("hi")), 3) == [1.2, 1.92, 3.072]


def test_real_jitter_stays_in_range() -> None:
    backoff = XdsBackoff()
    for step in range(15):
        nominal = min(MULTIPLIER**step, MAX_S)
        assert 0.8 * nominal <= backoff.next_delay() <= 1.2 * nominal


def test_capped_at_max_before_jitter() -> None:
    backoff = XdsBackoff(uniform=PinnedJitter())
    assert delays(backoff, 30)[-3:] == [120.0, 120.0, 120.0]
    assert delays(XdsBackoff(uniform=PinnedJitter("hi")), 30)[-1] == 144.0  # 120 s + 20%, as gRPC


def test_a_stream_that_got_a_response_starts_the_schedule_over() -> None:
    backoff = XdsBackoff(uniform=PinnedJitter())
    after_failures = [backoff.delay_after_stream(got_response=False) for _ in range(4)]
    assert [round(d, 6) for d in after_failures] == [1.0, 1.6, 2.56, 4.096]
    assert backoff.delay_after_stream(got_response=True) == 1.0
    assert round(backoff.delay_after_stream(got_response=False), 6) == 1.6
    backoff.reset()
    assert backoff.next_delay() == 1.0


def test_scaled_schedule_for_tests() -> None:
    assert delays(XdsBackoff(0.05, 0.2, uniform=PinnedJitter()), 5) == [0.05, 0.08, 0.128, 0.2, 0.2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial_s": 0}, "0 < initial"),
        ({"initial_s": 5, "max_s": 1}, "0 < initial"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"jitter": 1.0}, "jitter must be in"),
        ({"jitter": -0.1}, "jitter must be in"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        XdsBackoff(**kwargs)
