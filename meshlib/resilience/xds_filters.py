"""The fault and local-rate-limit HTTP filters of a listener, resolved per route.

Envoy runs a listener's HTTP filters in chain order; a route may replace a
filter's config through ``typed_per_filter_config`` (the most specific level
wins: weighted cluster, route, virtual host, route configuration) or turn it
off (``FilterConfig.disabled``); a filter disabled on the listener runs only
where a route-level config turns it on. :func:`effective_filter_configs` does
that resolution once per (route, cluster), and :func:`fault_policy` /
:func:`rate_limit` turn the result into resilience objects. A config that can
never act (an HTTPFault with neither delay nor abort, a local rate limit
without a bucket or with ``filter_enabled`` 0%) yields nothing, so the request
path skips it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from meshlib.matching.matchers import CompiledHeaderMatch
from meshlib.resilience.fault import FaultAbort, FaultDelay, FaultPolicy
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.xds_client import resources as xds

PER_MILLION = 1_000_000

FilterConfig = xds.HTTPFault | xds.LocalRateLimit


@dataclass(frozen=True, slots=True)
class EffectiveFilter:
    """A fault / rate-limit filter that runs for a route, and where its config came from.

    ``level`` indexes the ``overrides`` given to :func:`effective_filter_configs`;
    ``len(overrides)`` means the listener's own config. Envoy keeps one token
    bucket per config instance, so the level decides which routes share a bucket.
    """

    name: str
    config: FilterConfig
    level: int


def effective_filter_configs(
    filters: Sequence[xds.HttpFilter],
    overrides: Sequence[Mapping[str, xds.FilterOverride]],
) -> tuple[EffectiveFilter, ...]:
    """Every fault / rate-limit filter that runs, in chain order, with its effective config.

    ``overrides`` are the ``typed_per_filter_config`` maps from the most
    specific level to the least (weighted cluster, route, virtual host, route config).
    """
    result: list[EffectiveFilter] = []
    for http_filter in filters:
        if not isinstance(http_filter.config, (xds.HTTPFault, xds.LocalRateLimit)):
            continue
        config: FilterConfig | None = None if http_filter.disabled else http_filter.config
        level = len(overrides)
        for index, level_configs in enumerate(overrides):
            override = level_configs.get(http_filter.name)
            if override is not None:
                config = None if override.disabled else override.config
                level = index
                break
        if config is not None:
            result.append(EffectiveFilter(http_filter.name, config, level))
    return tuple(result)


def _all_match(matchers: tuple[CompiledHeaderMatch, ...]) -> Callable[[Mapping[str, str]], bool]:
    def applies(headers: Mapping[str, str]) -> bool:
        return all(m.matches(headers) for m in matchers)

    return applies


def fault_policy(config: xds.HTTPFault, *, where: str = "fault") -> FaultPolicy | None:
    """The fault policy of an HTTPFault config; ``None`` when it can never inject."""
    delay = None
    if config.delay is not None and config.delay.per_million > 0:
        delay = FaultDelay(
            fixed_delay_s=config.delay.fixed_delay_s, per_million=config.delay.per_million
        )
    abort = None
    if config.abort is not None and config.abort.per_million > 0:
        abort = FaultAbort(
            http_status=config.abort.http_status,
            grpc_status=config.abort.grpc_status,
            header_controlled=config.abort.header_controlled,
            per_million=config.abort.per_million,
        )
    if delay is None and abort is None:
        return None
    applies_to = None
    if config.headers:
        matchers = tuple(
            CompiledHeaderMatch(m, f"{where}.headers[{i}]") for i, m in enumerate(config.headers)
        )
        applies_to = _all_match(matchers)
    return FaultPolicy(
        delay=delay,
        abort=abort,
        applies_to=applies_to,
        headers_enabled=False,  # Envoy reads x-envoy-fault-* only for header_delay / header_abort
        max_active_faults=config.max_active_faults,
    )


@dataclass(slots=True)
class LocalRateLimiter:
    """Envoy's local_ratelimit decision for one config: enabled? token? enforced?

    A request the filter is not enabled for passes untouched; an enabled one
    takes a token; without one it is rejected only if the filter is enforced
    for it (otherwise it passes, as in Envoy's shadow mode).
    """

    bucket: TokenBucket
    enabled_per_million: int
    enforced_per_million: int
    response_headers: tuple[tuple[str, str], ...] = ()
    rng: Callable[[], float] = field(default=random.random)
    shadow_passed: int = 0

    def _roll(self, per_million: int) -> bool:
        return per_million >= PER_MILLION or self.rng() * PER_MILLION < per_million

    def check(self) -> None:
        """Take a token or raise :class:`~meshlib.errors.RateLimitedError`."""
        enabled = self.enabled_per_million
        if enabled < PER_MILLION and not self._roll(enabled):
            return
        if self.bucket.try_acquire():
            return
        if not self._roll(self.enforced_per_million):
            self.shadow_passed += 1
            return
        error = self.bucket.rejection()
        error.response_headers = self.response_headers
        raise error


def rate_limit(
    config: xds.LocalRateLimit, *, name: str, rng: Callable[[], float] = random.random
) -> LocalRateLimiter | None:
    """The limiter of a LocalRateLimit config; ``None`` when it never limits."""
    bucket = config.token_bucket
    if bucket is None or config.filter_enabled_per_million <= 0:
        return None
    return LocalRateLimiter(
        bucket=TokenBucket(
            max_tokens=bucket.max_tokens,
            tokens_per_fill=bucket.tokens_per_fill,
            fill_interval_s=bucket.fill_interval_s,
            status=config.status,
            rate_limited_as_resource_exhausted=config.rate_limited_as_resource_exhausted,
            name=name,
        ),
        enabled_per_million=config.filter_enabled_per_million,
        enforced_per_million=config.filter_enforced_per_million,
        response_headers=tuple((h.key, h.value) for h in config.response_headers_to_add),
        rng=rng,
    )
