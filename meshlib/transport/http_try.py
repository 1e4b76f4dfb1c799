"""The HTTP adapter of a call plan: one httpx try to one endpoint, bound per plan.

Every request to a mesh host runs the one lifecycle
(:mod:`meshlib.resilience.call_plan`, driven by :func:`~meshlib.resilience.call.run_sync`
/ :func:`~meshlib.resilience.call.run_async`); what HTTP adds is here and nowhere
else: read the request's headers only when the plan's stages or retry policy can
use them, pick (hash, previous hosts), bound the request by the try's budget
(timeouts, ``x-envoy-expected-rq-timeout-ms``, the cluster's connect timeout),
aim it at the endpoint, send it on the endpoint's own transport (its send is the
seam for connection concerns such as TLS), report through the plan's per-try
observer, read a retriable answer's body (frees the connection), map an httpx
timeout that used the try's budget to meshlib's deadline errors, and turn the
call's error into the sidecar's answer (:mod:`meshlib.transport.http_answers`).

A call is ``(request, forward plan)``: a plan is compiled per (snapshot, route,
cluster) and serves every request routed there (:class:`HttpPlans`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NoReturn, TypeAlias

import httpx

from meshlib.errors import RoutingError
from meshlib.resilience.call_plan import NO_HEADERS, CallPlan, TryAdapter, time_left
from meshlib.resilience.conditions import Outcome
from meshlib.resilience.retry import Attempt
from meshlib.routing.plan import ForwardPlan
from meshlib.routing.snapshot import ServiceSnapshot, pick_endpoint
from meshlib.transport._httpx_internals import header_named
from meshlib.transport.endpoint_pool import EndpointPool, LoopCloser
from meshlib.transport.errors import routing_error_as_httpx
from meshlib.transport.http_answers import note_retried
from meshlib.transport.http_body_deadline import bound_body
from meshlib.transport.http_resilience import (
    bound_request,
    describe_error,
    describe_response,
    is_replayable,
    timed_out,
)
from meshlib.transport.http_routing import (
    HttpPlanCache,
    HttpRouting,
    outgoing_request,
    request_headers,
)
from meshlib.transport.pool_settings import AsyncClusterHTTPTransport, ClusterHTTPTransport
from meshlib.transport.try_observer import TryReport
from meshlib.xds_client.resources import Endpoint

#: One HTTP call: the caller's request and its forward plan (rewrites, hash, mutations).
HttpCall: TypeAlias = tuple[httpx.Request, ForwardPlan]
HttpCallPlan: TypeAlias = CallPlan[HttpCall, httpx.Response]
HttpTryReport: TypeAlias = TryReport[httpx.Request, int]
Pools: TypeAlias = EndpointPool[ClusterHTTPTransport] | EndpointPool[AsyncClusterHTTPTransport]

_describe_response: Final = describe_response
_describe_error: Final = describe_error


class HttpTry(TryAdapter[HttpCall, httpx.Response]):
    """One plan's HTTP parts (see the module doc); ``closer``: the async pools' closer."""

    __slots__ = (
        "closer",
        "cluster_name",
        "idle_s",
        "observer",
        "per_try_s",
        "pools",
        "raw_gate",
        "reads_answers",
        "routing",
        "state",
        "target",
    )

    def __init__(
        self,
        routing: HttpRouting,
        snapshot: ServiceSnapshot,
        forward: ForwardPlan,
        pools: Pools,
        closer: LoopCloser[AsyncClusterHTTPTransport] | None,
    ) -> None:
        self.routing = routing
        self.pools = pools
        self.closer = closer
        self.target = snapshot.target
        self.cluster_name = forward.cluster
        route = snapshot.resilience.for_route(forward.route)
        self.state = state = snapshot.clusters.get(forward.cluster)
        #: Bound once: every try's load report and metrics (the per-try seam).
        self.observer = None if state is None else routing.observer(snapshot.target, state)
        self.idle_s = route.timeouts.per_try_idle_timeout_s
        retry = route.retry
        self.per_try_s = retry.policy.per_try_timeout_s if retry is not None else None
        self.reads_answers = retry is not None
        self.raw_gate: frozenset[bytes] | None = None

    @staticmethod
    def compile(
        routing: HttpRouting,
        snapshot: ServiceSnapshot,
        forward: ForwardPlan,
        pools: Pools,
        closer: LoopCloser[AsyncClusterHTTPTransport] | None = None,
    ) -> HttpCallPlan:
        """The plan of ``forward``'s (route, cluster) in ``snapshot``."""
        adapter = HttpTry(routing, snapshot, forward, pools, closer)
        route = snapshot.resilience.for_route(forward.route)
        plan: HttpCallPlan = CallPlan(
            route, snapshot.resilience_of(forward.cluster), forward.cluster, adapter,
            snapshot.target, timeout_s=route.timeouts.http_timeout_s,
        )  # fmt: skip
        gate = plan.header_gate  # as httpx keeps names (bytes): no header is decoded to test
        adapter.raw_gate = None if gate is None else frozenset(name.encode() for name in gate)
        return plan

    # --- what the lifecycle asks -------------------------------------------------

    def headers(self, call: HttpCall) -> Mapping[str, str]:
        request = call[0]
        gate = self.raw_gate
        if gate is None or header_named(request, gate):
            return request_headers(request)
        return NO_HEADERS

    def method(self, call: HttpCall) -> str | None:
        return call[0].method

    def replayable(self, call: HttpCall) -> bool:
        return is_replayable(call[0])

    def settled(self, value: httpx.Response) -> bool:
        return value.status_code < 400

    def describe_result(self, value: httpx.Response) -> Outcome:
        return _describe_response(value)

    def describe_error(self, error: BaseException) -> Outcome:
        return _describe_error(error)

    def answer(self, error: Exception, call: HttpCall) -> httpx.Response:
        return self.routing.answer(error, call[0])

    # --- one try -----------------------------------------------------------------

    def _outgoing(
        self, call: HttpCall, attempt: Attempt
    ) -> tuple[Endpoint, httpx.Request, ClusterHTTPTransport | AsyncClusterHTTPTransport]:
        """The endpoint, the request for it within the try's budget, and its pool."""
        request, forward = call
        state = self.state
        try:
            endpoint = pick_endpoint(
                state,
                self.target,
                self.cluster_name,
                forward.request_hash,
                attempt.excluded_endpoints,
            )
        except RoutingError as exc:
            raise routing_error_as_httpx(exc, request) from exc
        assert state is not None  # pick_endpoint refuses an unknown cluster
        attempt.endpoint = endpoint.authority
        # What the try has left is read before the pool is looked up: opening an
        # endpoint's first pool (its TLS context) is part of the try, not before it.
        remaining = None if attempt.deadline is None else time_left(attempt)
        pool = self.pools.get(endpoint, state.pool)
        bounded = bound_request(request, remaining, self.idle_s, pool.connect_timeout_s)
        outgoing = outgoing_request(bounded, forward, endpoint, owned=bounded is not request)
        return endpoint, outgoing, pool

    @staticmethod
    def _failed(
        error: BaseException, report: HttpTryReport, attempt: Attempt, per_try_s: float | None
    ) -> NoReturn:
        """Report a try that raised; raise its error as the retry rules read it (a
        timeout that used the try's budget is meshlib's deadline error)."""
        report.failed(error)
        if isinstance(error, httpx.TransportError):
            note_retried(error, attempt)
            if isinstance(error, httpx.TimeoutException):
                mapped = timed_out(error, attempt, per_try_s)
                if mapped is not error:
                    raise mapped from error
        raise error

    def send(self, call: HttpCall, attempt: Attempt) -> httpx.Response:
        endpoint, outgoing, pool = self._outgoing(call, attempt)
        assert self.observer is not None and isinstance(pool, ClusterHTTPTransport)
        report = self.observer.start(endpoint, call[0])
        try:
            response = pool.handle_request(outgoing)
        except BaseException as error:
            self._failed(error, report, attempt, self.per_try_s)
        report.finished(response.status_code)
        bound_body(response, attempt, outgoing)  # the route timeout covers the body
        if self.reads_answers and response.status_code >= 400:
            response.read()  # frees the connection; a reset here fails the try
        return response

    async def send_async(self, call: HttpCall, attempt: Attempt) -> httpx.Response:
        endpoint, outgoing, pool = self._outgoing(call, attempt)
        assert self.observer is not None and isinstance(pool, AsyncClusterHTTPTransport)
        assert self.closer is not None
        self.closer.bind_running()
        report = self.observer.start(endpoint, call[0])
        try:
            response = await pool.handle_async_request(outgoing)
        except BaseException as error:
            self._failed(error, report, attempt, self.per_try_s)
        report.finished(response.status_code)
        bound_body(response, attempt, outgoing)  # the route timeout covers the body
        if self.reads_answers and response.status_code >= 400:
            await response.aread()  # frees the connection; a reset here fails the try
        return response


class HttpPlans:
    """A transport's compiled plans, per snapshot (replaced whole when it moves on),
    one per (route, cluster); bounded like the routing's plan cache."""

    __slots__ = ("_closer", "_entry", "_pools")

    def __init__(
        self, pools: Pools, closer: LoopCloser[AsyncClusterHTTPTransport] | None = None
    ) -> None:
        self._pools = pools
        self._closer = closer
        self._entry: (
            tuple[ServiceSnapshot, dict[tuple[int, str], tuple[object, HttpCallPlan]]] | None
        ) = None

    def get(
        self, routing: HttpRouting, snapshot: ServiceSnapshot, forward: ForwardPlan
    ) -> HttpCallPlan:
        entry = self._entry
        if entry is None or entry[0] is not snapshot or len(entry[1]) >= HttpPlanCache.MAX_PLANS:
            entry = self._entry = (snapshot, {})
        key = (id(forward.route), forward.cluster)
        found = entry[1].get(key)
        if found is not None and found[0] is forward.route and found[1].current():
            return found[1]
        plan = HttpTry.compile(routing, snapshot, forward, self._pools, self._closer)
        entry[1][key] = (forward.route, plan)
        return plan


__all__ = ["HttpCall", "HttpCallPlan", "HttpPlans", "HttpTry"]
