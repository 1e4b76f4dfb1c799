"""RequestAuthentication ``jwksUri``: the control plane fetches each key set, keeps it,
refreshes it and sends it inline (``local_jwks``), as istiod does, so no data plane
fetches keys itself (grpcio, meshlib and Envoy get the same keys at the same time).

    keeper = JwksKeeper(on_change=push_again, refresh_s=1200, metrics=metrics)
    await keeper.prefetch(config)     # at start: the first fetch of every uri, bounded
    config = keeper.resolve(config)   # jwksUri rules get the keys held (new uris: fetched)
    task = asyncio.create_task(keeper.run())   # refreshes; on_change() when keys change
    keeper.status()                   # per uri: keys, fetched_at, last_error, next fetch

A uri is fetched when it first appears, then every ``refresh_s`` (default 20 minutes,
istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL). A failed fetch — unreachable, an HTTP
error, a document that is not a usable JSON Web Key Set (the error names the uri) —
keeps the last good keys, is logged (``jwks_fetch_failed``), counted
(``mesh_controlplane_jwks_fetches_total{result="error"}``) and shown in ``GET
/v1/config`` under ``jwks``, and is retried sooner (``RETRY_S``). A uri never fetched
yet is served :data:`~controlplane.translate.security_jwt.UNAVAILABLE_JWKS`: tokens are
refused (401) until its keys arrive, a request without a token passes as without keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import structlog

from controlplane.config.request_authentication import jwks_problem
from controlplane.event_wait import wait_event
from controlplane.model import MeshConfig

log = structlog.get_logger(__name__)

DEFAULT_REFRESH_S = 1200.0
RETRY_S = 30.0
FETCH_TIMEOUT_S = 5.0
MAX_DOCUMENT_BYTES = 1 << 20


class JwksMetrics(Protocol):
    def jwks_fetch(self, result: str) -> None: ...


@dataclass(slots=True)
class _Held:
    uri: str
    jwks: str = ""  # the last good key set ("" before the first good fetch)
    fetched_at: float | None = None  # wall clock of the last good fetch
    last_error: str | None = None
    due: float = 0.0  # monotonic time of the next fetch


def jwks_uris(config: MeshConfig) -> set[str]:
    return {
        rule.jwks_uri
        for policy in config.request_authentications
        for rule in policy.rules
        if rule.jwks_uri
    }


class JwksKeeper:
    """The key sets of every ``jwksUri`` in the config in force."""

    def __init__(
        self,
        on_change: Callable[[], None],
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        metrics: JwksMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if refresh_s <= 0:
            raise ValueError(f"--jwks-refresh {refresh_s:g}s: must be more than 0")
        self._on_change = on_change
        self.refresh_s = refresh_s
        self._retry_s = min(RETRY_S, refresh_s)
        self._metrics = metrics
        self._transport = transport
        self._held: dict[str, _Held] = {}
        self._wake = asyncio.Event()

    def resolve(self, config: MeshConfig) -> MeshConfig:
        """``config`` with each jwksUri rule's keys as held now; starts following new uris
        and forgets those no longer named."""
        uris = jwks_uris(config)
        for uri in uris - self._held.keys():
            self._held[uri] = _Held(uri)
            self._wake.set()
        for uri in self._held.keys() - uris:
            del self._held[uri]
        if not uris:
            return config
        policies = tuple(
            dataclasses.replace(
                policy,
                rules=tuple(
                    dataclasses.replace(rule, jwks=self._held[rule.jwks_uri].jwks)
                    if rule.jwks_uri
                    else rule
                    for rule in policy.rules
                ),
            )
            for policy in config.request_authentications
        )
        return dataclasses.replace(config, request_authentications=policies)

    async def prefetch(self, config: MeshConfig) -> None:
        """Fetch every uri of ``config`` once, each within :data:`FETCH_TIMEOUT_S` (at
        start: the first push carries real keys); failures are kept as for refreshes."""
        self.resolve(config)
        due = [held for held in self._held.values() if held.fetched_at is None]
        if due:
            async with self._client() as client:
                await asyncio.gather(*(self._fetch(client, held) for held in due))

    async def run(self) -> None:
        """Refresh what is due, sleep until the next is due or a new uri appears."""
        async with self._client() as client:
            while True:
                self._wake.clear()
                now = time.monotonic()
                due = [held for held in self._held.values() if held.due <= now]
                if due:
                    changed = await asyncio.gather(*(self._fetch(client, h) for h in due))
                    if any(changed):
                        self._on_change()
                    continue
                wait = min((h.due for h in self._held.values()), default=now + 3600) - now
                await wait_event(self._wake, max(wait, 0.01))

    def status(self) -> list[dict[str, Any]]:
        """Per uri, for ``GET /v1/config``."""
        now = time.monotonic()
        return [
            {
                "uri": held.uri,
                "keys": len(json.loads(held.jwks)["keys"]) if held.jwks else 0,
                "fetched_at": held.fetched_at,
                "last_error": held.last_error,
                "next_fetch_in_s": round(max(held.due - now, 0.0), 3),
            }
            for held in sorted(self._held.values(), key=lambda h: h.uri)
        ]

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=self._transport, timeout=FETCH_TIMEOUT_S, follow_redirects=True
        )

    async def _fetch(self, client: httpx.AsyncClient, held: _Held) -> bool:
        """One fetch of ``held``'s uri; True when its keys changed."""
        try:
            text = await _download(client, held.uri)
        except _FetchFailed as exc:
            held.last_error = str(exc)
            held.due = time.monotonic() + self._retry_s
            if self._metrics is not None:
                self._metrics.jwks_fetch("error")
            log.warning(
                "jwks_fetch_failed",
                uri=held.uri,
                error=str(exc),
                keeping="the last good keys" if held.jwks else "no keys yet: tokens refused",
            )
            return False
        if self._metrics is not None:
            self._metrics.jwks_fetch("ok")
        changed = text != held.jwks
        if held.uri not in self._held:  # dropped from the config while fetching
            return False
        held.jwks, held.fetched_at, held.last_error = text, time.time(), None
        held.due = time.monotonic() + self.refresh_s
        if changed:
            log.info("jwks_fetched", uri=held.uri, keys=len(json.loads(text)["keys"]))
        return changed


class _FetchFailed(Exception):
    """Why a uri gave no usable key set; the message names the uri."""


async def _download(client: httpx.AsyncClient, uri: str) -> str:
    """The canonical JSON of the key set at ``uri`` (_FetchFailed saying why not)."""
    try:
        async with client.stream("GET", uri, headers={"accept": "application/json"}) as answer:
            if answer.status_code != 200:
                raise _FetchFailed(f"jwksUri {uri}: HTTP {answer.status_code}")
            body = b""
            async for chunk in answer.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise _FetchFailed(f"jwksUri {uri}: larger than {MAX_DOCUMENT_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise _FetchFailed(f"jwksUri {uri}: {type(exc).__name__}: {exc}") from exc
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _FetchFailed(f"jwksUri {uri}: not UTF-8 text") from exc
    problem = jwks_problem(text)  # an IdP's enc keys are skipped, as meshlib does
    if problem is not None:
        raise _FetchFailed(f"jwksUri {uri}: the document {problem}")
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
