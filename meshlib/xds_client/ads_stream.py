"""The ADS call and the thread that keeps one open, reconnecting with backoff.

``AdsStream`` is one StreamAggregatedResources call: requests go in through a
queue the grpc call drains, responses come out to a callback. ``StreamRunner``
opens one stream at a time on its own daemon thread and, when a stream ends,
waits (:class:`~meshlib.xds_client.backoff.XdsBackoff`: gRPC's xDS schedule,
starting over after a stream that got a response) and opens the next.

Each new stream gets a fresh channel (and a subchannel of its own). A
long-lived grpc channel whose connection failed keeps reconnecting on grpc's
own backoff in the background, and a call started while it waits fails at once
without trying, so the two schedules would add up: a control plane back after
15 s could be reached 20 s later. With a fresh channel every retry is exactly
one connection attempt, made when the stream schedule says. The runner knows
nothing about resources: the client reacts to its three events.

Several servers (the bootstrap's ``xds_servers``, gRFC A71's order): each retry
starts at the first; a stream that ends without a response sends the next attempt
to the next server at once, and only a round in which no server answered waits on
the backoff (:class:`~meshlib.xds_client.server_order.ServerOrder`, the registration
client's rule too). Unlike A71, the fallback does not wait for an uncached resource: a
replica that died is left for the next one even when everything is cached, so
endpoint changes keep coming (A95's ``fallback_on_reachability_only``). A client on
a fallback server stays there until that stream ends.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from meshlib.observability.logging import get_logger
from meshlib.xds_client.backoff import XdsBackoff
from meshlib.xds_client.server_order import ServerOrder

log = get_logger(__name__)

_END = object()


class AdsStream:
    """One ADS call. ``send`` is thread-safe and harmless after the call ended."""

    def __init__(self, stub: Any, server_index: int = 0) -> None:
        self._stub = stub
        self.server_index = server_index  # which of the bootstrap's xds_servers
        self._requests: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._call: Any = None
        self._cancelled = False
        self._lock = threading.Lock()
        self.received_response = False

    def send(self, request: Any) -> None:
        self._requests.put(request)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            call = self._call
        if call is not None:
            call.cancel()
        self._requests.put(_END)

    def run(self, on_response: Callable[[Any], None]) -> None:
        """Open the call and hand each response to ``on_response`` until it ends.

        Raises grpc.RpcError when the call fails (CANCELLED after ``cancel()``).
        """
        with self._lock:
            if self._cancelled:
                return
            self._call = self._stub.StreamAggregatedResources(self._request_iter())
        try:
            for response in self._call:
                self.received_response = True
                on_response(response)
        finally:
            self._requests.put(_END)  # frees grpc's request-consuming thread

    def _request_iter(self) -> Iterator[Any]:
        while True:
            item = self._requests.get()
            if item is _END:
                return
            yield item


class StreamRunner:
    """Keeps one AdsStream open on a daemon thread until ``close()``.

    ``open_channel(index)`` opens a channel to server ``index`` of ``servers``; it is
    called once here for the first (so a bad server entry raises before any thread
    starts) and again for every retry.
    """

    def __init__(
        self,
        open_channel: Callable[[int], grpc.Channel],
        backoff: XdsBackoff,
        *,
        on_start: Callable[[AdsStream], None],
        on_response: Callable[[AdsStream, Any], None],
        on_end: Callable[[AdsStream, Exception | None], None],
        servers: int = 1,
    ) -> None:
        self._order = ServerOrder(servers)
        self._open_channel = open_channel
        self._channel: grpc.Channel | None = open_channel(0)
        self._backoff = backoff
        self._on_start = on_start
        self._on_response = on_response
        self._on_end = on_end
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._current: AdsStream | None = None
        self._thread = threading.Thread(target=self._run, name="xds-ads-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        self._closed.set()
        with self._lock:
            current = self._current
        if current is not None:
            current.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
        self._drop_channel()

    @property
    def server_index(self) -> int:
        """Which of the servers the current (or next) stream is on."""
        return self._order.index

    def _run(self) -> None:
        while True:
            stream = self._next_stream()
            if stream is None:
                return
            error = self._run_one(stream)
            if self._closed.is_set():
                return
            # Closed now, not after the wait: an idle broken channel would keep
            # reconnecting on grpc's own schedule meanwhile.
            self._drop_channel()
            self._on_end(stream, error)
            if self._order.advance(stream.received_response):
                continue  # A71: the next server in order, at once
            delay = self._backoff.delay_after_stream(stream.received_response)
            log.debug("xds_stream_retry", delay_s=round(delay, 3))
            if self._closed.wait(delay):
                return

    def _next_stream(self) -> AdsStream | None:
        """A stream on the current channel (a fresh one after a retry); None once closed."""
        while True:
            with self._lock:
                if self._closed.is_set():
                    return None
                try:
                    if self._channel is None:
                        self._channel = self._open_channel(self.server_index)
                except Exception:  # cannot happen for an entry that opened once; retry later
                    log.exception("xds_channel_failed")
                else:
                    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
                    self._current = AdsStream(stub, self.server_index)
                    return self._current
            if self._closed.wait(self._backoff.next_delay()):
                return None

    def _drop_channel(self) -> None:
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.close()

    def _run_one(self, stream: AdsStream) -> Exception | None:
        self._on_start(stream)
        try:
            stream.run(lambda response: self._on_response(stream, response))
        except grpc.RpcError as exc:
            return exc
        except Exception as exc:  # a bug must not kill the thread; report and retry
            log.exception("xds_stream_crashed")
            return exc
        return None
