"""Retry schedules: the ADS stream's (gRPC's xDS backoff) and a full-jitter one.

:class:`XdsBackoff` is the ADS stream's, the only one in force for it. gRPC's
xDS client waits 1 s after a failed ADS call, then 1.6 times longer after each
further failure, up to 120 s, every delay jittered by ±20%; once a call got a
response, the next failure starts again from 1 s. meshlib uses the same numbers
and the same reset rule. grpc's channels have a reconnect backoff of their own;
it never adds to this one, because every retry opens a fresh channel (see
:mod:`meshlib.xds_client.ads_stream`).

:class:`Backoff` (exponential, full jitter) paces the registration client.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import tenacity

INITIAL_S = 1.0
MULTIPLIER = 1.6
JITTER = 0.2
MAX_S = 120.0

Uniform = Callable[[float, float], float]


class XdsBackoff:
    """``next_delay()`` is ``initial * multiplier**n`` capped at ``max_s``, times a uniform
    factor in ``[1 - jitter, 1 + jitter]`` (the cap applies before the jitter, as in gRPC).
    ``uniform`` is injectable so tests can pin the jitter."""

    def __init__(
        self,
        initial_s: float = INITIAL_S,
        max_s: float = MAX_S,
        *,
        multiplier: float = MULTIPLIER,
        jitter: float = JITTER,
        uniform: Uniform = random.uniform,
    ) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"backoff: need 0 < initial ({initial_s}) <= max ({max_s})")
        if multiplier < 1:
            raise ValueError(f"backoff: multiplier must be >= 1, got {multiplier}")
        if not 0 <= jitter < 1:
            raise ValueError(f"backoff: jitter must be in [0, 1), got {jitter}")
        self.initial_s, self.max_s = initial_s, max_s
        self.multiplier, self.jitter = multiplier, jitter
        self._uniform = uniform
        self._current: float | None = None  # the un-jittered delay last handed out

    def next_delay(self) -> float:
        if self._current is None:
            self._current = self.initial_s
        else:
            self._current = min(self._current * self.multiplier, self.max_s)
        return self._current * self._uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self._current = None

    def delay_after_stream(self, got_response: bool) -> float:
        """The wait before the next stream: the schedule starts over after a stream that
        got a response (it was healthy), and goes on growing after one that did not."""
        if got_response:
            self.reset()
        return self.next_delay()


class Backoff:
    """``next_delay()`` grows ``base * 2**n`` up to ``max``, uniformly jittered in [0, that]
    (full jitter, from tenacity's wait strategy); the registration client's schedule."""

    def __init__(self, base_s: float, max_s: float) -> None:
        if base_s < 0 or max_s < base_s:
            raise ValueError(f"backoff: need 0 <= base ({base_s}) <= max ({max_s})")
        self._wait = tenacity.wait_random_exponential(multiplier=base_s, max=max_s)
        self._retrying = tenacity.Retrying()
        self._attempt = 0

    def next_delay(self) -> float:
        self._attempt += 1
        state = tenacity.RetryCallState(self._retrying, None, (), {})
        state.attempt_number = self._attempt
        return float(self._wait(state))

    def reset(self) -> None:
        self._attempt = 0
