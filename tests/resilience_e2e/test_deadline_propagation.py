"""A -> B -> C through meshlib: the caller's deadline reaches C, shrunk by what B
spent, over gRPC (B behind meshlib's server interceptor, sync and aio) and HTTP
(B reading ``x-meshlib-deadline-ms``); work whose deadline passed is not started."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest

from meshlib.resilience.deadline import deadline_scope, incoming_deadline_scope, remaining_time
from meshlib.transport.grpc_server import AioDeadlineServerInterceptor, DeadlineServerInterceptor
from tests.resilience_e2e.harness import GRPC_PORT, HTTP_PORT, MeshEnv, mesh_env, service
from tests.resilience_e2e.upstreams import WHO, Upstream, grpc_upstreams, http_upstreams

pytestmark = pytest.mark.integration


class HopB:
    """B's behaviour: optionally sleep, then call C through the mesh (sync)."""

    def __init__(self) -> None:
        self.env: MeshEnv | None = None
        self.sleep_s = 0.0
        self.seen: list[float | None] = []
        self.done = threading.Event()  # set when the sync gRPC handler has finished

    def grpc_handler(self) -> Any:
        def who(request: bytes, context: grpc.ServicerContext) -> bytes:
            assert self.env is not None
            self.seen.append(remaining_time())
            try:
                time.sleep(self.sleep_s)
                with self.env.mesh.grpc_channel(f"xds:///hop-c:{GRPC_PORT}") as channel:
                    return bytes(channel.unary_unary(WHO, None, None)(b""))
            finally:
                self.done.set()

        return grpc.method_handlers_generic_handler(
            "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
        )

    def aio_handler(self) -> Any:
        async def who(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            assert self.env is not None
            self.seen.append(remaining_time())
            async with self.env.mesh.aio_grpc_channel(f"xds:///hop-c:{GRPC_PORT}") as channel:
                return bytes(await channel.unary_unary(WHO, None, None)(b""))

        return grpc.method_handlers_generic_handler(
            "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
        )


@contextmanager
def _sync_b(hop: HopB) -> Iterator[int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[DeadlineServerInterceptor()]
    )
    server.add_generic_rpc_handlers((hop.grpc_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait()


class _HttpB(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        hop: HopB = self.server.hop  # type: ignore[attr-defined]
        assert hop.env is not None
        with incoming_deadline_scope(list(self.headers.items())):
            hop.seen.append(remaining_time())
            answer = hop.env.http.get(f"http://web-c:{HTTP_PORT}/").json()
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _http_b(hop: HopB) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HttpB)
    server.daemon_threads = True
    server.hop = hop  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


Hops = tuple[MeshEnv, HopB, dict[str, Upstream]]


@pytest.fixture(scope="module")
def hops(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MeshEnv, HopB, dict[str, Upstream]]]:
    hop = HopB()
    with (
        grpc_upstreams(["hop-c"]) as (grpc_c,),
        http_upstreams(["web-c"]) as (http_c,),
        _sync_b(hop) as sync_b_port,
        _http_b(hop) as http_b_port,
    ):
        docs = [
            service("hop-b", GRPC_PORT, "GRPC", [sync_b_port]),
            service("hop-c", GRPC_PORT, "GRPC", [grpc_c.port]),
            service("web-b", HTTP_PORT, "HTTP", [http_b_port]),
            service("web-c", HTTP_PORT, "HTTP", [http_c.port]),
        ]
        with mesh_env(tmp_path_factory.mktemp("hops"), docs) as env:
            hop.env = env
            for target in (f"hop-b:{GRPC_PORT}", f"hop-c:{GRPC_PORT}", f"web-b:{HTTP_PORT}",
                           f"web-c:{HTTP_PORT}"):  # fmt: skip
                env.mesh.wait_ready(target, timeout=15)
            yield env, hop, {"grpc": grpc_c, "http": http_c}


def test_grpc_deadline_travels_a_to_b_to_c(
    hops: Hops,
) -> None:
    env, hop, c = hops
    hop.seen.clear()
    hop.sleep_s = 0.2
    c["grpc"].cue.reset()
    with env.mesh.grpc_channel(f"xds:///hop-b:{GRPC_PORT}") as channel:
        assert bytes(channel.unary_unary(WHO, None, None)(b"", timeout=2.0)) == b"hop-c"
    (at_b,) = hop.seen
    at_c = c["grpc"].cue.requests()[0].deadline_s
    assert at_b is not None and 1.5 < at_b <= 2.05
    assert at_c is not None and at_c <= at_b - 0.15  # B spent 0.2 s of the budget


def test_expired_work_is_not_started_downstream(
    hops: Hops,
) -> None:
    env, hop, c = hops
    hop.sleep_s = 0.5
    hop.done.clear()
    c["grpc"].cue.reset()
    with (
        env.mesh.grpc_channel(f"xds:///hop-b:{GRPC_PORT}") as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary(WHO, None, None)(b"", timeout=0.3)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert hop.done.wait(5)  # B woke up after its deadline: its call to C did not go out
    assert c["grpc"].cue.count() == 0


async def test_aio_deadline_travels_a_to_b_to_c(
    hops: Hops,
) -> None:
    _env, hop, c = hops
    hop.seen.clear()
    c["grpc"].cue.reset()
    server = grpc.aio.server(interceptors=[AioDeadlineServerInterceptor()])
    server.add_generic_rpc_handlers((hop.aio_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        # A calls the aio B directly; B's outgoing call goes through the mesh.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert bytes(await channel.unary_unary(WHO, None, None)(b"", timeout=2.0)) == b"hop-c"
    finally:
        await server.stop(None)
    at_c = c["grpc"].cue.requests()[0].deadline_s
    assert at_c is not None and 1.0 < at_c <= 2.05


def test_http_deadline_travels_a_to_b_to_c(
    hops: Hops,
) -> None:
    env, hop, c = hops
    hop.seen.clear()
    c["http"].cue.reset()
    with deadline_scope(2.0):
        answer = env.http.get(f"http://web-b:{HTTP_PORT}/")
    assert answer.status_code == 200
    (at_b,) = hop.seen
    at_c_ms = c["http"].cue.requests()[0].headers["x-meshlib-deadline-ms"]
    assert at_b is not None and 1.0 < at_b <= 2.0
    assert 0 < int(at_c_ms) <= at_b * 1000 + 1


def test_http_expired_deadline_is_answered_before_sending(
    hops: Hops,
) -> None:
    env, _hop, c = hops
    c["http"].cue.reset()
    with deadline_scope(0.0):
        answer = env.http.get(f"http://web-c:{HTTP_PORT}/")
    assert answer.status_code == 504  # as Envoy answers; the typed error kept with it
    assert isinstance(answer.extensions["meshlib.error"], httpx.TimeoutException)
    assert c["http"].cue.count() == 0
