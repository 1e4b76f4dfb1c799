"""What a route's first try needs, resolved once per snapshot: the core that the
gRPC and HTTP fast paths share (:mod:`~meshlib.transport.grpc_fast_path`,
:mod:`~meshlib.transport.http_fast_path`).

Most requests are alike: the route is chosen without reading headers, it
sends to one cluster, and the first try succeeds. The general path
(:func:`~meshlib.resilience.call.resilient_call`) looks everything up and
builds its closures and attempt objects per request; after the thread has
slept through a network wait that code runs cold, so each step costs several
times what it costs in a loop. A :class:`CompiledPlan` resolves the route's
stages and retry policy, the cluster's budget, thresholds, breaker and picker
(the protocol's part adds the per-try observer) once, while its snapshot
stands. The transports then run the first try inline, in the general path's
order, and hand a failed or retriable try to the general retry runner as try 1
(:class:`~meshlib.resilience.retry.FirstTry`), so retries, budgets,
back-off and previous hosts behave as on the general path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Final

from meshlib.errors import DeadlineExceeded
from meshlib.resilience.breaker import CircuitBreaker
from meshlib.resilience.call import NO_RETRY, record_breaker
from meshlib.resilience.conditions import Outcome
from meshlib.resilience.deadline import Deadline, LowerHeaders, current_deadline
from meshlib.resilience.retry import Attempt, RetryPolicy
from meshlib.resilience.route_resilience import (
    Faulted,
    RouteResilience,
    Stage,
    async_enter_stages,
    enter_stages,
    finish_stages,
    header_gate,
)
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.resilience.xds_filters import LocalRateLimiter
from meshlib.routing.plan import ForwardPlan
from meshlib.routing.snapshot import ClusterState, ServiceSnapshot
from meshlib.xds_client.resources import Endpoint

_monotonic: Final = time.monotonic
_NOTHING_FAULTED: Final[Faulted] = []
_NOTHING_EXCLUDED: Final[frozenset[str]] = frozenset()
_NO_NAMES: Final[frozenset[str]] = frozenset()
_MAX_METHODS: Final = 16
#: The headers of a request whose headers cannot matter (shared: never changed).
NO_HEADERS: Final[Mapping[str, str]] = LowerHeaders()


class Expired(Exception):
    """The request's deadline passed before it started: the general path says so."""


def compilable(
    snapshot: ServiceSnapshot, plan: ForwardPlan
) -> tuple[RouteResilience, ClusterResilience, ClusterState] | None:
    """What a compiled route of ``plan`` is made of, or None when its requests need
    the general path (a plan that depends on headers, mirrors, hashing, hedging)."""
    if not plan.reusable or plan.mirrors or plan.request_hash is not None:
        return None
    state = snapshot.clusters.get(plan.cluster)
    if state is None:
        return None
    route = snapshot.resilience.for_route(plan.route)
    retry = route.retry
    if retry is not None and retry.policy.hedge_on_per_try_timeout:
        return None
    return route, snapshot.resilience_of(plan.cluster), state


class CompiledPlan:
    """One plan's first-try essentials; valid while ``snapshot`` is the service's view
    and no breaker was registered since (:meth:`current`)."""

    __slots__ = (
        "breaker",
        "breaker_generation",
        "breakers",
        "budget",
        "cluster",
        "end_call",
        "faults_need_headers",
        "header_gate",
        "idempotent_methods",
        "limiters",
        "per_try_s",
        "pick",
        "plan",
        "policy",
        "route",
        "snapshot",
        "stages",
        "start_call",
        "state",
    )

    def __init__(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        route: RouteResilience,
        cluster: ClusterResilience,
        state: ClusterState,
    ) -> None:
        self.snapshot = snapshot
        self.plan = plan
        self.route = route
        self.cluster = cluster
        self.state = state
        # Bound once: a request calls each of them (a cold attribute chain costs more).
        self.pick = state.picker.pick
        self.start_call = cluster.thresholds.start_call
        # The thresholds' end of a call; the fast paths then wake a pending waiter if
        # any (Admission.end_call, without the call in between).
        self.end_call = cluster.thresholds.end_call
        self.budget = cluster.budget
        self.breakers = cluster.breakers
        self.breaker_generation = cluster.breaker_generation
        self.breaker: CircuitBreaker | None = cluster.breaker()
        self.stages: tuple[Stage, ...] = route.stages_for(plan.cluster)
        self.idempotent_methods: dict[str, bool] = {}
        self.limiters = tuple(s for s in self.stages if type(s) is LocalRateLimiter)
        retry = route.retry
        self.per_try_s = retry.policy.per_try_timeout_s if retry is not None else None
        # A policy that depends on the request's headers is chosen per request.
        self.policy: RetryPolicy | None = (
            NO_RETRY if retry is None else retry.policy if not retry.request_matchers else None
        )
        #: Header names whose presence makes a request's headers worth reading (None: any
        #: request's may matter, so they are always read; empty: they never matter).
        self.header_gate: frozenset[str] | None = header_gate(self.stages)
        if not route.needs_headers(plan.cluster):
            self.header_gate = _NO_NAMES
        elif self.policy is None:  # the retry policy is chosen by the request's headers
            self.header_gate = None
        #: A request whose headers were not read (NO_HEADERS) has no fault, only limits:
        #: it enters the stages without awaiting, even on the async paths.
        self.faults_need_headers = self.header_gate is not None

    def current(self) -> bool:
        """False once a breaker was registered: :meth:`breaker` may answer otherwise now."""
        return self.breaker_generation == self.breakers.generation

    def call_at(self, timeout: float | None, now: float, cap: float | None = None) -> float | None:
        """When the request must end: ``timeout`` (capped by ``cap``) from ``now`` and
        the enclosing deadline, whichever is first. Raises :class:`Expired`."""
        if cap is not None and (timeout is None or cap < timeout):
            timeout = cap
        at = None if timeout is None else now + timeout
        enclosing = current_deadline()
        if enclosing is not None:
            if enclosing.clock is not _monotonic:
                raise Expired  # another clock: the general path reads it
            if at is None or enclosing.at < at:
                at = enclosing.at
        if at is not None and at <= now:
            raise Expired
        return at

    def after_delay(self, timeout: float | None) -> float | None:
        """HTTP: when the request must end, ``timeout`` counted from the end of a fault
        delay (Envoy's router starts the route timeout after the fault filter); the
        enclosing deadline, which cut the delay, still caps it."""
        try:
            return self.call_at(timeout, _monotonic())
        except Expired:
            raise DeadlineExceeded(
                "deadline exceeded during the injected fault delay", timeout_s=0.0
            ) from None

    def policy_for(self, headers: Mapping[str, str], method: str | None) -> RetryPolicy:
        policy = self.policy
        if policy is not None:
            return policy
        retry = self.route.retry
        assert retry is not None
        return retry.policy if retry.allows(headers, method) else retry.single

    def idempotent(self, method: str | None) -> bool:
        """Whether retries may resend a request that reached the server (gRPC: always)."""
        retry = self.route.retry
        return method is None or retry is None or retry.idempotent(method)

    def idempotent_method(self, method: str) -> bool:
        """:meth:`idempotent` for an HTTP method, remembered (a few methods are used)."""
        known = self.idempotent_methods.get(method)
        if known is None:
            known = self.idempotent(method)
            if len(self.idempotent_methods) < _MAX_METHODS:
                self.idempotent_methods[method] = known
        return known

    @staticmethod
    def try_at(policy: RetryPolicy, call_at: float | None) -> float | None:
        """When the first try must end: its per-try timeout or the call's end."""
        per_try = policy.per_try_timeout_s
        if per_try is None:
            return call_at
        at = _monotonic() + per_try
        return at if call_at is None or at < call_at else call_at

    @staticmethod
    def remaining(try_at: float) -> float:
        """Seconds the first try has; expired work is not started (a fault delay may
        have spent the budget). Raises DeadlineExceeded."""
        left = try_at - _monotonic()
        if left <= 0:
            raise DeadlineExceeded("deadline exceeded before try 1 started", timeout_s=0.0)
        return left

    def enter(self, headers: Mapping[str, str], call_at: float | None = None) -> Faulted:
        """The fault / rate-limit stages, then the failure-rate breaker's permit (the
        general path's order); a fault delay is slept, cut at ``call_at`` (gRPC: the
        call's deadline counts it) or else at the enclosing deadline (HTTP: the route
        timeout starts after it). Raises meshlib's errors. Pair with :meth:`leave` or
        :meth:`leave_with`."""
        stages = self.stages
        if not stages:
            faulted = _NOTHING_FAULTED
        elif headers is NO_HEADERS and self.faults_need_headers:
            for limiter in self.limiters:  # no fault can apply: only the limits act
                limiter.check()
            faulted = _NOTHING_FAULTED
        else:
            faulted = enter_stages(stages, headers, None if call_at is None else Deadline(call_at))
        breaker = self.breaker
        if breaker is not None:
            try:
                breaker.acquire()
            except BaseException:
                finish_stages(faulted)
                raise
        return faulted

    async def enter_async(
        self, headers: Mapping[str, str], call_at: float | None = None
    ) -> Faulted:
        """The async twin of :meth:`enter` (a fault delay is awaited)."""
        stages = self.stages
        bound = None if call_at is None else Deadline(call_at)
        faulted = await async_enter_stages(stages, headers, bound) if stages else _NOTHING_FAULTED
        breaker = self.breaker
        if breaker is not None:
            try:
                breaker.acquire()
            except BaseException:
                finish_stages(faulted)
                raise
        return faulted

    def leave(self, faulted: Faulted, started: float, failed: bool) -> None:
        """The entered tries answered (``failed``: an answer the breaker counts as a
        failure); ``started``: when they began (monotonic)."""
        breaker = self.breaker
        if breaker is not None:
            elapsed = _monotonic() - started
            if failed:
                breaker.on_failure(elapsed)
            else:
                breaker.record_success(elapsed)
        if faulted:
            finish_stages(faulted)

    def leave_with(
        self,
        faulted: Faulted,
        started: float,
        error: BaseException,
        describe_error: Callable[[BaseException], Outcome],
    ) -> None:
        """The entered tries raised ``error``; an interruption (not an ``Exception``)
        is no outcome for the breaker."""
        try:
            breaker = self.breaker
            if breaker is not None and isinstance(error, Exception):
                record_breaker(breaker, describe_error(error), error, started)
        finally:
            if faulted:
                finish_stages(faulted)

    @staticmethod
    def raise_unless_retriable(
        policy: RetryPolicy,
        idempotent: bool,
        error: BaseException | None,
        original: BaseException | None,
        describe_error: Callable[[BaseException], Outcome],
    ) -> None:
        """A failed first try's ``error`` (as the retry rules read it; ``original``: as
        raised), raised when no retry condition matches it."""
        if error is None or (
            policy.num_retries > 0
            and policy.retry_reason(describe_error(error), idempotent=idempotent) is not None
        ):
            return
        if error is original:
            raise error
        raise error from original

    @staticmethod
    def first_attempt(endpoint: Endpoint, try_at: float | None, call_at: float | None) -> Attempt:
        """Try 1 as the retry runner sees it: its deadline, whether the per-try timeout
        set it, and the endpoint it went to (previous hosts)."""
        deadline = None if try_at is None else Deadline(try_at)
        per_try = try_at is not None and try_at != call_at
        return Attempt(1, _NOTHING_EXCLUDED, deadline, endpoint=endpoint.authority, per_try=per_try)

    @staticmethod
    def call_deadline(call_at: float | None) -> Deadline | None:
        """The call's deadline, for the retries after a failed first try."""
        return None if call_at is None else Deadline(call_at)
