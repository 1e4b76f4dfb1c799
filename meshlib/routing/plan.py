"""The routing decision for one request, computed purely from a snapshot.

:func:`plan_request` matches the route and settles everything that does not
depend on the endpoint: the cluster (weighted draw), the outgoing path and
authority (rewrites), the request hash (hash policy), the header mutations
to apply, and which mirrors this request goes to. The transports then
*execute* the plan: pick an endpoint from the cluster with the plan's hash,
send one try, report the outcome, apply the response mutations. Redirects
and direct responses come back as a :class:`LocalReply` instead.
"""

from __future__ import annotations

from collections.abc import Callable

from meshlib.errors import NoRouteError
from meshlib.matching.matchers import HeaderSource
from meshlib.routing._hash_policy import ValuesOf, local_source_ip
from meshlib.routing._header_mutation import HeaderList, MutationChain
from meshlib.routing._rewrite import shadow_authority
from meshlib.routing._route_table import RouteEntry, RouteTable
from meshlib.xds_client.resources import Route, RouteAction

_NO_MIRRORS: tuple[MirrorTarget, ...] = ()


class MirrorTarget:
    """A shadow copy to send: the cluster and the (``-shadow``) authority."""

    __slots__ = ("authority", "cluster")

    def __init__(self, cluster: str, authority: str) -> None:
        self.cluster = cluster
        self.authority = authority

    def __repr__(self) -> str:
        return f"MirrorTarget({self.cluster!r}, {self.authority!r})"


class ForwardPlan:
    """A forwarded request's plan: everything but the endpoint."""

    __slots__ = (
        "action",
        "authority",
        "cluster",
        "host_rewritten",
        "mirrors",
        "path",
        "path_rewritten",
        "request_hash",
        "request_headers",
        "response_headers",
        "reusable",
        "route",
        "virtual_host",
    )

    def __init__(
        self,
        virtual_host: str,
        route: Route,
        action: RouteAction,
        cluster: str,
        path: str,
        authority: str,
        request_hash: int | None,
        request_headers: MutationChain | None,
        response_headers: MutationChain | None,
        mirrors: tuple[MirrorTarget, ...],
        path_rewritten: bool = False,
        host_rewritten: bool = False,
        reusable: bool = False,
    ) -> None:
        self.virtual_host = virtual_host
        self.route = route
        self.action = action
        self.cluster = cluster
        #: Outgoing raw path with query (rewritten when the route says so).
        self.path = path
        self.path_rewritten = path_rewritten
        self.host_rewritten = host_rewritten
        #: Outgoing Host / :authority (host_rewrite applied).
        self.authority = authority
        self.request_hash = request_hash
        #: Request header mutations to apply (None: none configured).
        self.request_headers = request_headers
        self.response_headers = response_headers
        self.mirrors = mirrors
        #: The same request (authority, path) always gets this very plan from this
        #: route table: no header, query or runtime-fraction matching, one cluster,
        #: no hash policy, no mirrors. Callers may reuse it while the table stands.
        self.reusable = reusable


class LocalReply:
    """A response made without forwarding (redirect or direct response)."""

    __slots__ = ("body", "headers", "route", "status")

    def __init__(self, route: Route, status: int, headers: HeaderList, body: bytes) -> None:
        self.route = route
        self.status = status
        self.headers = headers
        self.body = body


RoutingDecision = ForwardPlan | LocalReply


def plan_request(
    table: RouteTable,
    *,
    target: str,
    scheme: str,
    authority: str,
    path: str,
    headers: HeaderSource,
    values_of: ValuesOf,
    source_ip: Callable[[], str] = local_source_ip,
) -> RoutingDecision:
    """Route one request. ``path`` is the raw path with query; ``values_of``
    gives every value of a header (for hash policies). Raises NoRouteError."""
    vhost, compiled = table.resolve(authority, path, headers, fallback_authority=target)
    forward = compiled.forward
    if forward is None:
        return _local_reply(compiled, vhost, scheme, authority, path)
    chosen = forward.choose()
    out_path = path if forward.path_rewrite is None else forward.path_rewrite.apply(path)
    out_authority = authority
    if chosen.host_rewrite is not None:
        out_authority = chosen.host_rewrite
    if forward.host_rewrite is not None:  # Envoy: the route's rewrite runs after the cluster's
        out_authority = forward.host_rewrite
    request_hash = None
    policy = forward.hash_policy
    if policy is not None:
        query = path.partition("?")[2]
        request_hash = policy.compute(
            values_of, query, source_ip() if policy.uses_source_ip else ""
        )
    mirrors = _NO_MIRRORS
    if forward.mirrors:
        mirrors = tuple(
            MirrorTarget(
                rule.cluster,
                out_authority if rule.keep_host else shadow_authority(out_authority),
            )
            for rule in forward.mirrors
            if rule.sampled()
        )
    return ForwardPlan(
        vhost,
        compiled.route,
        forward.action,
        chosen.name,
        out_path,
        out_authority,
        request_hash,
        chosen.request_headers,
        chosen.response_headers,
        mirrors,
        forward.path_rewrite is not None,
        chosen.host_rewrite is not None or forward.host_rewrite is not None,
        table.deterministic and forward.static,
    )


def _local_reply(
    compiled: RouteEntry, vhost: str, scheme: str, authority: str, path: str
) -> LocalReply:
    route = compiled.route
    headers: HeaderList = []
    if compiled.redirect is not None:
        location = compiled.redirect.location(scheme, authority, path)
        headers.append(("location", location))
        status, body = compiled.redirect.status, b""
    elif compiled.direct_response is not None:
        status, body = compiled.direct_response.status, compiled.direct_response.body
        if body:
            headers.append(("content-type", "text/plain"))
    else:
        raise NoRouteError(f"route {route.name!r} in virtual host {vhost!r} does not forward")
    if compiled.local_headers is not None:
        compiled.local_headers.apply(headers)
    return LocalReply(route, status, headers, body)
