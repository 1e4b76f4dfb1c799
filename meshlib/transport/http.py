"""httpx transports that route mesh hosts in-process and pass the rest through.

``http://HOST[:PORT]/...`` where ``HOST:PORT`` (port 80 by default) is a mesh
service is matched against its routes, sent to an endpoint picked by the
cluster's balancer (the URL rewritten to the endpoint, the Host header kept as
the service authority), through one connection pool per endpoint. Any other
URL goes to the pass-through transport unchanged. The sync and async twins
share :class:`HttpRouting` so they cannot drift.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from meshlib.errors import RoutingError, ServiceNotFoundError, ServiceNotReadyError
from meshlib.observability.metrics import client_metrics
from meshlib.routing.directory import ServiceDirectory, is_mesh_name
from meshlib.routing.service import ServiceState
from meshlib.routing.snapshot import ServiceFailure, ServiceSnapshot, ServiceView
from meshlib.transport.endpoint_pool import EndpointPool, LoopCloser
from meshlib.transport.errors import as_httpx_error
from meshlib.xds_client.resources import Endpoint

if TYPE_CHECKING:
    from meshlib.mesh import Mesh

_perf_counter = time.perf_counter


class HttpRouting:
    """The decisions both transports share: mesh or not, route, pick, rewrite, record."""

    def __init__(self, mesh: Mesh, passthrough_hosts: Iterable[str]) -> None:
        self.directory: ServiceDirectory = mesh.directory
        self.timeout = mesh.ready_timeout_s
        self.passthrough_hosts = frozenset(h.lower() for h in passthrough_hosts)
        self.metrics = client_metrics()

    def target_for(self, url: httpx.URL) -> str | None:
        """``HOST:PORT`` when ``url`` may be a mesh service; None to pass it through."""
        host = url.host
        if url.scheme != "http" or host in self.passthrough_hosts or not is_mesh_name(host):
            return None
        return f"{host}:{url.port or 80}"

    def snapshot_from(
        self, state: ServiceState, view: ServiceView, request: httpx.Request
    ) -> ServiceSnapshot | None:
        """The snapshot to route with; None when the service has just left the mesh."""
        if type(view) is ServiceSnapshot:
            return view
        assert isinstance(view, ServiceFailure)
        if view.error_type is ServiceNotFoundError and self.directory.known_non_member(
            state.target
        ):
            return None
        raise as_httpx_error(view.error(), request)

    def not_ready(self, error: ServiceNotReadyError, request: httpx.Request) -> Exception:
        return as_httpx_error(error, request)

    def pick(self, snapshot: ServiceSnapshot, request: httpx.Request) -> tuple[str, Endpoint]:
        authority = request.headers.get("host") or snapshot.target
        path = request.url.raw_path.decode("ascii", "replace")
        try:
            _result, cluster, endpoint = snapshot.route(authority, path, request.headers)
        except RoutingError as exc:
            raise as_httpx_error(exc, request) from exc
        return cluster.name, endpoint

    def record(
        self,
        started: float,
        request: httpx.Request,
        target: str,
        cluster: str,
        endpoint: Endpoint,
        status: int | None,
        error: BaseException | None,
    ) -> None:
        self.metrics.record_http(
            _perf_counter() - started,
            method=request.method,
            status_code=status,
            error_type=None if error is None else type(error).__qualname__,
            service=target,
            cluster=cluster,
            endpoint=endpoint.authority,
            server_address=request.url.host,
            server_port=request.url.port or 80,
        )


def endpoint_request(request: httpx.Request, endpoint: Endpoint) -> httpx.Request:
    """A shallow copy of ``request`` aimed at ``endpoint``; headers (Host) unchanged."""
    outgoing: httpx.Request = httpx.Request.__new__(httpx.Request)
    outgoing.__dict__.update(request.__dict__)
    outgoing.url = request.url.copy_with(host=endpoint.address, port=endpoint.port)
    return outgoing


class MeshTransport(httpx.BaseTransport):
    """Sync httpx transport: mesh hosts are routed, the rest pass through.

    ``passthrough`` is the transport for non-mesh hosts (default: a plain
    ``httpx.HTTPTransport``); ``passthrough_hosts`` are never looked up in the
    mesh; ``pool_options`` are keyword arguments for each endpoint's
    ``httpx.HTTPTransport`` (limits, http2, retries, ...).
    """

    def __init__(
        self,
        mesh: Mesh,
        *,
        passthrough: httpx.BaseTransport | None = None,
        passthrough_hosts: Iterable[str] = (),
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._routing = HttpRouting(mesh, passthrough_hosts)
        options = dict(pool_options or {})
        self._passthrough = passthrough or httpx.HTTPTransport(**options)
        self._pools: EndpointPool[httpx.HTTPTransport] = EndpointPool(
            lambda _endpoint: httpx.HTTPTransport(**options), _close_all
        )

    def endpoint_pools(self) -> list[str]:
        """Endpoints (``host:port``) with an open connection pool."""
        return self._pools.authorities()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        routing = self._routing
        target = routing.target_for(request.url)
        if target is None:
            return self._passthrough.handle_request(request)
        try:
            if not routing.directory.is_member(target, routing.timeout):
                return self._passthrough.handle_request(request)
            state = routing.directory.service(target)
            view = state.view
            if view is None:
                view = state.wait_settled(routing.timeout)
        except ServiceNotReadyError as exc:
            raise routing.not_ready(exc, request) from exc
        snapshot = routing.snapshot_from(state, view, request)
        if snapshot is None:
            return self._passthrough.handle_request(request)
        self._pools.track(state)
        cluster, endpoint = routing.pick(snapshot, request)
        pool = self._pools.get(endpoint)
        started = _perf_counter()
        try:
            response = pool.handle_request(endpoint_request(request, endpoint))
        except BaseException as exc:
            routing.record(started, request, target, cluster, endpoint, None, exc)
            raise
        routing.record(started, request, target, cluster, endpoint, response.status_code, None)
        return response

    def close(self) -> None:
        _close_all(self._pools.drain())
        self._passthrough.close()


class AsyncMeshTransport(httpx.AsyncBaseTransport):
    """Async twin of :class:`MeshTransport` (same options)."""

    def __init__(
        self,
        mesh: Mesh,
        *,
        passthrough: httpx.AsyncBaseTransport | None = None,
        passthrough_hosts: Iterable[str] = (),
        pool_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._routing = HttpRouting(mesh, passthrough_hosts)
        options = dict(pool_options or {})
        self._passthrough = passthrough or httpx.AsyncHTTPTransport(**options)
        self._closer: LoopCloser[httpx.AsyncHTTPTransport] = LoopCloser(_aclose)
        self._pools: EndpointPool[httpx.AsyncHTTPTransport] = EndpointPool(
            lambda _endpoint: httpx.AsyncHTTPTransport(**options), self._closer.schedule
        )

    def endpoint_pools(self) -> list[str]:
        """Endpoints (``host:port``) with an open connection pool."""
        return self._pools.authorities()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        routing = self._routing
        target = routing.target_for(request.url)
        if target is None:
            return await self._passthrough.handle_async_request(request)
        try:
            if not await routing.directory.is_member_async(target, routing.timeout):
                return await self._passthrough.handle_async_request(request)
            state = routing.directory.service(target)
            view = state.view
            if view is None:
                view = await state.wait_settled_async(routing.timeout)
        except ServiceNotReadyError as exc:
            raise routing.not_ready(exc, request) from exc
        snapshot = routing.snapshot_from(state, view, request)
        if snapshot is None:
            return await self._passthrough.handle_async_request(request)
        self._pools.track(state)
        cluster, endpoint = routing.pick(snapshot, request)
        pool = self._pools.get(endpoint)
        self._closer.bind_running()
        started = _perf_counter()
        try:
            response = await pool.handle_async_request(endpoint_request(request, endpoint))
        except BaseException as exc:
            routing.record(started, request, target, cluster, endpoint, None, exc)
            raise
        routing.record(started, request, target, cluster, endpoint, response.status_code, None)
        return response

    async def aclose(self) -> None:
        await self._closer.aclose_all(self._pools.drain())
        await self._passthrough.aclose()


def _close_all(transports: list[httpx.HTTPTransport]) -> None:
    for transport in transports:
        transport.close()


async def _aclose(transport: httpx.AsyncHTTPTransport) -> None:
    await transport.aclose()
