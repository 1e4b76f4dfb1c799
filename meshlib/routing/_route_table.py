"""An immutable route table built from one RDS resource.

Built once per RouteConfiguration (matchers, actions, rewrites, header
mutations all compiled up front, bad input refused with the failing field
named); the request path calls :meth:`RouteTable.resolve` (or the older
:meth:`RouteTable.match`), which walks prepared matchers. Routes are tried in
order, first match wins; ``runtime_fraction`` uses one draw per request,
shared by every route evaluated, and the query string is parsed at most once.
Each virtual host keeps a :class:`~meshlib.routing._route_index.PathIndex`, so
only routes whose path matcher can match are evaluated (in order), which keeps
a lookup cheap with hundreds of routes and gives the linear scan's answer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from meshlib.errors import NoRouteError
from meshlib.matching.matchers import CompiledRouteMatch, HeaderSource, parse_query
from meshlib.routing._actions import ForwardAction, LevelMutations
from meshlib.routing._domains import DomainIndex
from meshlib.routing._header_mutation import CompiledMutation, MutationChain, ordered_chain
from meshlib.routing._rewrite import RedirectBuilder
from meshlib.routing._route_index import PathIndex
from meshlib.xds_client.resources import (
    DirectResponseAction,
    HeaderMutations,
    Route,
    RouteAction,
    RouteConfigResource,
    VirtualHost,
)

_randrange = random.randrange


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The outcome of routing one request: which route, and the cluster picked."""

    virtual_host: str
    route: Route
    action: RouteAction
    cluster: str


def _level(m: HeaderMutations, where: str) -> tuple[CompiledMutation, CompiledMutation]:
    return (
        CompiledMutation(
            m.request_headers_to_add, m.request_headers_to_remove, f"{where}.request_headers"
        ),
        CompiledMutation(
            m.response_headers_to_add, m.response_headers_to_remove, f"{where}.response_headers"
        ),
    )


class RouteEntry:
    """One route of a table, compiled: its match and exactly one of forward / redirect / direct
    response, or none (a non-forwarding route)."""

    __slots__ = (
        "direct_response",
        "forward",
        "local_headers",
        "match",
        "redirect",
        "results",
        "route",
    )

    def __init__(
        self,
        route: Route,
        vhost_level: tuple[CompiledMutation, CompiledMutation],
        config_level: tuple[CompiledMutation, CompiledMutation],
        most_specific_wins: bool,
        where: str,
    ) -> None:
        self.route = route
        self.match = CompiledRouteMatch(route.match, f"{where}.match")
        kinds = [route.action, route.redirect, route.direct_response]
        if sum(k is not None for k in kinds) > 1:
            raise ValueError(f"{where}: more than one of route, redirect, direct_response")
        levels = LevelMutations(
            _level(route.headers, where), vhost_level, config_level, most_specific_wins
        )
        prefix_length = self.match.prefix_length
        self.forward = (
            ForwardAction(route.action, levels, prefix_length, f"{where}.route")
            if route.action is not None
            else None
        )
        self.redirect = (
            RedirectBuilder(route.redirect, prefix_length, f"{where}.redirect")
            if route.redirect is not None
            else None
        )
        direct = route.direct_response
        if direct is not None and not 200 <= direct.status <= 599:
            raise ValueError(f"{where}.direct_response.status: {direct.status} not in 200..599")
        self.direct_response: DirectResponseAction | None = direct
        chain: MutationChain = ordered_chain(
            None, levels.route[1], levels.vhost[1], levels.config[1], most_specific_wins
        )
        #: Response header mutations for redirects and direct responses.
        self.local_headers = chain if chain else None
        #: :class:`RouteResult` by cluster name, built on first use (they are immutable).
        self.results: dict[str, RouteResult] = {}


class CompiledVirtualHost:
    """A virtual host's routes in order, and their path index."""

    __slots__ = ("index", "name", "routes")

    def __init__(
        self,
        vhost: VirtualHost,
        config_level: tuple[CompiledMutation, CompiledMutation],
        most_specific_wins: bool,
        where: str,
    ) -> None:
        self.name = vhost.name
        vhost_level = _level(vhost.headers, where)
        self.routes = tuple(
            RouteEntry(route, vhost_level, config_level, most_specific_wins, f"{where}.routes[{i}]")
            for i, route in enumerate(vhost.routes)
        )
        self.index = PathIndex([route.match for route in vhost.routes])


class RouteTable:
    """Virtual hosts by domain, each with its routes in order (first match wins)."""

    __slots__ = ("_domains", "deterministic", "name", "uses_headers")

    def __init__(self, config: RouteConfigResource) -> None:
        where = f"route_config {config.name!r}"
        config_level = _level(config.headers, where)
        wins = config.most_specific_header_mutations_wins
        vhosts = [
            CompiledVirtualHost(vh, config_level, wins, f"{where}.virtual_hosts[{i}]")
            for i, vh in enumerate(config.virtual_hosts)
        ]
        self.name = config.name
        self._domains: DomainIndex[CompiledVirtualHost] = DomainIndex(
            [
                (vh.domains, compiled)
                for vh, compiled in zip(config.virtual_hosts, vhosts, strict=True)
            ],
            f"{where}.virtual_hosts",
        )
        #: Whether any route looks at headers (callers may skip building them).
        self.uses_headers = any(
            r.match.uses_headers or (r.forward is not None and r.forward.hash_policy is not None)
            for vh in vhosts
            for r in vh.routes
        )
        #: Whether a route is chosen by authority and path alone (no header,
        #: query or runtime-fraction matching anywhere): the same request always
        #: matches the same route.
        self.deterministic = not self.uses_headers and not any(
            r.match.uses_query or r.match.fraction_per_million is not None
            for vh in vhosts
            for r in vh.routes
        )

    def resolve(
        self,
        authority: str,
        path: str,
        headers: HeaderSource,
        *,
        fallback_authority: str | None = None,
    ) -> tuple[str, RouteEntry]:
        """(virtual host name, matched route) for a request; ``path`` may carry a
        ``?query``. Raises NoRouteError when no virtual host or route matches."""
        vhost = self._domains.lookup(authority)
        if vhost is None and fallback_authority is not None:
            vhost = self._domains.lookup(fallback_authority)
        if vhost is None:
            raise NoRouteError(
                f"no virtual host in route config {self.name!r} matches authority {authority!r}"
            )
        bare_path, _, query = path.partition("?")
        params: dict[str, str] | None = None
        draw = -1
        routes = vhost.routes
        for position in vhost.index.candidates(bare_path):
            compiled = routes[position]
            match = compiled.match
            if match.uses_query and params is None:
                params = parse_query(query)
            if not match.matches(bare_path, headers, params):
                continue
            fraction = match.fraction_per_million
            if fraction is not None:
                if draw < 0:
                    draw = _randrange(1_000_000)
                if draw >= fraction:
                    continue
            return vhost.name, compiled
        raise NoRouteError(
            f"no route in virtual host {vhost.name!r} (route config {self.name!r}) "
            f"matches path {bare_path!r}"
        )

    def match(
        self,
        authority: str,
        path: str,
        headers: Mapping[str, str],
        *,
        fallback_authority: str | None = None,
    ) -> RouteResult:
        """Route a forwarded request and choose its cluster. Raises NoRouteError,
        also for a route that redirects or answers directly."""
        vhost, compiled = self.resolve(
            authority, path, headers, fallback_authority=fallback_authority
        )
        forward = compiled.forward
        route = compiled.route
        if forward is None or route.action is None:
            raise NoRouteError(f"route {route.name!r} in virtual host {vhost!r} does not forward")
        cluster = forward.choose().name
        result = compiled.results.get(cluster)
        if result is None:
            result = compiled.results[cluster] = RouteResult(vhost, route, route.action, cluster)
        return result
