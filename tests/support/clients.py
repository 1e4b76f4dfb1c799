"""One calling interface over every client the side-by-side tests compare.

Kinds: ``meshlib-httpx`` and ``envoy-http`` call an HTTP service (the outcome of
a call is the ``served_by`` of the JSON answer, else ``"http STATUS"``);
``meshlib-grpc``, ``grpcio`` (grpc's own xDS client, in a subprocess) and
``envoy-grpc`` call ``/test.Echo/Who`` on a gRPC service (the outcome is the
backend's name, else ``"error: CODE"``). Headers become gRPC metadata.
Envoy is reached on its outbound port with the service as Host / :authority.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

import grpc
import httpx

import meshlib
from tests.support.echo_servers import WHO
from tests.support.envoy import EnvoySidecar
from tests.support.native_grpc import native_grpc_client

MESHLIB_HTTPX = "meshlib-httpx"
MESHLIB_GRPC = "meshlib-grpc"
GRPCIO = "grpcio"
ENVOY_HTTP = "envoy-http"
ENVOY_GRPC = "envoy-grpc"
HTTP_KINDS = (MESHLIB_HTTPX, ENVOY_HTTP)
GRPC_KINDS = (MESHLIB_GRPC, GRPCIO, ENVOY_GRPC)
CALL_TIMEOUT_S = 5.0


NativeCalls = Callable[[str, int, Mapping[str, str] | None, int], list[str]]


def _in_threads(call: Callable[[], str], count: int, workers: int) -> list[str]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda _: call(), range(count)))


class Caller(Protocol):
    kind: str

    def calls(
        self, count: int, headers: Mapping[str, str] | None = None, path: str = "/"
    ) -> list[str]:
        """``count`` calls; one outcome per call (a backend name or an error)."""
        ...

    def concurrent_calls(self, count: int, workers: int) -> list[str]:
        """``count`` calls, ``workers`` of them in flight at a time."""
        ...


class HttpCaller:
    """An httpx client aimed at one service (through meshlib, or Envoy by Host)."""

    def __init__(self, kind: str, client: httpx.Client, base_url: str, host: str = "") -> None:
        self.kind = kind
        self._client = client
        self._base_url = base_url
        self._host = host

    def request(
        self, method: str, path: str, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        sent = dict(headers or {})
        if self._host:
            sent["host"] = self._host
        return self._client.request(
            method, self._base_url + path, headers=sent, timeout=CALL_TIMEOUT_S
        )

    def calls(
        self, count: int, headers: Mapping[str, str] | None = None, path: str = "/"
    ) -> list[str]:
        return [self._outcome(path, headers) for _ in range(count)]

    def concurrent_calls(self, count: int, workers: int) -> list[str]:
        return _in_threads(lambda: self._outcome("/", None), count, workers)

    def _outcome(self, path: str, headers: Mapping[str, str] | None) -> str:
        try:
            response = self.request("GET", path, headers)
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}"
        if response.status_code != 200:
            return f"http {response.status_code}"
        return str(response.json()["served_by"])


class GrpcCaller:
    """A grpc.Channel (meshlib's, or a plain one to Envoy) calling ``/test.Echo/Who``."""

    def __init__(self, kind: str, channel: grpc.Channel) -> None:
        self.kind = kind
        self._who = channel.unary_unary(WHO, request_serializer=None, response_deserializer=None)

    def calls(
        self, count: int, headers: Mapping[str, str] | None = None, path: str = "/"
    ) -> list[str]:
        metadata = tuple((headers or {}).items())
        return [self._outcome(metadata) for _ in range(count)]

    def concurrent_calls(self, count: int, workers: int) -> list[str]:
        return _in_threads(lambda: self._outcome(()), count, workers)

    def _outcome(self, metadata: tuple[tuple[str, str], ...]) -> str:
        try:
            return bytes(self._who(b"", timeout=CALL_TIMEOUT_S, metadata=metadata)).decode()
        except grpc.RpcError as exc:
            return f"error: {exc.code().name}"


class NativeCaller:
    """grpcio's own xDS client (a subprocess) calling ``xds:///SERVICE``."""

    kind = GRPCIO

    def __init__(self, calls: NativeCalls, target: str) -> None:
        self._calls = calls
        self._target = target

    def calls(
        self, count: int, headers: Mapping[str, str] | None = None, path: str = "/"
    ) -> list[str]:
        return self._calls(self._target, count, headers, 1)

    def concurrent_calls(self, count: int, workers: int) -> list[str]:
        return self._calls(self._target, count, None, workers)


@contextmanager
def open_caller(
    kind: str, service: str, bootstrap: Path, envoy: Callable[[], EnvoySidecar]
) -> Iterator[Caller]:
    """A caller of ``kind`` for ``service`` (``HOST:PORT``); everything closed at the end.

    ``envoy`` is called only for the Envoy kinds (so Envoy starts only when used).
    """
    with ExitStack() as stack:
        caller: Caller
        if kind in (MESHLIB_HTTPX, MESHLIB_GRPC):
            mesh = stack.enter_context(meshlib.Mesh(bootstrap=str(bootstrap)))
            if kind == MESHLIB_HTTPX:
                client = stack.enter_context(mesh.http_client())
                caller = HttpCaller(kind, client, f"http://{service}")
            else:
                caller = GrpcCaller(kind, mesh.grpc_channel(f"xds:///{service}"))
        elif kind == GRPCIO:
            native = stack.enter_context(native_grpc_client(bootstrap))
            caller = NativeCaller(native.calls, f"xds:///{service}")
        elif kind == ENVOY_HTTP:
            client = stack.enter_context(httpx.Client())
            caller = HttpCaller(kind, client, f"http://127.0.0.1:{envoy().outbound_port}", service)
        elif kind == ENVOY_GRPC:
            options = [("grpc.default_authority", service)]
            address = f"127.0.0.1:{envoy().outbound_port}"
            channel = stack.enter_context(grpc.insecure_channel(address, options=options))
            caller = GrpcCaller(kind, channel)
        else:
            raise ValueError(f"unknown client kind {kind!r}")
        yield caller
