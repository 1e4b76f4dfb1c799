"""The first try of an httpx request, compiled once per plan and snapshot.

An :class:`HttpFastRoute` is a :class:`~meshlib.transport.compiled_route.CompiledPlan`
(why there is a fast path at all is said there) plus the HTTP parts: the
route timeout, the per-try idle timeout and how answers are judged. A request
whose plan compiles runs, inline and in the general path's order::

    deadline -> fault / rate-limit stages -> breaker -> budget + admission
      -> pick -> bounded request for the endpoint -> send -> report

A failed try, or an answer a retry condition matches, goes to the general
retry runner as try 1 (its body read first, to free the connection, as the
general path does). A plan that does not compile (header- or query-dependent
routing, mirrors, hashing, hedging), or a deadline already passed, takes the
general path (``MeshTransport._forward``). Sync and async share everything but
the send itself; the async send is cancelled at the try's deadline, as on the
general path. A request that ends in an error gets the transport's answer for it
(``HttpRouting.answer``: the sidecar's response, or the typed error raised).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from functools import partial
from typing import Any, Final, NamedTuple, TypeVar

import httpx

from meshlib.errors import RoutingError
from meshlib.resilience.call import (
    admit_first,
    admit_first_async,
    admitted,
    async_admitted,
    try_timeout_error,
)
from meshlib.resilience.deadline import Deadline, TryTimer
from meshlib.resilience.retry import (
    Attempt,
    FirstTry,
    RetryPolicy,
    async_run_with_retries,
    run_with_retries,
)
from meshlib.resilience.route_resilience import (
    RouteResilience,
)
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.routing.plan import ForwardPlan
from meshlib.routing.snapshot import ClusterState, ServiceSnapshot
from meshlib.transport.compiled_route import NO_HEADERS, CompiledPlan, Expired, compilable
from meshlib.transport.endpoint_pool import EndpointPool, LoopCloser
from meshlib.transport.errors import routing_error_as_httpx
from meshlib.transport.http_resilience import (
    bound_request,
    describe_error,
    describe_response,
    is_replayable,
    timed_out,
)
from meshlib.transport.http_routing import (
    FAST_HEADERS,
    HttpPlanCache,
    HttpRouting,
    outgoing_request,
    request_headers,
)
from meshlib.transport.pool_settings import AsyncClusterHTTPTransport, ClusterHTTPTransport
from meshlib.xds_client.resources import Endpoint

T = TypeVar("T")
_monotonic: Final = time.monotonic
# The endpoint pools' base sends: :meth:`HttpFastRoute.outgoing` applies their connect cap.
_send: Final = httpx.HTTPTransport.handle_request
_send_async: Final = httpx.AsyncHTTPTransport.handle_async_request

#: One try of the general path: (snapshot, plan, request, route, attempt) -> answer.
TryOnce = Callable[[ServiceSnapshot, ForwardPlan, httpx.Request, RouteResilience, Attempt], T]
#: The general path of a whole request: (snapshot, plan, request) -> answer.
Forward = Callable[[ServiceSnapshot, ForwardPlan, httpx.Request], T]


class HttpBackend(NamedTuple):
    """What a sync transport lends its compiled plans (they never read its members):
    its endpoint pools, its general path (a deadline on another clock) and its
    one-try send (the retries)."""

    pools: EndpointPool[ClusterHTTPTransport]
    forward: Forward[httpx.Response]
    try_once: TryOnce[httpx.Response]


class AsyncHttpBackend(NamedTuple):
    """The async twin of :class:`HttpBackend`, with the closer its pools drain to."""

    pools: EndpointPool[AsyncClusterHTTPTransport]
    closer: LoopCloser[AsyncClusterHTTPTransport]
    forward: Forward[Coroutine[Any, Any, httpx.Response]]
    try_once: TryOnce[Coroutine[Any, Any, httpx.Response]]


class HttpFastRoute(CompiledPlan):
    """One plan's compiled first try (see :class:`CompiledPlan`), with its HTTP parts."""

    __slots__ = (
        "checks_answers",
        "idle_s",
        "observer",
        "raw_gate",
        "retries",
        "routing",
        "timeout_s",
    )

    def __init__(
        self,
        routing: HttpRouting,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        route: RouteResilience,
        cluster: ClusterResilience,
        state: ClusterState,
    ) -> None:
        super().__init__(snapshot, plan, route, cluster, state)
        self.routing = routing
        #: Bound once: every try's load report and metrics (the per-try seam).
        self.observer = routing.observer(snapshot.target, state)
        self.timeout_s = route.timeouts.http_timeout_s
        self.idle_s = route.timeouts.per_try_idle_timeout_s
        retry = route.retry
        self.retries = retry is not None
        # Header conditions can make even a 2xx answer retriable.
        self.checks_answers = retry is not None and retry.checks_answers
        gate = self.header_gate  # as httpx keeps names (bytes): no header is decoded to test
        self.raw_gate = None if gate is None else frozenset(name.encode() for name in gate)

    @staticmethod
    def compile(
        routing: HttpRouting, snapshot: ServiceSnapshot, plan: ForwardPlan
    ) -> HttpFastRoute | None:
        """The compiled form of ``plan``, or None when its requests need the general path."""
        parts = compilable(snapshot, plan)
        return None if parts is None else HttpFastRoute(routing, snapshot, plan, *parts)

    # --- the steps sync and async share ------------------------------------------

    def headers(self, request: httpx.Request) -> Mapping[str, str]:
        gate = self.raw_gate
        if gate is None:
            return request_headers(request)
        if gate:
            if FAST_HEADERS:
                for _name, lower, _value in request.headers._list:
                    if lower in gate:
                        return request_headers(request)
            else:
                for key, _ in request.headers.raw:
                    if key.lower() in gate:
                        return request_headers(request)
        return NO_HEADERS

    def outgoing(
        self,
        request: httpx.Request,
        endpoint: Endpoint,
        try_at: float | None,
        pool: ClusterHTTPTransport | AsyncClusterHTTPTransport,
    ) -> httpx.Request:
        """The request for the first try: bounded by its budget and by the pool's
        connect timeout (so the pool's base send is called directly), aimed at
        ``endpoint``. Raises DeadlineExceeded when nothing is left."""
        remaining = None if try_at is None else self.remaining(try_at)
        bounded = bound_request(request, remaining, self.idle_s, pool.connect_timeout_s)
        return outgoing_request(bounded, self.plan, endpoint, owned=bounded is not request)

    def final(self, policy: RetryPolicy, idempotent: bool, response: httpx.Response) -> bool:
        """Whether an answer is the request's answer (no retry condition matches it)."""
        if policy.num_retries == 0 or (response.status_code < 400 and not self.checks_answers):
            return True
        return policy.retry_reason(describe_response(response), idempotent=idempotent) is None

    def try_error(self, error: Exception, attempt: Attempt) -> BaseException:
        """An httpx timeout that used up the try's budget, as meshlib's deadline error."""
        if isinstance(error, httpx.TimeoutException):
            return timed_out(error, attempt, self.per_try_s)
        return error

    # --- sync ----------------------------------------------------------------------

    def send(self, backend: HttpBackend, request: httpx.Request) -> httpx.Response:
        """One request; the response before the plan's response header mutations.
        The stages and the breaker (:meth:`enter`) guard all of its tries."""
        try:
            call_at = self.call_at(self.timeout_s, _monotonic())
        except Expired:
            return backend.forward(self.snapshot, self.plan, request)
        headers = self.headers(request)
        try:
            faulted = self.enter(headers)
            started = _monotonic()
            try:
                if faulted:  # a fault delay was slept: the route timeout starts after it
                    call_at = self.after_delay(self.timeout_s)
                response = self._tries(backend, request, headers, call_at)
            except BaseException as error:
                self.leave_with(faulted, started, error, describe_error)
                raise
            self.leave(faulted, started, response.status_code >= 500)
            return response
        except Exception as exc:
            return self.routing.answer(exc, request)

    def _tries(
        self,
        backend: HttpBackend,
        request: httpx.Request,
        headers: Mapping[str, str],
        call_at: float | None,
    ) -> httpx.Response:
        method = request.method
        policy = self.policy or self.policy_for(headers, method)
        idempotent = self.idempotent_methods.get(method)
        if idempotent is None:
            idempotent = self.idempotent_method(method)
        try_at = call_at if policy.per_try_timeout_s is None else self.try_at(policy, call_at)
        admission = self.cluster.admission
        if not self.start_call():
            admit_first(admission, self.budget, None if try_at is None else Deadline(try_at))
        # The request is active in the budget and its first try holds its slots.
        original: BaseException | None = None
        first: FirstTry[httpx.Response]
        try:
            try:
                endpoint = self.pick()
            except RoutingError as exc:
                raise routing_error_as_httpx(exc, request) from exc
            pool = backend.pools.get(endpoint, self.state.pool)
            outgoing = self.outgoing(request, endpoint, try_at, pool)
            report = self.observer.start(endpoint, request)
            try:
                try:
                    response = _send(pool, outgoing)
                except BaseException as error:
                    report.failed(error)
                    raise
                report.finished(response.status_code)
                if self.retries and response.status_code >= 400:
                    response.read()  # frees the connection; a reset here fails the try
            except Exception as error:
                original = error
                attempt = self.first_attempt(endpoint, try_at, call_at)
                first = FirstTry(attempt, error=self.try_error(error, attempt))
            else:
                status = response.status_code
                if (status < 400 and not self.checks_answers) or self.final(
                    policy, idempotent, response
                ):
                    self.end_call()
                    if admission.waiting:
                        admission.notify_freed()
                    return response
                first = FirstTry(self.first_attempt(endpoint, try_at, call_at), value=response)
        except BaseException:
            admission.end_call()
            raise
        admission.exit()  # the first try's slots; the request stays active while it retries
        return self._retried(backend, request, policy, idempotent, call_at, first, original)

    def _retried(
        self,
        backend: HttpBackend,
        request: httpx.Request,
        policy: RetryPolicy,
        idempotent: bool,
        call_at: float | None,
        first: FirstTry[httpx.Response],
        original: BaseException | None,
    ) -> httpx.Response:
        """Try 2 on, after a first try that was not the answer: its error raised when no
        retry condition matches it, else the general retry runner."""
        try:
            self.raise_unless_retriable(policy, idempotent, first.error, original, describe_error)
            return run_with_retries(
                admitted(
                    partial(backend.try_once, self.snapshot, self.plan, request, self.route),
                    self.cluster,
                ),
                policy, describe_result=describe_response, describe_error=describe_error,
                budget=self.budget, idempotent=idempotent, replayable=is_replayable(request),
                deadline=self.call_deadline(call_at), name=self.snapshot.target,
                first_try=first,
            )  # fmt: skip
        finally:
            self.budget.request_finished()

    # --- async ---------------------------------------------------------------------

    def send_async(
        self, backend: AsyncHttpBackend, request: httpx.Request
    ) -> Coroutine[Any, Any, httpx.Response]:
        """The async twin of :meth:`send`, as one coroutine: each await level would be
        resumed at every wake-up of the network wait, so the guards and the first try
        share a frame (the retries, rare, run in :meth:`_retried_async`)."""
        try:
            call_at = self.call_at(self.timeout_s, _monotonic())
        except Expired:
            return backend.forward(self.snapshot, self.plan, request)
        return self._send_async(backend, request, self.headers(request), call_at)

    async def _send_async(
        self,
        backend: AsyncHttpBackend,
        request: httpx.Request,
        headers: Mapping[str, str],
        call_at: float | None,
    ) -> httpx.Response:
        """Guards (:meth:`enter` / :meth:`leave`), then the first try as in :meth:`_tries`;
        the try as a whole (its body read included) is cut at its deadline."""
        try:
            if not self.stages or (headers is NO_HEADERS and self.faults_need_headers):
                faulted = self.enter(headers)
            else:
                faulted = await self.enter_async(headers)
            guarded_at = _monotonic()
            try:
                if faulted:  # a fault delay was slept: the route timeout starts after it
                    call_at = self.after_delay(self.timeout_s)
                method = request.method
                policy = self.policy or self.policy_for(headers, method)
                idempotent = self.idempotent_methods.get(method)
                if idempotent is None:
                    idempotent = self.idempotent_method(method)
                try_at = (
                    call_at if policy.per_try_timeout_s is None else self.try_at(policy, call_at)
                )
                admission = self.cluster.admission
                if not self.start_call():
                    deadline = None if try_at is None else Deadline(try_at)
                    await admit_first_async(admission, self.budget, deadline)
                # The request is active in the budget and its first try holds its slots.
                original: BaseException | None = None
                first: FirstTry[httpx.Response]
                answer: httpx.Response | None = None
                try:
                    try:
                        endpoint = self.pick()
                    except RoutingError as exc:
                        raise routing_error_as_httpx(exc, request) from exc
                    pool = backend.pools.get(endpoint, self.state.pool)
                    outgoing = self.outgoing(request, endpoint, try_at, pool)
                    backend.closer.bind_running()
                    report = self.observer.start(endpoint, request)
                    timer = None if try_at is None else TryTimer(try_at - _monotonic())
                    try:
                        try:
                            response = await _send_async(pool, outgoing)
                        except BaseException as error:
                            report.failed(error)
                            raise
                        report.finished(response.status_code)
                        if self.retries and response.status_code >= 400:
                            await response.aread()  # frees the connection; a reset fails the try
                    except asyncio.CancelledError as error:
                        if timer is None or not timer.fired():
                            raise
                        original = error
                        attempt = self.first_attempt(endpoint, try_at, call_at)
                        timeout = try_timeout_error(attempt, policy, self.snapshot.target)
                        first = FirstTry(attempt, error=timeout)
                    except Exception as error:
                        original = error
                        attempt = self.first_attempt(endpoint, try_at, call_at)
                        first = FirstTry(attempt, error=self.try_error(error, attempt))
                    else:
                        status = response.status_code
                        if (status < 400 and not self.checks_answers) or self.final(
                            policy, idempotent, response
                        ):
                            self.end_call()
                            if admission.waiting:
                                admission.notify_freed()
                            answer = response
                        else:
                            attempt = self.first_attempt(endpoint, try_at, call_at)
                            first = FirstTry(attempt, value=response)
                    finally:
                        if timer is not None:
                            timer.cancel()
                except BaseException:
                    admission.end_call()
                    raise
                if answer is None:
                    admission.exit()  # the first try's slots; the request stays active
                    answer = await self._retried_async(
                        backend, request, policy, idempotent, call_at, first, original
                    )
            except BaseException as error:
                self.leave_with(faulted, guarded_at, error, describe_error)
                raise
            self.leave(faulted, guarded_at, answer.status_code >= 500)
            return answer
        except Exception as exc:
            return self.routing.answer(exc, request)

    async def _retried_async(
        self,
        backend: AsyncHttpBackend,
        request: httpx.Request,
        policy: RetryPolicy,
        idempotent: bool,
        call_at: float | None,
        first: FirstTry[httpx.Response],
        original: BaseException | None,
    ) -> httpx.Response:
        """The async twin of :meth:`_retried`."""
        try:
            self.raise_unless_retriable(policy, idempotent, first.error, original, describe_error)
            return await async_run_with_retries(
                async_admitted(
                    partial(backend.try_once, self.snapshot, self.plan, request, self.route),
                    self.cluster,
                ),
                policy, describe_result=describe_response, describe_error=describe_error,
                budget=self.budget, idempotent=idempotent, replayable=is_replayable(request),
                deadline=self.call_deadline(call_at), name=self.snapshot.target,
                first_try=first,
            )  # fmt: skip
        finally:
            self.budget.request_finished()


class HttpFastRoutes:
    """A transport's compiled plans, per snapshot (replaced whole when it moves on).

    Only reusable plans are compiled (they come from the routing's plan cache); the
    table is bounded like that cache, so paths of high cardinality cannot grow it.
    """

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: (
            tuple[ServiceSnapshot, dict[int, tuple[ForwardPlan, HttpFastRoute | None]]] | None
        ) = None

    def get(
        self, routing: HttpRouting, snapshot: ServiceSnapshot, plan: ForwardPlan
    ) -> HttpFastRoute | None:
        if not plan.reusable:
            return None
        entry = self._entry
        if entry is None or entry[0] is not snapshot or len(entry[1]) >= HttpPlanCache.MAX_PLANS:
            entry = self._entry = (snapshot, {})  # bounded like the plans it compiles
        found = entry[1].get(id(plan))
        if found is not None and found[0] is plan:
            fast = found[1]
            if fast is None or fast.current():
                return fast
        fast = HttpFastRoute.compile(routing, snapshot, plan)
        entry[1][id(plan)] = (plan, fast)
        return fast
