"""A local rate limit: Envoy's ``local_ratelimit`` token bucket.

The bucket starts full with ``max_tokens``; every ``fill_interval`` it gains
``tokens_per_fill`` (never above ``max_tokens``), in whole fills as Envoy does.
Each request takes one token; an empty bucket rejects the request with
:class:`RateLimitedError` carrying the status to answer (429 by default; for
gRPC UNAVAILABLE, or RESOURCE_EXHAUSTED with ``rate_limited_as_resource_exhausted``)
and when the next token arrives. Thread-safe; the clock is injectable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from meshlib.errors import RateLimitedError, ResilienceValueError
from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import resilience_metrics
from meshlib.resilience.grpc_codes import GrpcCode

_log = get_logger(__name__)


class TokenBucket:
    def __init__(
        self,
        *,
        max_tokens: int,
        tokens_per_fill: int,
        fill_interval_s: float,
        status: int = 429,
        rate_limited_as_resource_exhausted: bool = False,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        where = f"local rate limit {name!r}" if name else "local rate limit"
        if max_tokens < 1:
            raise ResilienceValueError(f"{where}: max_tokens must be >= 1")
        if tokens_per_fill < 1:
            raise ResilienceValueError(f"{where}: tokens_per_fill must be >= 1")
        if fill_interval_s <= 0:
            raise ResilienceValueError(f"{where}: fill_interval must be > 0")
        if not 400 <= status <= 599:
            raise ResilienceValueError(f"{where}: status {status} is not an error status")
        self.name = name
        self.max_tokens = max_tokens
        self.tokens_per_fill = tokens_per_fill
        self.fill_interval_s = fill_interval_s
        self.status = status
        self.grpc_status = (
            GrpcCode.RESOURCE_EXHAUSTED
            if rate_limited_as_resource_exhausted
            else GrpcCode.UNAVAILABLE
        )
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens = max_tokens
        self._last_fill = clock()
        self.rejected = 0

    def _refill(self, now: float) -> None:
        """Add the fills due by ``now`` (none when under one interval passed)."""
        fills = int((now - self._last_fill) // self.fill_interval_s)
        if fills > 0:
            self._tokens = min(self.max_tokens, self._tokens + fills * self.tokens_per_fill)
            self._last_fill += fills * self.fill_interval_s

    @property
    def tokens(self) -> int:
        with self._lock:
            self._refill(self.clock())
            return self._tokens

    def try_acquire(self, tokens: int = 1) -> bool:
        with self._lock:
            now = self.clock()
            if now - self._last_fill >= self.fill_interval_s:  # else no fill is due yet
                self._refill(now)
            if self._tokens >= tokens:
                self._tokens -= tokens
                return True
            self.rejected += 1
            return False

    def acquire(self) -> None:
        """Take one token or raise :class:`RateLimitedError`."""
        if not self.try_acquire():
            raise self.rejection()

    def rejection(self) -> RateLimitedError:
        """The error for a request this bucket had no token for (logged and counted)."""
        with self._lock:
            retry_after = max(0.0, self._last_fill + self.fill_interval_s - self.clock())
        _log.info("rate_limited", limiter=self.name, retry_after_s=round(retry_after, 4))
        resilience_metrics().rate_limited(self.name or "local_rate_limit")
        return RateLimitedError(
            f"{self.name or 'local rate limit'}: token bucket empty",
            retry_after_s=retry_after,
            http_status=self.status,
            grpc_status=self.grpc_status,
        )
