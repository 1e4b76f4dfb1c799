"""Everything resilience needs per route, compiled once per route table build.

:class:`RouteResilience` bundles a route's compiled retry behaviour, its
timeouts and the fault / rate-limit stages that run for it (per weighted
cluster when a weighted cluster overrides a filter). A
:class:`ResilienceCompiler` (one per service, living as long as the service's
state) builds them from the listener and route configuration and keeps the
runtime objects (token buckets, fault counters) across rebuilds while their
config is unchanged, so an EDS update does not refill a bucket.

The request path only reads: ``compiled.for_route(route)`` (a dict lookup by
identity), ``route_resilience.stages_for(cluster)``, and enters the stages with
:func:`apply_stages` / :func:`async_apply_stages` when there are any.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from meshlib.errors import InjectedFaultError
from meshlib.observability.logging import get_logger
from meshlib.resilience.deadline import Deadline, Headers
from meshlib.resilience.fault import (
    NO_FAULT,
    FaultDecision,
    FaultInjector,
    async_delay_within,
    delay_within,
)
from meshlib.resilience.xds_filters import (
    EffectiveFilter,
    LocalRateLimiter,
    effective_filter_configs,
    fault_policy,
    rate_limit,
)
from meshlib.resilience.xds_route import RouteRetry, RouteTimeouts, route_retry, route_timeouts
from meshlib.xds_client import resources as xds

_log = get_logger(__name__)

Stage = FaultInjector | LocalRateLimiter
NO_STAGES: Final[tuple[Stage, ...]] = ()
_EMPTY_OVERRIDES: Final[Mapping[str, xds.FilterOverride]] = {}


@dataclass(frozen=True, slots=True)
class RouteResilience:
    """One route's compiled resilience (read-only on the request path)."""

    retry: RouteRetry | None
    timeouts: RouteTimeouts
    stages: tuple[Stage, ...] = NO_STAGES
    #: Weighted clusters whose filter overrides give them other stages.
    stages_by_cluster: Mapping[str, tuple[Stage, ...]] = field(default_factory=dict)

    def needs_headers(self, cluster: str) -> bool:
        """Whether deciding this request reads its headers (stages, retriable_request_headers)."""
        retry = self.retry
        return bool(self.stages_for(cluster)) or (
            retry is not None and bool(retry.request_matchers)
        )

    def stages_for(self, cluster: str) -> tuple[Stage, ...]:
        """The fault / rate-limit stages for a request the route sends to ``cluster``."""
        if self.stages_by_cluster:
            return self.stages_by_cluster.get(cluster, self.stages)
        return self.stages


NO_ROUTE_RESILIENCE: Final = RouteResilience(None, RouteTimeouts(None, None))


class ServiceResilience:
    """The compiled resilience of every route of one route configuration."""

    __slots__ = ("_by_route",)

    def __init__(self, by_route: dict[int, tuple[xds.Route, RouteResilience]]) -> None:
        self._by_route = by_route  # id(route) -> (route kept alive, compiled)

    def for_route(self, route: xds.Route) -> RouteResilience:
        entry = self._by_route.get(id(route))
        if entry is None or entry[0] is not route:
            return NO_ROUTE_RESILIENCE
        return entry[1]


NO_SERVICE_RESILIENCE: Final = ServiceResilience({})


class ResilienceCompiler:
    """Compiles a service's routes; reuses stateful stages across rebuilds."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._stages: dict[tuple[object, ...], Stage | None] = {}

    def compile(
        self, listener: xds.ListenerResource, route_config: xds.RouteConfigResource
    ) -> ServiceResilience:
        """Compile every forwarding route (bad values raise ``ValueError`` naming the field)."""
        used: dict[tuple[object, ...], Stage | None] = {}
        by_route: dict[int, tuple[xds.Route, RouteResilience]] = {}
        for v, vhost in enumerate(route_config.virtual_hosts):
            for r, route in enumerate(vhost.routes):
                if route.action is None:
                    continue
                where = f"route_config {route_config.name!r}.virtual_hosts[{v}].routes[{r}]"
                compiled = self.compile_route(
                    listener, route_config, vhost, route, where=where, used=used
                )
                by_route[id(route)] = (route, compiled)
        self._stages = used
        return ServiceResilience(by_route)

    def compile_route(
        self,
        listener: xds.ListenerResource,
        route_config: xds.RouteConfigResource,
        vhost: xds.VirtualHost,
        route: xds.Route,
        *,
        where: str,
        used: dict[tuple[object, ...], Stage | None] | None = None,
    ) -> RouteResilience:
        """One route's :class:`RouteResilience` (``route.action`` must be set)."""
        assert route.action is not None
        used = used if used is not None else {}
        levels = (route.typed_per_filter_config, vhost.typed_per_filter_config,
                  route_config.typed_per_filter_config)  # fmt: skip
        scopes = ((vhost.name, route.name, where), (vhost.name,), ("route_config",))
        stages = self._stages_for(listener, (_EMPTY_OVERRIDES, *levels), (None, *scopes), used)
        by_cluster: dict[str, tuple[Stage, ...]] = {}
        for weight in route.action.weighted_clusters:
            if not weight.typed_per_filter_config:
                continue
            cluster_scope = (vhost.name, route.name, where, weight.name)
            by_cluster[weight.name] = self._stages_for(
                listener, (weight.typed_per_filter_config, *levels), (cluster_scope, *scopes), used
            )
        return RouteResilience(
            retry=route_retry(route.action, where=where),
            timeouts=route_timeouts(route.action),
            stages=stages,
            stages_by_cluster=by_cluster,
        )

    def _stages_for(
        self,
        listener: xds.ListenerResource,
        overrides: tuple[Mapping[str, xds.FilterOverride], ...],
        scopes: tuple[tuple[str, ...] | None, ...],
        used: dict[tuple[object, ...], Stage | None],
    ) -> tuple[Stage, ...]:
        stages: list[Stage] = []
        for effective in effective_filter_configs(listener.filters, overrides):
            scope = scopes[effective.level] if effective.level < len(scopes) else ("listener",)
            key = (listener.name, effective.name, scope, effective.config)
            if key not in used:
                used[key] = (
                    self._stages[key] if key in self._stages else self._build(effective, key)
                )
            stage = used[key]
            if stage is not None:
                stages.append(stage)
        return tuple(stages)

    def _build(self, effective: EffectiveFilter, key: tuple[object, ...]) -> Stage | None:
        name = f"{self.target}/{effective.name}"
        config = effective.config
        if isinstance(config, xds.HTTPFault):
            policy = fault_policy(config, where=f"{name}.fault")
            return FaultInjector(policy, name=self.target) if policy is not None else None
        return rate_limit(config, name=self.target)


Faulted = list[tuple[FaultInjector, FaultDecision]]
_NONE_FAULTED: Final[Faulted] = []  # shared, never appended to


def _decide(stages: tuple[Stage, ...], headers: Headers) -> tuple[Faulted, float]:
    """Run the rate limits and decide the faults, in chain order (no waiting yet).

    Returns the faults injected (to finish when the request ends) and the total
    delay; raises the first abort or rate limit (finishing what was started).
    """
    faulted: Faulted = _NONE_FAULTED  # replaced by a list on the first fault (rare)
    delay = 0.0
    try:
        for stage in stages:
            if type(stage) is LocalRateLimiter:
                stage.check()
                continue
            assert isinstance(stage, FaultInjector)
            decision = stage.start(headers)
            if decision is NO_FAULT or not decision.is_fault:
                continue
            if faulted is _NONE_FAULTED:
                faulted = []
            faulted.append((stage, decision))
            delay += decision.delay_s
    except BaseException:
        finish_stages(faulted)
        raise
    return faulted, delay


def header_gate(stages: tuple[Stage, ...]) -> frozenset[str] | None:
    """The lower-case header names whose presence makes ``stages`` read a request's
    headers (empty: they never do; None: any request's headers may matter)."""
    names: frozenset[str] = frozenset()
    for stage in stages:
        if type(stage) is LocalRateLimiter:
            continue  # a token bucket reads no header
        assert isinstance(stage, FaultInjector)
        triggers = stage.trigger_headers
        if triggers is None:
            return None
        names |= triggers
    return names


def _abort_of(faulted: Faulted) -> InjectedFaultError | None:
    for _stage, decision in faulted:
        error = decision.error()
        if error is not None:
            return error
    return None


def enter_stages(
    stages: tuple[Stage, ...],
    headers: Headers,
    deadline: Deadline | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Faulted:
    """Apply a request's stages (limits, delay, abort); end with :func:`finish_stages`.

    A delay is cut at ``deadline`` (default: the current one) with DeadlineExceeded.
    """
    faulted, delay = _decide(stages, headers)
    if not faulted:
        return faulted
    try:
        if delay > 0:
            delay_within(delay, deadline, sleep)
        error = _abort_of(faulted)
        if error is not None:
            raise error
    except BaseException:
        finish_stages(faulted)
        raise
    return faulted


async def async_enter_stages(
    stages: tuple[Stage, ...],
    headers: Headers,
    deadline: Deadline | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Faulted:
    """The async twin of :func:`enter_stages` (the delay is awaited, cancellable)."""
    faulted, delay = _decide(stages, headers)
    try:
        if delay > 0:
            await async_delay_within(delay, deadline, sleep)
        error = _abort_of(faulted)
        if error is not None:
            raise error
    except BaseException:
        finish_stages(faulted)
        raise
    return faulted


def finish_stages(faulted: Faulted) -> None:
    """The request ended: free the ``max_active_faults`` slots its faults held."""
    for stage, decision in faulted:
        stage.finish(decision)


@contextlib.contextmanager
def apply_stages(
    stages: tuple[Stage, ...],
    headers: Headers,
    deadline: Deadline | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Run a request's fault / rate-limit stages in chain order around the block
    (a delay cut at ``deadline``, default the current one)."""
    faulted = enter_stages(stages, headers, deadline, sleep=sleep)
    try:
        yield
    finally:
        finish_stages(faulted)


@contextlib.asynccontextmanager
async def async_apply_stages(
    stages: tuple[Stage, ...],
    headers: Headers,
    deadline: Deadline | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[None]:
    """The async twin of :func:`apply_stages` (fault delays are awaited)."""
    faulted = await async_enter_stages(stages, headers, deadline, sleep=sleep)
    try:
        yield
    finally:
        finish_stages(faulted)
