"""httpx transports that route mesh hosts in-process and pass the rest through.

``http://HOST[:PORT]/...`` where ``HOST:PORT`` (port 80 by default) is a mesh
service is routed as Envoy would route it and sent to an endpoint picked by
the cluster's balancer, through one connection pool per endpoint. Any other
URL goes to the pass-through transport unchanged.

One request, in both twins (the shared steps live in
:mod:`meshlib.transport.http_routing`)::

    target_for ─► snapshot ─► decide (pure plan) ─┬─► LocalReply → httpx.Response
                                                  └─► mirrors (fire and forget)
                                                      _send_once (pick, build, observer)
                                                      finish_response (response headers)

``_send_once`` is "one try to one endpoint": ``_forward`` wraps it in the
route's and cluster's resilience (:func:`meshlib.resilience.call.resilient_call`:
deadline, faults, rate limit, breaker, thresholds, retries / hedging), each
try bounded by its budget and avoiding the hosts already tried. A plan that
compiles (:mod:`meshlib.transport.http_fast_path`, the common case) runs its
first try inline instead and hands a failed one to the same retry runner.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Mapping
from functools import partial
from typing import Any

import httpx

from meshlib.errors import RoutingError, ServiceNotReadyError
from meshlib.resilience.call import async_resilient_call, resilient_call
from meshlib.resilience.retry import Attempt
from meshlib.resilience.route_resilience import RouteResilience
from meshlib.routing.plan import ForwardPlan, LocalReply, MirrorTarget
from meshlib.routing.snapshot import ClusterState, ServiceSnapshot
from meshlib.transport.endpoint_pool import EndpointPool, LoopCloser
from meshlib.transport.errors import routing_error_as_httpx
from meshlib.transport.http_answers import note_retried
from meshlib.transport.http_fast_path import AsyncHttpBackend, HttpBackend, HttpFastRoutes
from meshlib.transport.http_resilience import (
    bounded_request,
    describe_error,
    describe_response,
    is_replayable,
    timed_out,
)
from meshlib.transport.http_route_memo import Routed, RouteMemo
from meshlib.transport.http_routing import (
    HttpRouting,
    finish_response,
    local_response,
    outgoing_request,
    replayable_body,
    request_headers,
)
from meshlib.transport.mirror import MirrorStats, TaskMirror, ThreadMirror
from meshlib.transport.pool_settings import (
    AsyncClusterHTTPTransport,
    ClusterHTTPTransport,
    httpx_pool_options,
)
from meshlib.transport.services import MeshServices
from meshlib.transport.try_observer import TryObserver
from meshlib.xds_client.resources import Endpoint

_NO_EXCLUSIONS: frozenset[str] = frozenset()


class MeshTransport(httpx.BaseTransport):
    """Sync httpx transport: mesh hosts are routed, the rest pass through.

    ``passthrough`` is the transport for non-mesh hosts (default: a plain
    ``httpx.HTTPTransport``); ``passthrough_hosts`` are never looked up in the
    mesh; ``pool_options`` are keyword arguments for each endpoint's
    ``httpx.HTTPTransport`` (limits, http2, retries, ...). An outcome a sidecar
    answers (injected abort, timeout, no healthy upstream, overflow, rate limit, no
    route, connect failure) is that response, its typed error in
    ``response.extensions["meshlib.error"]``; ``raise_mesh_errors=True`` raises that
    error instead (:mod:`meshlib.transport.http_answers`).
    """

    def __init__(
        self,
        mesh: MeshServices,
        *,
        passthrough: httpx.BaseTransport | None = None,
        passthrough_hosts: Iterable[str] = (),
        pool_options: Mapping[str, Any] | None = None,
        raise_mesh_errors: bool = False,
    ) -> None:
        self._routing = HttpRouting(
            mesh.directory, mesh.ready_timeout_s, passthrough_hosts, raise_mesh_errors
        )
        options = dict(pool_options or {})
        self._passthrough = passthrough or httpx.HTTPTransport(**options)
        self._pools: EndpointPool[ClusterHTTPTransport] = EndpointPool(
            lambda _endpoint, settings: ClusterHTTPTransport(
                settings.connect_timeout_s, **httpx_pool_options(options, settings)
            ),
            _close_all,
        )
        self._mirrors = ThreadMirror()
        self._fast = HttpFastRoutes()
        self._backend = HttpBackend(self._pools, self._forward, self._try)
        self._memo = RouteMemo(mesh.directory)

    def endpoint_pools(self) -> list[str]:
        """Endpoints (``host:port``) with an open connection pool."""
        return self._pools.authorities()

    def mirror_stats(self) -> MirrorStats:
        """Counters of shadow traffic sent by this transport."""
        return self._mirrors.stats

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        routed = self._memo.find(request) or self._route(request)
        if isinstance(routed, httpx.Response):
            return routed  # passed through, or the route's local reply
        plan, fast = routed.plan, routed.fast
        if fast is not None:
            response = fast.send(self._backend, request)
            return response if plan.response_headers is None else finish_response(plan, response)
        return finish_response(plan, self._forward(routed.snapshot, plan, request))

    def _route(self, request: httpx.Request) -> Routed | httpx.Response:
        """Target, snapshot, plan and compiled try of a request the memo has not
        seen (kept there when the plan is reusable); or its response when it is not
        forwarded."""
        routing = self._routing
        target = routing.target_for(request.url)
        if target is None:
            return self._passthrough.handle_request(request)
        snapshot = self._snapshot(target, request)
        if snapshot is None:
            return self._passthrough.handle_request(request)
        try:
            decision = routing.decide(snapshot, request)
        except RoutingError as exc:
            return routing.answer(exc, request)  # no route: Envoy's 404
        if type(decision) is LocalReply:
            return local_response(decision, request)
        assert isinstance(decision, ForwardPlan)
        if decision.mirrors:
            self._mirror(snapshot, decision, request)
        fast = self._fast.get(routing, snapshot, decision)
        return self._memo.keep(request, target, snapshot, decision, fast)

    def _forward(
        self, snapshot: ServiceSnapshot, plan: ForwardPlan, request: httpx.Request
    ) -> httpx.Response:
        """The plan's tries under the route's and the cluster's resilience."""
        route = snapshot.resilience.for_route(plan.route)
        try:
            return resilient_call(
                partial(self._try, snapshot, plan, request, route),
                route=route,
                cluster=snapshot.resilience_of(plan.cluster),
                headers=request_headers(request) if route.needs_headers(plan.cluster) else {},
                method=request.method,
                timeout_s=route.timeouts.http_timeout_s,
                describe_result=describe_response,
                describe_error=describe_error,
                replayable=is_replayable(request),
                name=snapshot.target,
            )
        except Exception as exc:
            return self._routing.answer(exc, request)

    def _try(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        request: httpx.Request,
        route: RouteResilience,
        attempt: Attempt,
    ) -> httpx.Response:
        """One try within its budget; a retriable answer's body is read (frees the connection)."""
        outgoing = bounded_request(request, attempt, route.timeouts.per_try_idle_timeout_s)
        try:
            response = self._send_once(snapshot, plan, outgoing, attempt)
        except httpx.TransportError as exc:
            note_retried(exc, attempt)
            if isinstance(exc, httpx.TimeoutException):
                mapped = timed_out(exc, attempt, _per_try_s(route))
                if mapped is not exc:
                    raise mapped from exc
            raise
        if route.retry is not None and response.status_code >= 400:
            response.read()
        return response

    def _snapshot(self, target: str, request: httpx.Request) -> ServiceSnapshot | None:
        routing = self._routing
        try:
            if not routing.membership.is_member(target, request.url.host):
                return None
            state = routing.directory.service(target)
            view = state.view
            if view is None:
                view = state.wait_settled(routing.timeout)
        except ServiceNotReadyError as exc:
            raise routing_error_as_httpx(exc, request) from exc
        snapshot = routing.snapshot_from(state, view, request)
        if snapshot is not None:
            self._pools.track(state)
        return snapshot

    def _send_once(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        request: httpx.Request,
        attempt: Attempt | None = None,
    ) -> httpx.Response:
        """One try to one endpoint: pick (avoiding the try's excluded hosts), build,
        send; the try is reported through the plan's observer."""
        routing = self._routing
        excluded = attempt.excluded_endpoints if attempt is not None else _NO_EXCLUSIONS
        cluster, endpoint = routing.pick(
            snapshot, plan.cluster, plan.request_hash, request, excluded
        )
        if attempt is not None:
            attempt.endpoint = endpoint.authority
        outgoing = outgoing_request(request, plan, endpoint)
        observer = routing.observer(snapshot.target, cluster)
        return self._exchange(cluster, endpoint, outgoing, observer, request)

    def _exchange(
        self,
        cluster: ClusterState,
        endpoint: Endpoint,
        outgoing: httpx.Request,
        observer: TryObserver[httpx.Request, int],
        request: httpx.Request,
    ) -> httpx.Response:
        """Send to ``endpoint``; the observer's done hook reports how it went."""
        pool = self._pools.get(endpoint, cluster.pool)
        report = observer.start(endpoint, request)
        try:
            response = pool.handle_request(outgoing)
        except BaseException as exc:
            report.failed(exc)
            raise
        report.finished(response.status_code)
        return response

    def _mirror(self, snapshot: ServiceSnapshot, plan: ForwardPlan, request: httpx.Request) -> None:
        if not replayable_body(request):
            self._mirrors.stats.count("skipped_streaming")
            return
        for mirror in plan.mirrors:
            self._mirrors.submit(partial(self._shadow, snapshot, plan, mirror, request))

    def _shadow(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        mirror: MirrorTarget,
        request: httpx.Request,
    ) -> None:
        routing = self._routing
        cluster, endpoint = routing.pick(snapshot, mirror.cluster, plan.request_hash, request)
        outgoing = outgoing_request(request, plan, endpoint, authority=mirror.authority)
        observer = routing.observer(snapshot.target, cluster, metrics=False)
        response = self._exchange(cluster, endpoint, outgoing, observer, request)
        try:
            response.read()
        finally:
            response.close()

    def close(self) -> None:
        self._mirrors.close()
        _close_all(self._pools.drain())
        self._passthrough.close()


class AsyncMeshTransport(httpx.AsyncBaseTransport):
    """Async twin of :class:`MeshTransport` (same options)."""

    def __init__(
        self,
        mesh: MeshServices,
        *,
        passthrough: httpx.AsyncBaseTransport | None = None,
        passthrough_hosts: Iterable[str] = (),
        pool_options: Mapping[str, Any] | None = None,
        raise_mesh_errors: bool = False,
    ) -> None:
        self._routing = HttpRouting(
            mesh.directory, mesh.ready_timeout_s, passthrough_hosts, raise_mesh_errors
        )
        options = dict(pool_options or {})
        self._passthrough = passthrough or httpx.AsyncHTTPTransport(**options)
        self._closer: LoopCloser[AsyncClusterHTTPTransport] = LoopCloser(_aclose)
        self._pools: EndpointPool[AsyncClusterHTTPTransport] = EndpointPool(
            lambda _endpoint, settings: AsyncClusterHTTPTransport(
                settings.connect_timeout_s, **httpx_pool_options(options, settings)
            ),
            self._closer.schedule,
        )
        self._mirrors = TaskMirror()
        self._fast = HttpFastRoutes()
        self._backend = AsyncHttpBackend(self._pools, self._closer, self._forward, self._try)
        self._memo = RouteMemo(mesh.directory)

    def endpoint_pools(self) -> list[str]:
        """Endpoints (``host:port``) with an open connection pool."""
        return self._pools.authorities()

    def mirror_stats(self) -> MirrorStats:
        """Counters of shadow traffic sent by this transport."""
        return self._mirrors.stats

    def handle_async_request(self, request: httpx.Request) -> Coroutine[Any, Any, httpx.Response]:
        """httpx awaits what this returns: for a request routed like an earlier one with
        a compiled try and no response header mutations, the try's own coroutine (an
        await level less, resumed at every wake-up of the network wait)."""
        routed = self._memo.find(request)
        if routed is not None and routed.fast is not None and routed.plan.response_headers is None:
            return routed.fast.send_async(self._backend, request)
        return self._handle(request, routed)

    async def _handle(self, request: httpx.Request, routed: Routed | None) -> httpx.Response:
        found = routed or await self._route(request)
        if isinstance(found, httpx.Response):
            return found  # passed through, or the route's local reply
        plan, fast = found.plan, found.fast
        if fast is not None:
            return finish_response(plan, await fast.send_async(self._backend, request))
        return finish_response(plan, await self._forward(found.snapshot, plan, request))

    async def _route(self, request: httpx.Request) -> Routed | httpx.Response:
        """The async twin of :meth:`MeshTransport._route`."""
        routing = self._routing
        target = routing.target_for(request.url)
        if target is None:
            return await self._passthrough.handle_async_request(request)
        snapshot = self._snapshot_at_once(target)
        if snapshot is None:
            snapshot = await self._snapshot(target, request)
            if snapshot is None:
                return await self._passthrough.handle_async_request(request)
        try:
            decision = routing.decide(snapshot, request)
        except RoutingError as exc:
            return routing.answer(exc, request)  # no route: Envoy's 404
        if type(decision) is LocalReply:
            return local_response(decision, request)
        assert isinstance(decision, ForwardPlan)
        if decision.mirrors:
            self._mirror(snapshot, decision, request)
        fast = self._fast.get(routing, snapshot, decision)
        return self._memo.keep(request, target, snapshot, decision, fast)

    async def _forward(
        self, snapshot: ServiceSnapshot, plan: ForwardPlan, request: httpx.Request
    ) -> httpx.Response:
        """The plan's tries under the route's and the cluster's resilience."""
        route = snapshot.resilience.for_route(plan.route)
        try:
            return await async_resilient_call(
                partial(self._try, snapshot, plan, request, route),
                route=route,
                cluster=snapshot.resilience_of(plan.cluster),
                headers=request_headers(request) if route.needs_headers(plan.cluster) else {},
                method=request.method,
                timeout_s=route.timeouts.http_timeout_s,
                describe_result=describe_response,
                describe_error=describe_error,
                replayable=is_replayable(request),
                name=snapshot.target,
            )
        except Exception as exc:
            return self._routing.answer(exc, request)

    async def _try(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        request: httpx.Request,
        route: RouteResilience,
        attempt: Attempt,
    ) -> httpx.Response:
        """One try within its budget; a retriable answer's body is read (frees the connection)."""
        outgoing = bounded_request(request, attempt, route.timeouts.per_try_idle_timeout_s)
        try:
            response = await self._send_once(snapshot, plan, outgoing, attempt)
        except httpx.TransportError as exc:
            note_retried(exc, attempt)
            if isinstance(exc, httpx.TimeoutException):
                mapped = timed_out(exc, attempt, _per_try_s(route))
                if mapped is not exc:
                    raise mapped from exc
            raise
        if route.retry is not None and response.status_code >= 400:
            await response.aread()
        return response

    def _snapshot_at_once(self, target: str) -> ServiceSnapshot | None:
        """The snapshot of a known member that has one (the common case, no await)."""
        directory = self._routing.directory
        if not directory.known_member(target):
            return None
        state = directory.service(target)
        view = state.view
        if type(view) is not ServiceSnapshot:
            return None
        self._pools.track(state)
        return view

    async def _snapshot(self, target: str, request: httpx.Request) -> ServiceSnapshot | None:
        routing = self._routing
        try:
            if not await routing.membership.is_member_async(target, request.url.host):
                return None
            state = routing.directory.service(target)
            view = state.view
            if view is None:
                view = await state.wait_settled_async(routing.timeout)
        except ServiceNotReadyError as exc:
            raise routing_error_as_httpx(exc, request) from exc
        snapshot = routing.snapshot_from(state, view, request)
        if snapshot is not None:
            self._pools.track(state)
        return snapshot

    async def _send_once(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        request: httpx.Request,
        attempt: Attempt | None = None,
    ) -> httpx.Response:
        """One try to one endpoint: pick (avoiding the try's excluded hosts), build,
        send; the try is reported through the plan's observer."""
        routing = self._routing
        excluded = attempt.excluded_endpoints if attempt is not None else _NO_EXCLUSIONS
        cluster, endpoint = routing.pick(
            snapshot, plan.cluster, plan.request_hash, request, excluded
        )
        if attempt is not None:
            attempt.endpoint = endpoint.authority
        outgoing = outgoing_request(request, plan, endpoint)
        observer = routing.observer(snapshot.target, cluster)
        return await self._exchange(cluster, endpoint, outgoing, observer, request)

    async def _exchange(
        self,
        cluster: ClusterState,
        endpoint: Endpoint,
        outgoing: httpx.Request,
        observer: TryObserver[httpx.Request, int],
        request: httpx.Request,
    ) -> httpx.Response:
        """Send to ``endpoint``; the observer's done hook reports how it went."""
        pool = self._pools.get(endpoint, cluster.pool)
        self._closer.bind_running()
        report = observer.start(endpoint, request)
        try:
            response = await pool.handle_async_request(outgoing)
        except BaseException as exc:
            report.failed(exc)
            raise
        report.finished(response.status_code)
        return response

    def _mirror(self, snapshot: ServiceSnapshot, plan: ForwardPlan, request: httpx.Request) -> None:
        if not replayable_body(request):
            self._mirrors.stats.count("skipped_streaming")
            return
        for mirror in plan.mirrors:
            self._mirrors.submit(partial(self._shadow, snapshot, plan, mirror, request))

    async def _shadow(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        mirror: MirrorTarget,
        request: httpx.Request,
    ) -> None:
        routing = self._routing
        cluster, endpoint = routing.pick(snapshot, mirror.cluster, plan.request_hash, request)
        outgoing = outgoing_request(request, plan, endpoint, authority=mirror.authority)
        observer = routing.observer(snapshot.target, cluster, metrics=False)
        response = await self._exchange(cluster, endpoint, outgoing, observer, request)
        try:
            await response.aread()
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self._mirrors.aclose()
        await self._closer.aclose_all(self._pools.drain())
        await self._passthrough.aclose()


def _per_try_s(route: RouteResilience) -> float | None:
    return route.retry.policy.per_try_timeout_s if route.retry is not None else None


def _close_all(transports: list[ClusterHTTPTransport]) -> None:
    for transport in transports:
        transport.close()


async def _aclose(transport: httpx.AsyncHTTPTransport) -> None:
    await transport.aclose()
