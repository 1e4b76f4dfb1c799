"""A small etcd v3 client over etcd's JSON gRPC gateway (``/v3/...``), on httpx.

Keys and values travel base64-encoded; 64-bit numbers arrive as strings. One
member answers at a time; a member that cannot be reached (connect refused, reset,
timeout, or a 5xx such as "no leader" during an election) sends the call to the next
one, round after round, until ``retry_s`` is spent: then :class:`EtcdUnreachable`
names every endpoint. The client speaks to etcd 3.4 and later (the gateway is at
``/v3/`` from 3.4 on).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from controlplane.store.base import StoreError

REQUEST_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 1.0
RETRY_S = 6.0
ROUND_PAUSE_S = 0.2


class EtcdUnreachable(StoreError):
    """No etcd member answered."""


class EtcdRefused(StoreError):
    """A member answered with an error that retrying elsewhere cannot fix."""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that covers every key starting with ``prefix``."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode("ascii")


class EtcdClient:
    """Calls to one etcd cluster through any of its ``endpoints`` (``HOST:PORT``)."""

    def __init__(self, endpoints: Sequence[str], *, retry_s: float = RETRY_S) -> None:
        if not endpoints:
            raise ValueError("etcd: at least one endpoint")
        self.endpoints = tuple(endpoints)
        self._retry_s = retry_s
        self._current = 0
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        self._http = httpx.AsyncClient(timeout=timeout)

    @property
    def where(self) -> str:
        return ", ".join(self.endpoints)

    @property
    def member(self) -> str:
        """The member calls go to now."""
        return self.endpoints[self._current]

    def _url(self, index: int, path: str) -> str:
        return f"http://{self.endpoints[index]}/v3/{path}"

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``/v3/PATH`` on the first member that answers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_s
        last = "no attempt"
        while True:
            for _ in range(len(self.endpoints)):
                index = self._current
                try:
                    answer = await self._http.post(self._url(index, path), json=body)
                except httpx.HTTPError as exc:
                    last = f"{self.endpoints[index]}: {type(exc).__name__} {exc}".strip()
                else:
                    if answer.status_code < 500:
                        return _result(answer, path)
                    last = f"{self.endpoints[index]}: HTTP {answer.status_code} {answer.text[:200]}"
                self._current = (index + 1) % len(self.endpoints)
            if loop.time() >= deadline:
                raise EtcdUnreachable(f"etcd is unreachable at {self.where} (last: {last})")
            await asyncio.sleep(ROUND_PAUSE_S)

    async def watch(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The results of one watch stream on the current member (httpx.HTTPError,
        EtcdRefused when it ends); the caller moves on with :meth:`next_member`."""
        url = self._url(self._current, "watch")
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)
        async with self._http.stream("POST", url, json=body, timeout=timeout) as answer:
            if answer.status_code != 200:
                await answer.aread()
                raise EtcdRefused(f"etcd watch at {url}: HTTP {answer.status_code}")
            async for line in answer.aiter_lines():
                if not line.strip():
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise EtcdRefused(f"etcd watch at {url}: {message['error']}")
                yield message.get("result", {})

    def next_member(self) -> None:
        self._current = (self._current + 1) % len(self.endpoints)


def _result(answer: httpx.Response, path: str) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError as exc:
        raise EtcdRefused(f"etcd /v3/{path}: not JSON: {answer.text[:200]!r}") from exc
    if answer.status_code != 200 or not isinstance(data, dict):
        message = data.get("message") or data.get("error") if isinstance(data, dict) else data
        raise EtcdRefused(f"etcd /v3/{path}: HTTP {answer.status_code}: {message}")
    return data
