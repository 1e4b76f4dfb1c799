"""What the sync and async httpx transports share: decide, then build each try.

The per-request flow (one place, both twins, see :mod:`meshlib.transport.http`):

1. ``target_for`` — is the URL a mesh name at all (cached per host)?
2. ``decide`` — pure: route match, cluster draw, rewrites, hash, header
   mutations, mirrors → a :class:`~meshlib.routing.plan.ForwardPlan`, or a
   :class:`~meshlib.routing.plan.LocalReply` for redirects / direct responses;
3. per try (the call plan's adapter, :mod:`meshlib.transport.http_try`): pick an
   endpoint, ``outgoing_request`` builds the request for it (never touching the caller's),
   the transport sends it between the plan's observer's ``start`` and the try's
   done hook (:mod:`meshlib.transport.try_observer`: load report and metrics);
4. ``finish`` applies the response header mutations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Final

import httpx

from meshlib.balancing.picker import Outcome as LbOutcome
from meshlib.errors import RoutingError, ServiceNotFoundError
from meshlib.observability.metrics import client_metrics
from meshlib.resilience.deadline import LowerHeaders
from meshlib.routing.directory import ServiceDirectory, is_mesh_name
from meshlib.routing.plan import ForwardPlan, LocalReply, RoutingDecision, plan_request
from meshlib.routing.service import ServiceState
from meshlib.routing.snapshot import ClusterState, ServiceFailure, ServiceSnapshot, ServiceView
from meshlib.transport._httpx_internals import copy_request, endpoint_url, host_header
from meshlib.transport.errors import routing_error_as_httpx
from meshlib.transport.http_answers import mesh_answer
from meshlib.transport.http_membership import HttpMembership
from meshlib.transport.outcome import http_error_outcome, http_error_type, http_outcome
from meshlib.transport.try_observer import TryObserver
from meshlib.xds_client.resources import Endpoint


class HttpHeaderView:
    """An httpx request's headers as route matchers and hash policies read them."""

    __slots__ = ("_authority", "_headers", "_method", "_path")

    def __init__(self, request: httpx.Request, authority: str, path: str) -> None:
        self._headers = request.headers
        self._method = request.method
        self._authority = authority
        self._path = path

    def get(self, name: str) -> str | None:
        if name.startswith(":") or name == "host":
            if name in (":authority", "host"):
                return self._authority
            if name == ":method":
                return self._method
            if name == ":path":
                return self._path
            return "http" if name == ":scheme" else None
        values = self._headers.get_list(name)
        if not values:
            return None
        return values[0] if len(values) == 1 else ",".join(values)

    def values_of(self, name: str) -> list[str]:
        value = self.get(name) if name.startswith(":") else None
        return [value] if value is not None else self._headers.get_list(name)


def request_headers(request: httpx.Request) -> LowerHeaders:
    """The request's headers as resilience reads them: lower-case names, repeated
    values joined by ``,`` (Envoy's view), built from the raw list in one pass."""
    joined = LowerHeaders()
    for key, value in request.headers.raw:
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        joined[name] = f"{joined[name]},{text}" if name in joined else text
    return joined


class HttpPlanCache:
    """Plans by (authority, path) for one snapshot, kept while they are
    :attr:`~meshlib.routing.plan.ForwardPlan.reusable` (no header, query or runtime
    matching in the table, one cluster, no hash, no mirrors). Bounded; replaced
    whole when the snapshot changes, so readers on other threads see one or the other."""

    __slots__ = ("_entry",)

    MAX_PLANS = 1024

    def __init__(self) -> None:
        self._entry: tuple[ServiceSnapshot, dict[tuple[str, str], ForwardPlan]] | None = None

    def get(self, snapshot: ServiceSnapshot, key: tuple[str, str]) -> ForwardPlan | None:
        entry = self._entry
        if entry is None or entry[0] is not snapshot:
            return None
        return entry[1].get(key)

    def keep(self, snapshot: ServiceSnapshot, key: tuple[str, str], plan: ForwardPlan) -> None:
        if not plan.reusable:
            return
        entry = self._entry
        if entry is None or entry[0] is not snapshot or len(entry[1]) >= self.MAX_PLANS:
            entry = self._entry = (snapshot, {})
        entry[1][key] = plan


class HttpRouting:
    """The decisions both transports share: mesh or not, plan, pick, build, record,
    and what the caller gets when the mesh ends a request (:meth:`answer`)."""

    def __init__(
        self,
        directory: ServiceDirectory,
        ready_timeout_s: float,
        passthrough_hosts: Iterable[str],
        raise_mesh_errors: bool = False,
    ) -> None:
        self.directory = directory
        self.timeout = ready_timeout_s
        hosts = () if isinstance(passthrough_hosts, str) else tuple(passthrough_hosts)
        if isinstance(passthrough_hosts, str) or not all(isinstance(h, str) for h in hosts):
            raise TypeError(
                f"passthrough_hosts must be a list of host names, got {passthrough_hosts!r}"
            )
        self.passthrough_hosts = frozenset(h.lower() for h in hosts)
        self.metrics = client_metrics()
        self.plans = HttpPlanCache()
        self.membership = HttpMembership(self.directory, self.timeout)
        #: Raise meshlib's typed errors instead of answering as a sidecar would.
        self.raise_mesh_errors = raise_mesh_errors

    def answer(self, error: Exception, request: httpx.Request) -> httpx.Response:
        """A mesh request ended in ``error`` (call in its ``except`` block): the response a
        sidecar sends, or the typed error raised (:func:`~.http_answers.mesh_answer`)."""
        return mesh_answer(error, request, self.raise_mesh_errors)

    def target_for(self, url: httpx.URL) -> str | None:
        """``HOST:PORT`` when ``url`` may be a mesh service; None to pass it through."""
        host = url.host
        if url.scheme != "http" or host in self.passthrough_hosts or not is_mesh_name(host):
            return None
        port = url.port
        return f"{host}:{port}" if port else f"{host}:80"

    def raise_passed_through(self, error: httpx.ConnectError, request: httpx.Request) -> None:
        """A request the mesh passed through could not connect (call in its ``except``
        block): raise ``error`` again saying why it was passed through and naming the
        host's mesh ports if it has some (a typo'd port or name, or ``https://``, would
        otherwise read as DNS trouble only); returns for a host that is none of the
        mesh's business (the caller re-raises httpx's own error)."""
        url = request.url
        ports = self.directory.ports_of(url.host)
        if not ports and self.target_for(url) is None:
            return  # an IP, localhost, a pass-through host, another scheme to a non-mesh name
        if url.scheme != "http":
            note = (
                f"{url.scheme}:// URLs pass through; the mesh routes http://"
                " (and brings mTLS itself where its config says so)"
            )
        elif ports is None:
            note = f"{url.host}:{url.port or 80} was passed through: no service list yet"
        else:
            note = f"{url.host}:{url.port or 80} is not a mesh service, so it was passed through"
        if ports:
            note += f" (the mesh has {url.host} on port {', '.join(map(str, ports))})"
        raise httpx.ConnectError(f"{error} [{note}]", request=request) from error

    def snapshot_from(
        self, state: ServiceState, view: ServiceView, request: httpx.Request
    ) -> ServiceSnapshot | None:
        """The snapshot to route with; None when the service has just left the mesh."""
        if type(view) is ServiceSnapshot:
            return view
        assert isinstance(view, ServiceFailure)
        if view.error_type is ServiceNotFoundError and self.directory.known_non_member(
            state.target
        ):
            return None
        raise routing_error_as_httpx(view.error(), request)

    def decide(self, snapshot: ServiceSnapshot, request: httpx.Request) -> RoutingDecision:
        """Step 2 (pure): the plan for ``request``. Raises a Mesh*Error (httpx error)."""
        authority = host_header(request) or snapshot.target
        path = request.url.raw_path.decode("ascii", "replace")
        key = (authority, path)
        cached = self.plans.get(snapshot, key)
        if cached is not None:
            return cached
        view = HttpHeaderView(request, authority, path)
        try:
            decision = plan_request(
                snapshot.route_table,
                target=snapshot.target,
                scheme="http",
                authority=authority,
                path=path,
                headers=view,
                values_of=view.values_of,
            )
        except RoutingError as exc:
            raise routing_error_as_httpx(exc, request) from exc
        if type(decision) is ForwardPlan:
            self.plans.keep(snapshot, key, decision)
        return decision

    def observer(self, target: str, cluster: ClusterState) -> TryObserver[httpx.Request, int]:
        """The per-try observer of ``target``'s tries to ``cluster`` (shadows included:
        they count for the mirror's cluster)."""
        return TryObserver(
            cluster.reporter,
            cluster.name,
            outcome_of=_http_outcome_of,
            error_outcome=http_error_outcome,
            quick=_HTTP_OUTCOMES,
            metrics=self.metrics,
            record=partial(self._record, target),
        )

    def _record(
        self,
        target: str,
        elapsed: float,
        request: httpx.Request,
        cluster: str,
        endpoint: Endpoint,
        status: int | None,
        error: BaseException | None,
    ) -> None:
        self.metrics.record_http(
            elapsed,
            method=request.method,
            status_code=status,
            error_type=None if error is None else http_error_type(error),
            service=target,
            cluster=cluster,
            endpoint=endpoint.authority,
            server_address=request.url.host,
            server_port=request.url.port or 80,
        )


def _http_outcome_of(status: int, _details: str | None) -> LbOutcome:
    return http_outcome(status)


# Every status an HTTP answer may have, its outcome looked up (no call per try).
_HTTP_OUTCOMES: Final[Mapping[int, LbOutcome]] = {s: http_outcome(s) for s in range(100, 600)}


def outgoing_request(
    request: httpx.Request,
    plan: ForwardPlan,
    endpoint: Endpoint,
    authority: str | None = None,
    *,
    owned: bool = False,
) -> httpx.Request:
    """Step 3b: a shallow copy of ``request`` for ``endpoint`` with the plan's
    rewrites and header mutations (``authority``: override, for shadows).
    ``owned``: ``request`` is already this try's own copy; it is changed in place."""
    outgoing = request if owned else copy_request(request)
    outgoing.url = endpoint_url(request.url, endpoint, plan.path if plan.path_rewritten else None)
    chain = plan.request_headers
    if chain is not None or authority is not None or plan.host_rewritten:
        items = [(k, v) for k, v in request.headers.multi_items() if k != "host"]
        if chain is not None:
            chain.apply(items)
        items.insert(0, ("host", authority if authority is not None else plan.authority))
        outgoing.headers = httpx.Headers(items)
    return outgoing


def local_response(reply: LocalReply, request: httpx.Request) -> httpx.Response:
    """A redirect or direct response as a real httpx response (httpx follows
    redirects itself when the client asks it to)."""
    return httpx.Response(reply.status, headers=reply.headers, content=reply.body, request=request)


def finish_response(plan: ForwardPlan, response: httpx.Response) -> httpx.Response:
    """Step 4: the plan's response header mutations, applied to ``response``."""
    chain = plan.response_headers
    if chain is not None:
        items = list(response.headers.multi_items())
        chain.apply(items)
        response.headers = httpx.Headers(items)
    return response


def replayable_body(request: httpx.Request) -> bool:
    """Whether the body can be sent twice (bytes content, not a stream)."""
    try:
        request.content  # noqa: B018 - raises when the body is a stream not yet read
    except httpx.RequestNotRead:
        return False
    return True
