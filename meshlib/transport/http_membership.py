"""Whether an httpx request is the mesh's, when the mesh may not know its services yet.

The rule (docs/api.md, "Membership"):

1. The mesh's service list is known: a ``HOST:PORT`` in it is routed through the
   mesh, any other passes through. DNS is never asked, so a mesh service whose
   name also resolves (a Kubernetes service, an ``/etc/hosts`` entry) is always
   the mesh's once the list is known.
2. Not known yet: wait for it, up to ``ready_timeout_s`` — unless the control plane
   is known unreachable (its ADS stream failed before the first list, or an earlier
   wait ran out), then not at all.
3. Still not known: a name that resolves in DNS passes through (the mesh being down
   must not break traffic that is not the mesh's); one that does not waits for the
   list for what is left of ``ready_timeout_s``, then fails with
   :class:`~meshlib.errors.ControlPlaneUnreachableError`.

DNS answers are cached briefly (:class:`DnsCache`); the async twin resolves with the
loop's ``getaddrinfo`` (a worker thread), never blocking the event loop.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Final

from meshlib.errors import ControlPlaneUnreachableError
from meshlib.observability.logging import get_logger
from meshlib.routing.directory import ServiceDirectory

log = get_logger(__name__)

_monotonic: Final = time.monotonic


class DnsCache:
    """Whether a host name resolves, remembered for ``ttl_s`` (bounded: once full,
    the oldest answers are dropped)."""

    def __init__(self, ttl_s: float = 5.0, max_names: int = 1024) -> None:
        self.ttl_s = ttl_s
        self.max_names = max_names
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[bool, float]] = {}

    def cached(self, host: str) -> bool | None:
        """The remembered answer for ``host``, or None when there is none (or it expired)."""
        found = self._answers.get(host)
        if found is None or found[1] <= _monotonic():
            return None
        return found[0]

    def resolves(self, host: str) -> bool:
        """Whether ``host`` resolves (blocking lookup on a cache miss)."""
        answer = self.cached(host)
        if answer is None:
            try:
                answer = bool(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM))
            except (OSError, UnicodeError):
                answer = False
            self._keep(host, answer)
        return answer

    async def resolves_async(self, host: str) -> bool:
        """:meth:`resolves` with the running loop's ``getaddrinfo`` (a worker thread)."""
        answer = self.cached(host)
        if answer is None:
            loop = asyncio.get_running_loop()
            try:
                answer = bool(await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM))
            except (OSError, UnicodeError):
                answer = False
            self._keep(host, answer)
        return answer

    def _keep(self, host: str, answer: bool) -> None:
        log.info("mesh_unknown_name_resolved", host=host, resolves=answer)
        with self._lock:
            answers = self._answers
            if host not in answers and len(answers) >= self.max_names:
                for oldest in list(answers)[: max(1, self.max_names // 8)]:
                    del answers[oldest]
            answers[host] = (answer, _monotonic() + self.ttl_s)


#: One cache for the process: DNS answers do not depend on the mesh asking.
DNS_NAMES: Final = DnsCache()


class HttpMembership:
    """The rule above for one transport's directory and wait."""

    def __init__(
        self, directory: ServiceDirectory, timeout: float, dns: DnsCache = DNS_NAMES
    ) -> None:
        self.directory = directory
        self.timeout = timeout
        self.dns = dns

    def is_member(self, target: str, host: str) -> bool:
        """Whether ``target`` (``HOST:PORT`` of ``host``) is routed through the mesh."""
        membership = self.directory.membership()
        names = membership.names
        if names is None:
            until = _monotonic() + self.timeout
            names = membership.wait(self.timeout, settle=True)
            if names is None:
                if self.dns.resolves(host):
                    return False
                names = membership.wait(max(0.0, until - _monotonic()))
                if names is None:
                    raise self._unreachable(target, host, membership.unreachable)
        return target in names

    async def is_member_async(self, target: str, host: str) -> bool:
        """The async twin of :meth:`is_member`."""
        membership = self.directory.membership()
        names = membership.names
        if names is None:
            until = _monotonic() + self.timeout
            names = await membership.wait_async(self.timeout, settle=True)
            if names is None:
                if await self.dns.resolves_async(host):
                    return False
                names = await membership.wait_async(max(0.0, until - _monotonic()))
                if names is None:
                    raise self._unreachable(target, host, membership.unreachable)
        return target in names

    def _unreachable(self, target: str, host: str, why: str | None) -> Exception:
        return ControlPlaneUnreachableError(
            f"service {target}: the mesh's service list has not arrived within "
            f"{self.timeout:g}s (control plane unreachable: {why or 'no answer'}) and "
            f"{host!r} does not resolve in DNS, so it can be neither routed nor passed through"
        )
