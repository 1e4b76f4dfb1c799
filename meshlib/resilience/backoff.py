"""Back-off between retries, as tenacity wait strategies (they compose with tenacity's own).

- :class:`wait_envoy_jitter`: Envoy's ``retry_back_off``: retry N waits a random
  time in ``[0, (2**N - 1) * base)``, capped at ``max`` (default 10 x base).
- :class:`wait_rate_limited`: Envoy's ``rate_limited_retry_back_off``: when the
  last answer carries a reset header (``Retry-After`` by default) the retry waits
  that long (plus up to half of it as jitter, as Envoy's lower-bound jitter);
  a header value above ``max_interval`` is ignored and the next header is tried;
  with no usable header the fallback wait applies.

Randomness and wall-clock time are injectable for tests.
"""

from __future__ import annotations

import email.utils
import enum
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import tenacity
from tenacity.wait import wait_base

from meshlib.errors import ResilienceValueError

Random = Callable[[], float]  # uniform in [0, 1)


@dataclass(frozen=True, slots=True)
class BackOff:
    """Envoy ``RetryPolicy.retry_back_off`` (defaults: 25 ms base, 10 x base max)."""

    base_interval_s: float = 0.025
    max_interval_s: float | None = None

    def __post_init__(self) -> None:
        if self.base_interval_s <= 0:
            raise ResilienceValueError("retry_back_off.base_interval must be > 0")
        if self.max_interval_s is not None and self.max_interval_s < self.base_interval_s:
            raise ResilienceValueError("retry_back_off.max_interval must be >= base_interval")

    @property
    def cap_s(self) -> float:
        return self.max_interval_s if self.max_interval_s is not None else 10 * self.base_interval_s


class ResetFormat(enum.Enum):
    SECONDS = "SECONDS"  # delta seconds; an HTTP-date is accepted too (Retry-After)
    UNIX_TIMESTAMP = "UNIX_TIMESTAMP"  # absolute epoch seconds


@dataclass(frozen=True, slots=True)
class ResetHeader:
    name: str
    format: ResetFormat = ResetFormat.SECONDS


@dataclass(frozen=True, slots=True)
class RateLimitedBackOff:
    """Envoy ``RetryPolicy.rate_limited_retry_back_off``."""

    reset_headers: tuple[ResetHeader, ...] = (ResetHeader("retry-after"),)
    max_interval_s: float = 300.0

    def interval(
        self, headers: Mapping[str, str], *, wall_clock: Callable[[], float]
    ) -> float | None:
        """Seconds the answer asks us to wait, or ``None`` if no header is usable."""
        for header in self.reset_headers:
            value = headers.get(header.name.lower())
            if value is None:
                continue
            seconds = _parse_reset(value.strip(), header.format, wall_clock)
            if seconds is not None and 0.0 <= seconds <= self.max_interval_s:
                return seconds
        return None


def _parse_reset(value: str, fmt: ResetFormat, wall_clock: Callable[[], float]) -> float | None:
    try:
        number = float(value)
    except ValueError:
        if fmt is not ResetFormat.SECONDS:
            return None
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - wall_clock())
    if fmt is ResetFormat.UNIX_TIMESTAMP:
        return max(0.0, number - wall_clock())
    return number


class wait_envoy_jitter(wait_base):
    """Full jitter: ``[0, (2**N - 1) * base)`` for retry N, capped at the back-off's max."""

    def __init__(self, backoff: BackOff, rng: Random = random.random) -> None:
        self.backoff = backoff
        self.rng = rng

    def ceiling(self, retry_number: int) -> float:
        exponent = min(retry_number, 62)
        return min(((1 << exponent) - 1) * self.backoff.base_interval_s, self.backoff.cap_s)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.rng() * self.ceiling(retry_state.attempt_number)


class wait_rate_limited(wait_base):
    """Honour reset headers of the last answer; otherwise defer to ``fallback``."""

    def __init__(
        self,
        policy: RateLimitedBackOff,
        last_headers: Callable[[], Mapping[str, str]],
        fallback: wait_base,
        *,
        rng: Random = random.random,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.last_headers = last_headers
        self.fallback = fallback
        self.rng = rng
        self.wall_clock = wall_clock

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        interval = self.policy.interval(self.last_headers(), wall_clock=self.wall_clock)
        if interval is None:
            return float(self.fallback(retry_state))
        return interval * (1.0 + 0.5 * self.rng())
