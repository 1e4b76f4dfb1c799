"""An immutable route table built from one RDS resource.

Built once per RouteConfiguration (everything compiled up front, bad input
refused with the failing field named); the request path only calls
:meth:`RouteTable.match`, which walks prepared matchers and never allocates
beyond its result.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from dataclasses import dataclass

from meshlib.errors import NoRouteError
from meshlib.routing.domains import DomainIndex
from meshlib.routing.matchers import CompiledRouteMatch
from meshlib.xds_client.resources import Route, RouteAction, RouteConfigResource, VirtualHost

_randrange = random.randrange


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The outcome of routing one request: which route, and the cluster picked."""

    virtual_host: str
    route: Route
    action: RouteAction
    cluster: str


class _ClusterChooser:
    """Picks the cluster of a route: fixed, or a weighted draw per request."""

    __slots__ = ("_cumulative", "_names", "_single", "_total")

    def __init__(self, action: RouteAction, where: str) -> None:
        self._single = action.cluster
        self._names: tuple[str, ...] = ()
        self._cumulative: list[int] = []
        self._total = 0
        if self._single is not None:
            if action.weighted_clusters:
                raise ValueError(f"{where}: both cluster and weighted_clusters are set")
            return
        if not action.weighted_clusters:
            raise ValueError(f"{where}: neither cluster nor weighted_clusters is set")
        names = []
        for i, choice in enumerate(action.weighted_clusters):
            if choice.weight < 0:
                raise ValueError(f"{where}.weighted_clusters[{i}].weight: negative")
            if choice.weight == 0:
                continue
            self._total += choice.weight
            self._cumulative.append(self._total)
            names.append(choice.name)
        if self._total == 0:
            raise ValueError(f"{where}.weighted_clusters: the weights sum to 0")
        self._names = tuple(names)

    def choose(self) -> str:
        if self._single is not None:
            return self._single
        draw = _randrange(self._total)
        return self._names[bisect.bisect_right(self._cumulative, draw)]


class _CompiledRoute:
    __slots__ = ("chooser", "match", "route")

    def __init__(self, route: Route, where: str) -> None:
        self.route = route
        self.match = CompiledRouteMatch(route.match, f"{where}.match")
        self.chooser = (
            _ClusterChooser(route.action, f"{where}.action") if route.action is not None else None
        )


class _CompiledVirtualHost:
    __slots__ = ("name", "routes")

    def __init__(self, vhost: VirtualHost, where: str) -> None:
        self.name = vhost.name
        self.routes = tuple(
            _CompiledRoute(route, f"{where}.routes[{i}]") for i, route in enumerate(vhost.routes)
        )


class RouteTable:
    """Virtual hosts by domain, each with its routes in order (first match wins)."""

    __slots__ = ("_domains", "name", "uses_headers")

    def __init__(self, config: RouteConfigResource) -> None:
        where = f"route_config {config.name!r}"
        vhosts = [
            _CompiledVirtualHost(vh, f"{where}.virtual_hosts[{i}]")
            for i, vh in enumerate(config.virtual_hosts)
        ]
        self.name = config.name
        self._domains: DomainIndex[_CompiledVirtualHost] = DomainIndex(
            [
                (vh.domains, compiled)
                for vh, compiled in zip(config.virtual_hosts, vhosts, strict=True)
            ],
            f"{where}.virtual_hosts",
        )
        #: Whether any route looks at headers (callers may skip building them).
        self.uses_headers = any(r.match.uses_headers for vh in vhosts for r in vh.routes)

    def match(
        self,
        authority: str,
        path: str,
        headers: Mapping[str, str],
        *,
        fallback_authority: str | None = None,
    ) -> RouteResult:
        """Route a request; ``path`` may carry a ``?query``. Raises NoRouteError."""
        vhost = self._domains.lookup(authority)
        if vhost is None and fallback_authority is not None:
            vhost = self._domains.lookup(fallback_authority)
        if vhost is None:
            raise NoRouteError(
                f"no virtual host in route config {self.name!r} matches authority {authority!r}"
            )
        bare_path, _, query = path.partition("?")
        for compiled in vhost.routes:
            if compiled.match.matches(bare_path, query, headers):
                chooser = compiled.chooser
                route = compiled.route
                if chooser is None or route.action is None:
                    raise NoRouteError(
                        f"route {route.name!r} in virtual host {vhost.name!r} does not forward"
                    )
                return RouteResult(vhost.name, route, route.action, chooser.choose())
        raise NoRouteError(
            f"no route in virtual host {vhost.name!r} (route config {self.name!r}) "
            f"matches path {bare_path!r}"
        )
