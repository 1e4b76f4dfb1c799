"""httpx transports that route mesh hosts in-process and pass the rest through.

``http://HOST[:PORT]/...`` where ``HOST:PORT`` (port 80 by default) is a mesh
service is routed as Envoy would route it and sent to an endpoint picked by
the cluster's balancer, through one connection pool per endpoint. Any other
URL goes to the pass-through transport unchanged.

One request, in both twins (the shared steps live in
:mod:`meshlib.transport.http_routing`)::

    target_for ─► snapshot ─► decide (pure plan) ─┬─► LocalReply → httpx.Response
                                                  └─► mirrors (fire and forget)
                                                      call plan (per route, cluster)
                                                      run_sync / run_async
                                                      finish_response (response headers)

Every forwarded request runs the one lifecycle
(:mod:`meshlib.resilience.call_plan`: deadline, faults, rate limit, breaker,
thresholds, tries, retries / hedging) through its compiled call plan, whose
HTTP adapter (:mod:`meshlib.transport.http_try`) makes each try: pick, bound,
build, send on the endpoint's transport, report.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

import httpx

from meshlib.errors import RoutingError, ServiceNotReadyError
from meshlib.resilience.call import run_async, run_sync
from meshlib.routing.plan import ForwardPlan, LocalReply
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.transport.endpoint_pool import EndpointPool, LoopCloser
from meshlib.transport.errors import routing_error_as_httpx
from meshlib.transport.http_route_memo import Routed, RouteMemo
from meshlib.transport.http_routing import (
    HttpRouting,
    finish_response,
    local_response,
    replayable_body,
)
from meshlib.transport.http_try import HttpPlans
from meshlib.transport.mirror import MirrorStats, TaskMirror, ThreadMirror
from meshlib.transport.pool_settings import (
    AsyncClusterHTTPTransport,
    ClusterHTTPTransport,
    httpx_pool_options,
    shared_default_tls,
)
from meshlib.transport.services import MeshServices


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
        self._passthrough = passthrough or httpx.HTTPTransport(**shared_default_tls(options))
        self._pools: EndpointPool[ClusterHTTPTransport] = EndpointPool(
            lambda _endpoint, settings: ClusterHTTPTransport(
                settings.connect_timeout_s, **httpx_pool_options(options, settings)
            ),
            _close_all,
        )
        self._mirrors = ThreadMirror()
        self._plans = HttpPlans(self._pools)
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
        plan = routed.plan
        response = run_sync(routed.compiled, (request, plan))
        return response if plan.response_headers is None else finish_response(plan, response)

    def _route(self, request: httpx.Request) -> Routed | httpx.Response:
        """Target, snapshot, plan and call plan of a request the memo has not
        seen (kept there when the plan is reusable); or its response when it is not
        forwarded."""
        routing = self._routing
        target = routing.target_for(request.url)
        if target is None:
            try:
                return self._passthrough.handle_request(request)
            except httpx.ConnectError as exc:
                routing.raise_passed_through(exc, request)
                raise
        snapshot = self._snapshot(target, request)
        if snapshot is None:
            try:
                return self._passthrough.handle_request(request)
            except httpx.ConnectError as exc:
                routing.raise_passed_through(exc, request)
                raise
        try:
            decision = routing.decide(snapshot, request)
        except RoutingError as exc:
            return routing.answer(exc, request)  # no route: Envoy's 404
        if type(decision) is LocalReply:
            return local_response(decision, request)
        assert isinstance(decision, ForwardPlan)
        if decision.mirrors:
            self._mirror(snapshot, decision, request)
        compiled = self._plans.get(routing, snapshot, decision)
        return self._memo.keep(request, target, snapshot, decision, compiled)

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

    def _mirror(self, snapshot: ServiceSnapshot, plan: ForwardPlan, request: httpx.Request) -> None:
        """Shadow ``request`` to each mirror: one try of (route, mirror cluster)'s plan."""
        if not replayable_body(request):
            self._mirrors.stats.count("skipped_streaming")
            return
        routing, plans = self._routing, self._plans
        self._mirrors.shadow(
            plan,
            lambda shadow: plans.get(routing, snapshot, shadow),
            lambda shadow: (request, shadow),
            None,
            _drain,
        )

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
        self._passthrough = passthrough or httpx.AsyncHTTPTransport(**shared_default_tls(options))
        self._closer: LoopCloser[AsyncClusterHTTPTransport] = LoopCloser(_aclose)
        self._pools: EndpointPool[AsyncClusterHTTPTransport] = EndpointPool(
            lambda _endpoint, settings: AsyncClusterHTTPTransport(
                settings.connect_timeout_s, **httpx_pool_options(options, settings)
            ),
            self._closer.schedule,
        )
        self._mirrors = TaskMirror()
        self._plans = HttpPlans(self._pools, self._closer)
        self._memo = RouteMemo(mesh.directory)

    def endpoint_pools(self) -> list[str]:
        """Endpoints (``host:port``) with an open connection pool."""
        return self._pools.authorities()

    def mirror_stats(self) -> MirrorStats:
        """Counters of shadow traffic sent by this transport."""
        return self._mirrors.stats

    def handle_async_request(self, request: httpx.Request) -> Coroutine[Any, Any, httpx.Response]:
        """httpx awaits what this returns: for a request routed like an earlier one with
        no response header mutations, the lifecycle's own coroutine (an
        await level less, resumed at every wake-up of the network wait)."""
        routed = self._memo.find(request)
        if routed is not None and routed.plan.response_headers is None:
            return run_async(routed.compiled, (request, routed.plan))
        return self._handle(request, routed)

    async def _handle(self, request: httpx.Request, routed: Routed | None) -> httpx.Response:
        found = routed or await self._route(request)
        if isinstance(found, httpx.Response):
            return found  # passed through, or the route's local reply
        plan = found.plan
        return finish_response(plan, await run_async(found.compiled, (request, plan)))

    async def _route(self, request: httpx.Request) -> Routed | httpx.Response:
        """The async twin of :meth:`MeshTransport._route`."""
        routing = self._routing
        target = routing.target_for(request.url)
        if target is None:
            try:
                return await self._passthrough.handle_async_request(request)
            except httpx.ConnectError as exc:
                routing.raise_passed_through(exc, request)
                raise
        snapshot = self._snapshot_at_once(target)
        if snapshot is None:
            snapshot = await self._snapshot(target, request)
            if snapshot is None:
                try:
                    return await self._passthrough.handle_async_request(request)
                except httpx.ConnectError as exc:
                    routing.raise_passed_through(exc, request)
                    raise
        try:
            decision = routing.decide(snapshot, request)
        except RoutingError as exc:
            return routing.answer(exc, request)  # no route: Envoy's 404
        if type(decision) is LocalReply:
            return local_response(decision, request)
        assert isinstance(decision, ForwardPlan)
        if decision.mirrors:
            self._mirror(snapshot, decision, request)
        compiled = self._plans.get(routing, snapshot, decision)
        return self._memo.keep(request, target, snapshot, decision, compiled)

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

    def _mirror(self, snapshot: ServiceSnapshot, plan: ForwardPlan, request: httpx.Request) -> None:
        """The async twin of :meth:`MeshTransport._mirror`."""
        if not replayable_body(request):
            self._mirrors.stats.count("skipped_streaming")
            return
        routing, plans = self._routing, self._plans
        self._mirrors.shadow(
            plan,
            lambda shadow: plans.get(routing, snapshot, shadow),
            lambda shadow: (request, shadow),
            None,
            _adrain,
        )

    async def aclose(self) -> None:
        await self._mirrors.aclose()
        await self._closer.aclose_all(self._pools.drain())
        await self._passthrough.aclose()


def _drain(response: httpx.Response) -> None:
    """A shadow's answer, thrown away: read (frees the connection) and closed."""
    try:
        response.read()
    finally:
        response.close()


async def _adrain(response: httpx.Response) -> None:
    try:
        await response.aread()
    finally:
        await response.aclose()


def _close_all(transports: list[ClusterHTTPTransport]) -> None:
    for transport in transports:
        transport.close()


async def _aclose(transport: httpx.AsyncHTTPTransport) -> None:
    await transport.aclose()
