"""Sub-channels by (``:authority``, endpoint) for the gRPC channels.

grpcio fixes ``:authority`` per channel, so a call that must carry another
authority (a ``host_rewrite``, or a mirror's ``-shadow`` host) goes through
a sub-channel made for that authority. Each authority has its own
:class:`EndpointPool`, so endpoints that leave EDS are closed for all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from meshlib.routing.connection_pool import PoolSettings
from meshlib.routing.service import ServiceState
from meshlib.transport.endpoint_pool import EndpointPool
from meshlib.xds_client.resources import Endpoint

T = TypeVar("T")


class SubChannels(Generic[T]):
    """One :class:`EndpointPool` per authority, made on first use."""

    def __init__(
        self,
        state: ServiceState,
        default_authority: str,
        factory: Callable[[Endpoint, str, PoolSettings], T],
        on_stale: Callable[[list[T]], None],
    ) -> None:
        self._state = state
        self._factory = factory
        self._on_stale = on_stale
        self._lock = threading.Lock()
        self.default = self._make(default_authority)
        self._pools: dict[str, EndpointPool[T]] = {default_authority: self.default}

    def _make(self, authority: str) -> EndpointPool[T]:
        pool: EndpointPool[T] = EndpointPool(
            lambda endpoint, settings: self._factory(endpoint, authority, settings),
            self._on_stale,
        )
        pool.track(self._state)
        return pool

    def get(self, endpoint: Endpoint, authority: str, settings: PoolSettings) -> T:
        """The sub-channel to ``endpoint`` that sends ``authority``, made with the
        cluster's connection-pool ``settings``."""
        pool = self._pools.get(authority)
        if pool is None:
            with self._lock:
                pool = self._pools.get(authority)
                if pool is None:
                    pool = self._make(authority)
                    self._pools[authority] = pool
        return pool.get(endpoint, settings)

    def drain(self) -> list[T]:
        """Every sub-channel, for the caller to close; the pools stop tracking."""
        with self._lock:
            pools = list(self._pools.values())
        channels: list[T] = []
        for pool in pools:
            channels.extend(pool.drain())
        return channels


class MethodCallables:
    """One grpc multicallable per (authority, endpoint, method path), made on first use.

    Shared by the sync and aio channels: a call reuses the multicallable of the
    sub-channel it was routed to; a sub-channel replaced for the same endpoint
    (new settings, or reopened) gets a fresh one. Bounded: endpoints come and go
    over a channel's life, so once full the older half is forgotten (an endpoint
    still in use gets a new multicallable on its next call).
    """

    __slots__ = ("_cache", "_deserializer", "_kind", "_serializer")

    MAX_CALLABLES = 4096

    def __init__(
        self,
        kind: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._kind = kind
        self._serializer = serializer
        self._deserializer = deserializer
        self._cache: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def get(self, sub: Any, authority: str, endpoint: str, path: str) -> Any:
        key = (authority, endpoint, path)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not sub:
            factory = getattr(sub, self._kind)
            callable_ = factory(
                path,
                request_serializer=self._serializer,
                response_deserializer=self._deserializer,
                _registered_method=True,
            )
            cache = self._cache
            if len(cache) >= self.MAX_CALLABLES:
                # The oldest first (dicts keep insertion order); list() copies at once,
                # so a call on another thread cannot change the dict under the loop.
                for old in list(cache)[: len(cache) // 2]:
                    cache.pop(old, None)
            cached = cache[key] = (sub, callable_)
        return cached[1]

    def __len__(self) -> int:
        return len(self._cache)
