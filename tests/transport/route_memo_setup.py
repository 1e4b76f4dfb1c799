"""Setup for the route memo tests: see which requests took the full routing
(``_route``), a pass-through that answers from a real loopback upstream, and a
caller whose client passes non-mesh requests there (tests only)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

import meshlib
from meshlib.errors import XdsError
from meshlib.transport.http import AsyncMeshTransport, MeshTransport
from meshlib.transport.http_route_memo import Routed
from tests.transport.call_plan_setup import SYNC
from tests.transport.http_call_plan_setup import HttpCaller


def spy_on_routing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records the raw path (with query) of every request that took the full routing
    (target, snapshot, plan), i.e. was not answered from the route memo."""
    routed: list[str] = []
    route = MeshTransport._route
    async_route = AsyncMeshTransport._route

    def spy(self: MeshTransport, request: httpx.Request) -> Routed | httpx.Response:
        routed.append(request.url.raw_path.decode())
        return route(self, request)

    async def async_spy(
        self: AsyncMeshTransport, request: httpx.Request
    ) -> Routed | httpx.Response:
        routed.append(request.url.raw_path.decode())
        return await async_route(self, request)

    monkeypatch.setattr(MeshTransport, "_route", spy)
    monkeypatch.setattr(AsyncMeshTransport, "_route", async_spy)
    return routed


def _to_loopback(request: httpx.Request, port: int) -> httpx.Request:
    """``request`` aimed at 127.0.0.1:``port`` (its Host header kept)."""
    return httpx.Request(
        request.method,
        request.url.copy_with(host="127.0.0.1", port=port),
        headers=request.headers,
        content=request.content,
    )


class LoopbackPassthrough(httpx.BaseTransport):
    """The pass-through for non-mesh hosts: every request goes to one real upstream on
    loopback, whatever its host (the names in these tests resolve nowhere)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return self.inner.handle_request(_to_loopback(request, self.port))

    def close(self) -> None:
        self.inner.close()


class AsyncLoopbackPassthrough(httpx.AsyncBaseTransport):
    """The async twin of :class:`LoopbackPassthrough`."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return await self.inner.handle_async_request(_to_loopback(request, self.port))

    async def aclose(self) -> None:
        await self.inner.aclose()


class PassthroughCaller(HttpCaller):
    """An :class:`HttpCaller` whose client passes non-mesh requests to the upstream on
    ``outside_port`` (so "passed through" is an answer, not a DNS failure)."""

    def __init__(self, kind: str, mesh: meshlib.Mesh, target: str, outside_port: int) -> None:
        self.kind = kind
        self.base = f"http://{target}"
        self.closed = False
        self.client: Any = (
            mesh.http_client(timeout=10.0, transport=LoopbackPassthrough(outside_port))
            if kind == SYNC
            else mesh.async_http_client(
                timeout=10.0, transport=AsyncLoopbackPassthrough(outside_port)
            )
        )


def memo_size(caller: HttpCaller) -> int:
    """How many URLs the caller's transport remembers the routing of."""
    return len(caller.transport._memo._routed)


class DepartureHold:
    """A wildcard LDS watcher, registered after the mesh's own, that holds the feed's
    delivery thread once ``target`` has left the listener set (until ``release``).

    The feed tells wildcard watchers first, then the service's named watch: while
    held, the mesh's membership already lacks ``target`` but the service's state
    still holds its last snapshot -- the window a real client has too.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.holding = threading.Event()
        self.released = threading.Event()

    def on_changed(self, resources: Mapping[str, object]) -> None:
        if self.target not in resources and not self.released.is_set():
            self.holding.set()
            self.released.wait(5.0)

    def on_resource_error(self, error: XdsError) -> None:
        pass

    def on_ambient_error(self, error: XdsError) -> None:
        pass

    def release(self) -> None:
        self.released.set()
