"""The route timeout over the response body: a try's answer is bounded until its last byte.

Envoy's route timeout (15 s unless the route says otherwise) spans until the
upstream response is complete, body included: when it expires after the
headers were sent, the stream is reset. httpx bounds each read, not the whole
body, so a body that stalls or trickles would outlive the route's deadline. A
try whose deadline is the call's (no per-try timeout: Envoy ignores that one
once the response started) gets its response's stream wrapped here, for sync
and async reads alike (``client.get`` reads it before returning; a streamed
response as the caller iterates it):

- when the body starts, the read timeout of the request sent (meshlib's own copy
  of the timeouts, made by :func:`~meshlib.transport.http_resilience.bound_request`)
  is cut to what is left, so a body that stalls from its start ends at the deadline
  (httpcore reads it when the body starts; otherwise the next check ends it);
- after each chunk, a passed deadline ends the body (a trickle cannot outlive it);
- either way the read fails with :class:`httpx.ReadTimeout` naming the route timeout,
  and closing the stream closes the connection (the reset).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Final

import httpx

from meshlib.resilience.deadline import Deadline
from meshlib.resilience.retry import Attempt

#: Below this many seconds left, an httpx timeout is the deadline's doing.
_SLACK_S: Final = 0.001


class RouteTimedBody(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body read within ``deadline`` (see the module doc); ``sent``: the
    request as sent to the endpoint (its timeouts are meshlib's own copy)."""

    __slots__ = ("_deadline", "_sent", "_stream")

    def __init__(self, stream: object, deadline: Deadline, sent: httpx.Request) -> None:
        self._stream = stream
        self._deadline = deadline
        self._sent = sent

    def _expired(self) -> httpx.ReadTimeout:
        return httpx.ReadTimeout(
            "route timeout: the response body did not complete before the request's deadline "
            "(the route timeout covers the whole response, body included); reading from "
            f"{self._sent.url.netloc.decode()} was stopped and its connection closed",
            request=self._sent,
        )

    def _start(self) -> None:
        """Cut the read timeout to what is left before the first read."""
        left = max(self._deadline.remaining(), _SLACK_S)
        timeouts = self._sent.extensions.get("timeout")
        if isinstance(timeouts, dict):
            read = timeouts.get("read")
            if read is None or read > left:
                timeouts["read"] = left

    def _late(self) -> bool:
        """Whether an httpx timeout of a read is the deadline's doing."""
        return self._deadline.remaining() <= _SLACK_S

    def __iter__(self) -> Iterator[bytes]:
        stream = self._stream
        assert isinstance(stream, httpx.SyncByteStream)
        self._start()
        deadline = self._deadline
        chunks = iter(stream)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except httpx.TimeoutException as error:
                if self._late():
                    raise self._expired() from error
                raise
            if deadline.expired():
                raise self._expired()
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        stream = self._stream
        assert isinstance(stream, httpx.AsyncByteStream)
        self._start()
        deadline = self._deadline
        chunks = stream.__aiter__()
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except httpx.TimeoutException as error:
                if self._late():
                    raise self._expired() from error
                raise
            if deadline.expired():
                raise self._expired()
            yield chunk

    def close(self) -> None:
        stream = self._stream
        assert isinstance(stream, httpx.SyncByteStream)
        stream.close()

    async def aclose(self) -> None:
        stream = self._stream
        assert isinstance(stream, httpx.AsyncByteStream)
        await stream.aclose()


def bound_body(response: httpx.Response, attempt: Attempt, sent: httpx.Request) -> None:
    """Bound ``response``'s body by ``attempt``'s deadline when that is the call's
    (the route timeout, or the caller's deadline if sooner)."""
    deadline = attempt.deadline
    if deadline is not None and not attempt.per_try:
        response.stream = RouteTimedBody(response.stream, deadline, sent)


__all__ = ["RouteTimedBody", "bound_body"]
