"""Route timeouts end a call in meshlib as in an Envoy sidecar on the same control
plane config, with slow real upstreams: the VirtualService ``timeout`` (504
``upstream request timeout``), ``perTryTimeout`` with retries, the caller's
``x-envoy-upstream-rq-timeout-ms`` (ignored by both), a response body still arriving when
the timeout passes, and the cap a route timeout puts on a gRPC call's deadline.

Waits are bounded ("well before the upstream's delay"), never timed exactly.
Envoy's router ignores ``timeout`` on a route with ``max_stream_duration``; the
sidecar's routes carry Istio's ``max_grpc_timeout`` instead (the first tests
failed before that).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import httpx
import pytest

import meshlib
from tests.resilience_e2e.harness import GRPC_PORT, HTTP_PORT, Doc, service, virtual_service
from tests.resilience_e2e.upstreams import WHO, Upstream, grpc_upstreams, http_upstreams
from tests.support.envoy import EnvoySidecar
from tests.traffic.harness import traffic_env

pytestmark = pytest.mark.integration

STALL_S = 5.0  # the slow upstreams' delay: every call must end well before it
STALL = f"stall {STALL_S}"
WELL_BEFORE_S = STALL_S / 2
ROUTE_TIMEOUT = {"timeout": "300ms"}
PER_TRY = {"timeout": "3s", "retries": {"attempts": 2, "perTryTimeout": "200ms",
                                        "retryOn": "gateway-error"}}  # fmt: skip
COMPARED = ("content-type", "server", "content-length")
TIMED_OUT = (504, b"upstream request timeout")
SYNC, ASYNC = "sync", "async"


def _docs(slow: int, retried: int, untimed: int, trickle: int, grpc_slow: int) -> list[Doc]:
    return [
        service("slow", HTTP_PORT, "HTTP", [slow]),
        virtual_service("slow", ROUTE_TIMEOUT),
        service("retried", HTTP_PORT, "HTTP", [retried]),
        virtual_service("retried", PER_TRY),
        service("untimed", HTTP_PORT, "HTTP", [untimed]),  # Istio's default: no timeout
        service("trickle", HTTP_PORT, "HTTP", [trickle]),
        virtual_service("trickle", ROUTE_TIMEOUT),
        service("grpcslow", GRPC_PORT, "GRPC", [grpc_slow]),
        virtual_service("grpcslow", ROUTE_TIMEOUT),
    ]


@contextmanager
def _trickling_upstream() -> Iterator[int]:
    """Answers 200 at once, then its body one byte every 0.25 s for STALL_S."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with closing(conn):
            try:
                conn.recv(65536)
                size = round(STALL_S / 0.25)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
                for _ in range(size):
                    if stop.wait(0.25):
                        return
                    conn.sendall(b"x")
            except OSError:
                return

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()


@dataclass
class Side:
    """Envoy and meshlib on one control plane and one config."""

    envoy: EnvoySidecar
    mesh: meshlib.Mesh
    http: httpx.Client
    slow: Upstream
    retried: Upstream
    untimed: Upstream
    grpc_slow: Upstream


@pytest.fixture(scope="module")
def side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    with (
        http_upstreams(["slow", "retried", "untimed"]) as (slow, retried, untimed),
        grpc_upstreams(["grpcslow"]) as (grpc_slow,),
        _trickling_upstream() as trickle,
    ):
        ports = (slow.port, retried.port, untimed.port, trickle, grpc_slow.port)
        workdir: Path = tmp_path_factory.mktemp("sidecar-timeouts")
        with traffic_env(workdir, _docs(*ports)) as env:
            bootstrap = env.bootstrap("meshlib-timeouts")
            with (
                meshlib.Mesh(bootstrap=str(bootstrap)) as mesh,
                mesh.http_client(timeout=10.0) as http,
            ):
                for host in ("slow", "retried", "untimed", "trickle"):
                    mesh.wait_ready(f"{host}:{HTTP_PORT}", timeout=15)
                mesh.wait_ready(f"grpcslow:{GRPC_PORT}", timeout=15)
                yield Side(env.envoy(), mesh, http, slow, retried, untimed, grpc_slow)


@dataclass
class Timed:
    response: httpx.Response
    elapsed_s: float

    def seen(self) -> tuple[int, bytes, dict[str, str | None]]:
        r = self.response
        return r.status_code, r.content, {h: r.headers.get(h) for h in COMPARED}


async def _timed(call: Callable[[], Awaitable[httpx.Response]]) -> Timed:
    started = time.monotonic()
    response = await call()
    return Timed(response, time.monotonic() - started)


async def _via_envoy(side: Side, host: str, headers: dict[str, str] | None = None) -> Timed:
    url = f"http://127.0.0.1:{side.envoy.outbound_port}/x"
    sent = {"host": f"{host}:{HTTP_PORT}", **(headers or {})}
    return await _timed(lambda: asyncio.to_thread(httpx.get, url, headers=sent, timeout=10.0))


async def _via_meshlib(
    side: Side, host: str, kind: str, headers: dict[str, str] | None = None
) -> Timed:
    url = f"http://{host}:{HTTP_PORT}/x"
    if kind == SYNC:
        return await _timed(lambda: asyncio.to_thread(side.http.get, url, headers=headers))
    async with side.mesh.async_http_client(timeout=10.0) as client:
        return await _timed(lambda: client.get(url, headers=headers))


@pytest.mark.parametrize("kind", [SYNC, ASYNC])
async def test_route_timeout_answers_504_from_both(side: Side, kind: str) -> None:
    side.slow.cue.reset(STALL)
    envoy = await _via_envoy(side, "slow")
    mine = await _via_meshlib(side, "slow", kind)
    for timed in (envoy, mine):
        assert timed.seen()[:2] == TIMED_OUT, timed.response.headers
        assert timed.elapsed_s < WELL_BEFORE_S
    assert mine.seen() == envoy.seen()
    told = [r.headers for r in side.slow.cue.requests()]
    assert told[0].get("x-envoy-expected-rq-timeout-ms") == "300"  # Envoy tells the upstream
    assert 0 < int(told[1]["x-meshlib-deadline-ms"]) <= 300  # and so does meshlib


@pytest.mark.parametrize("kind", [SYNC, ASYNC])
async def test_per_try_timeout_retries_then_answers(side: Side, kind: str) -> None:
    for call in (lambda: _via_envoy(side, "retried"), lambda: _via_meshlib(side, "retried", kind)):
        side.retried.cue.reset()
        side.retried.cue.push(STALL)  # the first try times out, the retry answers
        timed = await call()
        assert timed.response.status_code == 200, timed.response.content
        assert timed.elapsed_s < WELL_BEFORE_S
        assert side.retried.cue.count() == 2


@pytest.mark.parametrize("kind", [SYNC, ASYNC])
async def test_per_try_timeouts_use_every_retry_then_504(side: Side, kind: str) -> None:
    outcomes = []
    for call in (lambda: _via_envoy(side, "retried"), lambda: _via_meshlib(side, "retried", kind)):
        side.retried.cue.reset(STALL)
        timed = await call()
        assert timed.elapsed_s < WELL_BEFORE_S
        assert side.retried.cue.count() == 3  # the first try and both retries
        outcomes.append(timed.seen())
    assert outcomes[0][:2] == TIMED_OUT
    assert outcomes[1] == outcomes[0]


@pytest.mark.parametrize("kind", [SYNC, ASYNC])
async def test_the_callers_upstream_rq_timeout_header_is_ignored_by_both(
    side: Side, kind: str
) -> None:
    """Envoy (1.36 on) trusts no caller's x-envoy-* control headers unless the listener
    names internal addresses, and the sidecar's names none; meshlib reads none either."""
    asked = {"x-envoy-upstream-rq-timeout-ms": "100"}
    for call in (
        lambda: _via_envoy(side, "untimed", asked),
        lambda: _via_meshlib(side, "untimed", kind, asked),
    ):
        side.untimed.cue.reset("stall 0.5")
        timed = await call()
        assert timed.response.status_code == 200, timed.response.content


def _read_all(url: str, host: str | None, client: httpx.Client | None) -> str:
    """``"complete"``, or the httpx error that ended the body."""
    headers = {"host": host} if host else {}
    try:
        if client is None:
            httpx.get(url, headers=headers, timeout=10.0).read()
        else:
            client.get(url, headers=headers).read()
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "complete"


async def test_envoy_route_timeout_covers_the_response_body(side: Side) -> None:
    url = f"http://127.0.0.1:{side.envoy.outbound_port}/x"
    started = time.monotonic()
    ended = await asyncio.to_thread(_read_all, url, f"trickle:{HTTP_PORT}", None)
    assert ended == "RemoteProtocolError"  # the stream was reset mid-body
    assert time.monotonic() - started < WELL_BEFORE_S


async def _grpc_outcome(channel: grpc.aio.Channel, timeout: float) -> tuple[str, str, float]:
    started = time.monotonic()
    try:
        await channel.unary_unary(WHO)(b"", timeout=timeout)
    except grpc.aio.AioRpcError as error:
        return error.code().name, error.details() or "", time.monotonic() - started
    return "OK", "", time.monotonic() - started


@pytest.mark.parametrize("caller_timeout", [10.0, 0.1])
async def test_route_timeout_caps_a_grpc_deadline(side: Side, caller_timeout: float) -> None:
    """Both cut the call at the earlier of the caller's deadline and the route timeout
    and tell the upstream (grpc-timeout). meshlib ends it DEADLINE_EXCEEDED, as grpcio's
    xDS client does (gRFC A31); Envoy 1.40's router answers UNAVAILABLE "upstream
    request timeout" when its own timer fires first (envoyproxy/envoy#10184)."""
    cap = min(caller_timeout, 0.3)
    envoy_address = f"127.0.0.1:{side.envoy.outbound_port}"
    authority = [("grpc.default_authority", f"grpcslow:{GRPC_PORT}")]
    async with grpc.aio.insecure_channel(envoy_address, options=authority) as channel:
        side.grpc_slow.cue.reset(STALL)
        envoy = await _grpc_outcome(channel, caller_timeout)
    async with side.mesh.aio_grpc_channel(f"xds:///grpcslow:{GRPC_PORT}") as channel:
        mine = await _grpc_outcome(channel, caller_timeout)
    assert mine[0] == "DEADLINE_EXCEEDED"
    assert envoy[0] == "DEADLINE_EXCEEDED" or envoy[:2] == (
        "UNAVAILABLE",
        "upstream request timeout",
    )
    for _, _, elapsed in (envoy, mine):
        assert elapsed < WELL_BEFORE_S
    for seen in side.grpc_slow.cue.requests():
        assert seen.deadline_s is not None and seen.deadline_s <= cap
