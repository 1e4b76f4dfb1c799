"""Reconnect delays: exponential with full jitter, from tenacity's wait strategy."""

from __future__ import annotations

import tenacity


class Backoff:
    """``next_delay()`` grows ``base * 2**n`` up to ``max``, uniformly jittered in [0, that]."""

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
