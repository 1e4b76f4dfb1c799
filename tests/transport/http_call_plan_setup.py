"""Setup for the HTTP call-plan tests: call a service published on a FakeXds feed
through the mesh's httpx clients (sync on a worker thread, or async), see the call
plans that served it, and a dripping upstream (tests only)."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

import meshlib
from meshlib.resilience.call_plan import CallPlan
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.transport.http import AsyncMeshTransport, MeshTransport
from meshlib.xds_client import resources as xds
from tests.transport.call_plan_setup import SYNC

ASYNC = "async"
HTTP_KINDS = pytest.mark.parametrize("kind", [SYNC, ASYNC])
FIVE_XX = frozenset({xds.RetryOn.FIVE_XX})
QUICK = xds.RetryBackOff(0.01, 0.02)


class HttpCaller:
    """One httpx flavour calling a mesh service: sync (on a worker thread) or async.

    The suites built on it compare the paths by the typed error a request ends in, so
    by default the client raises it (``raise_mesh_errors=True``);
    ``test_http_mesh_answers`` calls with ``False``, the clients' default.
    """

    def __init__(
        self, kind: str, mesh: meshlib.Mesh, target: str, *, raise_mesh_errors: bool = True
    ) -> None:
        self.kind = kind
        self.base = f"http://{target}"
        options: dict[str, Any] = {"timeout": 10.0, "raise_mesh_errors": raise_mesh_errors}
        self.client: Any = (
            mesh.http_client(**options) if kind == SYNC else mesh.async_http_client(**options)
        )
        self.closed = False

    @property
    def transport(self) -> MeshTransport | AsyncMeshTransport:
        transport = self.client._transport
        assert isinstance(transport, (MeshTransport, AsyncMeshTransport))
        return transport

    @property
    def plan(self) -> CallPlan[Any, Any]:
        """The call plan of the (only) route and cluster the requests used."""
        compiled = self.compiled()
        assert len(compiled) == 1, f"expected one call plan, found {len(compiled)}"
        return compiled[0]

    def compiled(self) -> list[CallPlan[Any, Any]]:
        """Every call plan the transport holds for its current snapshot."""
        entry = self.transport._plans._entry
        if entry is None:
            return []
        return [plan for _route, plan in entry[1].values()]

    @property
    def snapshot(self) -> ServiceSnapshot:
        entry = self.transport._plans._entry
        assert entry is not None
        return entry[0]

    async def request(
        self,
        method: str = "GET",
        path: str = "/",
        *,
        headers: dict[str, str] | None = None,
        content: Any = None,
        scope_s: float | None = None,
    ) -> httpx.Response:
        """The response, its body read; ``scope_s``: inside ``deadline_scope(scope_s)``."""
        url = self.base + path
        if self.kind == SYNC:

            def blocking() -> httpx.Response:
                if scope_s is None:
                    return self._sync_request(method, url, headers, content)
                with meshlib.deadline_scope(scope_s):
                    return self._sync_request(method, url, headers, content)

            return await asyncio.to_thread(blocking)
        if scope_s is None:
            return await self._async_request(method, url, headers, content)
        with meshlib.deadline_scope(scope_s):
            return await self._async_request(method, url, headers, content)

    def _sync_request(
        self, method: str, url: str, headers: dict[str, str] | None, content: Any
    ) -> httpx.Response:
        response: httpx.Response = self.client.request(
            method, url, headers=headers, content=content
        )
        return response

    async def _async_request(
        self, method: str, url: str, headers: dict[str, str] | None, content: Any
    ) -> httpx.Response:
        response: httpx.Response = await self.client.request(
            method, url, headers=headers, content=content
        )
        return response

    async def served_by(self, method: str = "GET", **kwargs: Any) -> str:
        """``"<name> <status>"`` of the upstream that answered."""
        response = await self.request(method, **kwargs)
        return f"{response.json()['served_by']} {response.status_code}"

    async def outcome(self, method: str = "GET", **kwargs: Any) -> str:
        """``"<name> <status>"``, or ``"error: <ExceptionType>"`` for an httpx error."""
        try:
            return await self.served_by(method, **kwargs)
        except httpx.HTTPError as error:
            return f"error: {type(error).__name__}"

    async def raised(self, method: str = "GET", **kwargs: Any) -> BaseException:
        try:
            response = await self.request(method, **kwargs)
        except Exception as error:
            return error
        raise AssertionError(f"the request succeeded: {response.status_code} {response.text}")

    def streamed(self, *chunks: bytes) -> Any:
        """A one-shot (non-replayable) body of ``chunks`` for this flavour."""
        if self.kind == SYNC:
            return iter(chunks)

        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return body()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.kind == SYNC:
            self.client.close()
        else:
            await self.client.aclose()


def assert_planned_http(caller: HttpCaller) -> None:
    """The requests ran through one call plan (one route and cluster)."""
    assert isinstance(caller.plan, CallPlan)


async def timed_request(caller: HttpCaller, **kwargs: Any) -> tuple[str, float]:
    started = time.monotonic()
    answer = await caller.outcome(**kwargs)
    return answer, time.monotonic() - started


class DripServer:
    """Answers every request slowly, one byte every ``gap_s`` (each read makes progress,
    so only a bound on the whole try can cut it short).

    ``mode`` ``"head"``: the status line and headers drip, then a 200 body;
    ``"body"``: a 503 head at once, then its body drips; ``"cut"``: a 503 head at
    once, then a tenth of its body and the connection is reset.
    """

    def __init__(self, mode: str, gap_s: float = 0.02, size: int = 100) -> None:
        self.mode, self.gap_s, self.size = mode, gap_s, size
        self.lock = threading.Lock()
        self.requests = 0
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def count(self) -> int:
        with self.lock:
            return self.requests

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for index in range(len(data)):
            if self.stopping.wait(self.gap_s):
                return
            conn.sendall(data[index : index + 1])

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    received += chunk
                with self.lock:
                    self.requests += 1
                body = b"x" * self.size
                if self.mode == "head":
                    head = b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"p" * self.size + b"\r\n"
                    self._drip(conn, head + b"content-length: 2\r\nconnection: close\r\n\r\n")
                    conn.sendall(b"ok")
                elif self.mode == "cut":
                    status = f"HTTP/1.1 503 Service Unavailable\r\ncontent-length: {self.size}\r\n"
                    conn.sendall(status.encode() + b"\r\n" + body[: self.size // 10])
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    status = f"HTTP/1.1 503 Service Unavailable\r\ncontent-length: {self.size}\r\n"
                    conn.sendall(status.encode() + b"connection: close\r\n\r\n")
                    self._drip(conn, body)
            except OSError:
                return

    def stop(self) -> None:
        self.stopping.set()
        self.acceptor.join(timeout=5)
        for thread in self.threads:
            thread.join(timeout=5)
        self.sock.close()


@contextmanager
def drip_server(mode: str) -> Iterator[DripServer]:
    server = DripServer(mode)
    try:
        yield server
    finally:
        server.stop()
