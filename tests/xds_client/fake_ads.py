"""A small, real, scriptable ADS server for xDS client protocol tests.

It listens on 127.0.0.1 (port 0 unless told), records every DiscoveryRequest
and sends only what the test pushes: the test plays the control plane.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

RequestPredicate = Callable[[Any], bool]


class _Stream:
    def __init__(self) -> None:
        self.outgoing: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closed = threading.Event()


class FakeAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, port: int = 0) -> None:
        self._cond = threading.Condition()
        self.requests: list[Any] = []
        self._streams: list[_Stream] = []
        self._nonces = itertools.count(1)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        if self.port == 0:
            raise RuntimeError(f"FakeAds: cannot bind 127.0.0.1:{port}")
        self._server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- test side ----------------------------------------------------------

    def push(
        self,
        type_url: str,
        resources: Iterable[Any],
        version: str,
        *,
        nonce: str | None = None,
        raw: Iterable[Any] = (),
    ) -> str:
        """Send a SotW response to every open stream; return its nonce.

        ``resources`` are protobuf messages (packed here); ``raw`` are ready Any messages.
        """
        anys = [_pack(r) for r in resources]
        anys.extend(raw)
        nonce = nonce if nonce is not None else f"n{next(self._nonces)}"
        response = discovery_pb2.DiscoveryResponse(
            version_info=version, resources=anys, type_url=type_url, nonce=nonce
        )
        with self._cond:
            streams = [s for s in self._streams if not s.closed.is_set()]
        if not streams:
            raise AssertionError("FakeAds.push: no client stream is open")
        for stream in streams:
            stream.outgoing.put(response)
        return nonce

    def wait_for_request(
        self, predicate: RequestPredicate, *, timeout_s: float = 5.0, start: int = 0
    ) -> Any:
        """The first recorded request (from index ``start``) matching ``predicate``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for request in self.requests[start:]:
                    if predicate(request):
                        return request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "\n".join(_short(r) for r in self.requests[start:])
                    raise AssertionError(f"no matching request within {timeout_s}s; saw:\n{seen}")
                self._cond.wait(remaining)

    def wait_for_streams(self, count: int, *, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._streams) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} streams, have {len(self._streams)}")
                self._cond.wait(remaining)

    def stream_count(self) -> int:
        """How many ADS streams clients have opened so far (closed ones included)."""
        with self._cond:
            return len(self._streams)

    def request_count(self) -> int:
        with self._cond:
            return len(self.requests)

    def stop(self) -> None:
        with self._cond:
            for stream in self._streams:
                stream.closed.set()
        self._server.stop(grace=None).wait(5)

    # --- server side --------------------------------------------------------

    def StreamAggregatedResources(
        self, request_iterator: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[Any]:
        stream = _Stream()
        with self._cond:
            self._streams.append(stream)
            self._cond.notify_all()
        reader = threading.Thread(target=self._read, args=(request_iterator, stream), daemon=True)
        reader.start()
        try:
            while not stream.closed.is_set() and context.is_active():
                try:
                    yield stream.outgoing.get(timeout=0.05)
                except queue.Empty:
                    continue
        finally:
            stream.closed.set()

    def _read(self, request_iterator: Iterator[Any], stream: _Stream) -> None:
        try:
            for request in request_iterator:
                with self._cond:
                    self.requests.append(request)
                    self._cond.notify_all()
        except grpc.RpcError:
            pass
        finally:
            stream.closed.set()


def _pack(message: Any) -> Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


def _short(request: Any) -> str:
    nack = f" NACK({request.error_detail.message})" if request.error_detail.message else ""
    return (
        f"{request.type_url.rsplit('.', 1)[-1]} names={list(request.resource_names)} "
        f"version={request.version_info!r} nonce={request.response_nonce!r}{nack}"
    )
