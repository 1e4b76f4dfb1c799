"""What the sync and aio gRPC channels share: target, plan, pick, report, metrics.

A call is routed like an HTTP/2 request through Envoy: ``:path`` is the
method (``/pkg.Service/Method``), ``:authority`` the target, ``:method``
POST, and its metadata are the headers (gRFC A28: ``-bin`` keys skipped,
repeated keys joined by ``,``). The plan settles cluster (weighted draw),
request hash (hash policy on metadata), metadata mutations (request header
mutations; response mutations are not applied to gRPC responses) and
mirrors. Routes that redirect or answer directly cannot carry a gRPC call:
the call fails UNAVAILABLE, as gRPC's own xDS client fails it.
``host_rewrite`` sets the sub-channel's ``:authority``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from meshlib.balancing.picker import PickContext
from meshlib.errors import NoHealthyEndpointError, NoRouteError
from meshlib.observability.metrics import client_metrics
from meshlib.resilience.deadline import LowerHeaders
from meshlib.routing.connection_pool import DEFAULT_POOL_SETTINGS, PoolSettings
from meshlib.routing.directory import split_target
from meshlib.routing.plan import ForwardPlan, LocalReply, plan_request
from meshlib.routing.snapshot import ClusterState, ServiceSnapshot
from meshlib.transport.outcome import grpc_outcome
from meshlib.transport.pool_settings import grpc_pool_options
from meshlib.xds_client.resources import Endpoint

if TYPE_CHECKING:
    from meshlib.mesh import Mesh

Metadata = Sequence[tuple[str, str | bytes]]
ChannelOptions = Sequence[tuple[str, Any]]

_perf_counter = time.perf_counter
_STATUS_NUMBER = {code: code.value[0] for code in grpc.StatusCode}
_NO_EXCLUSIONS: frozenset[str] = frozenset()
_GRPC_CONTENT_TYPE = {"content-type": "application/grpc"}
_ENABLE_RETRIES = "grpc.enable_retries"


def metadata_headers(metadata: Metadata | None) -> LowerHeaders:
    """Call metadata as route-matching headers (gRFC A28: no ``-bin`` keys, joined by ',')."""
    headers = LowerHeaders(_GRPC_CONTENT_TYPE)
    for key, value in metadata or ():
        name = key.lower()
        if name.endswith("-bin") or not isinstance(value, str):
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


class GrpcHeaderView:
    """One call's metadata and pseudo-headers, as matchers and hash policies read them."""

    __slots__ = ("_authority", "_headers", "_metadata", "_method")

    def __init__(self, metadata: Metadata | None, authority: str, method: str) -> None:
        self._metadata = metadata
        self._authority = authority
        self._method = method
        self._headers: dict[str, str] | None = None  # built on first use only

    def get(self, name: str) -> str | None:
        headers = self._headers
        if headers is None:
            headers = metadata_headers(self._metadata)
            headers[":authority"] = self._authority
            headers[":path"] = self._method
            headers[":method"] = "POST"
            headers[":scheme"] = "http"
            self._headers = headers
        return headers.get(name)

    def values_of(self, name: str) -> list[str]:
        if name.startswith(":") or name == "content-type":
            value = self.get(name)
            return [] if value is None else [value]
        return [
            v
            for k, v in self._metadata or ()
            if isinstance(v, str) and k.lower() == name and not name.endswith("-bin")
        ]


def outgoing_metadata(plan: ForwardPlan, metadata: Metadata | None) -> Metadata | None:
    """``metadata`` with the plan's request header mutations (a new list; binary
    entries pass through untouched)."""
    chain = plan.request_headers
    if chain is None:
        return metadata
    text: list[tuple[str, str]] = []
    binary: list[tuple[str, str | bytes]] = []
    for key, value in metadata or ():
        if isinstance(value, str) and not key.endswith("-bin"):
            text.append((key, value))
        else:
            binary.append((key, value))
    chain.apply(text)
    return [*text, *binary]


class CallReport:
    """Closes the books on one call to one endpoint: reporter and metrics."""

    __slots__ = ("_cluster", "_endpoint", "_method", "_routing", "_started")

    def __init__(
        self, routing: GrpcRouting, cluster: ClusterState, endpoint: Endpoint, method: str
    ) -> None:
        self._routing = routing
        self._cluster = cluster
        self._endpoint = endpoint
        self._method = method
        cluster.reporter.call_started(endpoint)
        self._started = _perf_counter()

    def finished(self, code: grpc.StatusCode | None, details: str | None = None) -> None:
        elapsed = _perf_counter() - self._started
        self._cluster.reporter.call_finished(self._endpoint, grpc_outcome(code, details), elapsed)
        routing = self._routing
        if routing.metrics.active:  # no SDK: skip building the attributes
            routing.record(elapsed, self._method, code, self._cluster.name, self._endpoint)


class PlanCache:
    """One method's last plan, reused while its snapshot is current and the plan
    is :attr:`~meshlib.routing.plan.ForwardPlan.reusable` (the common case: a
    route picked by path alone, one cluster). Replaced as one tuple: thread-safe."""

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[ServiceSnapshot, ForwardPlan] | None = None

    def plan_for(self, snapshot: ServiceSnapshot) -> ForwardPlan | None:
        entry = self._entry
        return entry[1] if entry is not None and entry[0] is snapshot else None

    def keep(self, snapshot: ServiceSnapshot, plan: ForwardPlan) -> None:
        self._entry = (snapshot, plan) if plan.reusable else None


class GrpcRouting:
    """Routes calls of one channel's target (``HOST:PORT``)."""

    def __init__(self, mesh: Mesh, target: str) -> None:
        host, port = split_target(target)
        self.host, self.port = host, port
        self.target = f"{host}:{port}"
        self.timeout = mesh.ready_timeout_s
        self.state = mesh.directory.service(self.target)
        self.metrics = client_metrics()

    def sub_channel_options(
        self,
        options: ChannelOptions,
        authority: str | None = None,
        settings: PoolSettings = DEFAULT_POOL_SETTINGS,
    ) -> list[tuple[str, Any]]:
        """User options plus ``:authority`` (default: the service name, as xDS clients
        send it) and the cluster's connection-pool settings (which win over the user's).

        grpcio's own retries are off: meshlib retries, and grpcio's retry layer would
        strip the ``grpc-previous-rpc-attempts`` a meshlib retry sends (to grpcio each
        try is a first attempt)."""
        cluster_options = grpc_pool_options(settings)
        overridden = {"grpc.default_authority", _ENABLE_RETRIES, *(k for k, _ in cluster_options)}
        merged = [(k, v) for k, v in options if k not in overridden]
        merged.extend(cluster_options)
        merged.append((_ENABLE_RETRIES, 0))
        merged.append(("grpc.default_authority", authority or self.target))
        return merged

    def decide(
        self,
        snapshot: ServiceSnapshot,
        method: str,
        metadata: Metadata | None,
        cache: PlanCache | None = None,
    ) -> ForwardPlan:
        """The plan for one call (pure; ``cache``: the method's, reused when it can be).
        Raises RoutingError."""
        if cache is not None:
            cached = cache.plan_for(snapshot)
            if cached is not None:
                return cached
        view = GrpcHeaderView(metadata, self.target, method)
        decision = plan_request(
            snapshot.route_table,
            target=self.target,
            scheme="http",
            authority=self.target,
            path=method,
            headers=view,
            values_of=view.values_of,
        )
        if type(decision) is LocalReply:
            kind = "redirects" if decision.route.redirect is not None else "answers directly"
            raise NoRouteError(
                f"route {decision.route.name!r} {kind} (status {decision.status}); "
                "a gRPC call cannot follow it"
            )
        assert isinstance(decision, ForwardPlan)
        if cache is not None:
            cache.keep(snapshot, decision)
        return decision

    def pick(
        self,
        snapshot: ServiceSnapshot,
        cluster_name: str,
        request_hash: int | None,
        excluded: frozenset[str] = _NO_EXCLUSIONS,
    ) -> tuple[ClusterState, Endpoint]:
        """The endpoint for one try. Raises RoutingError."""
        cluster = snapshot.clusters.get(cluster_name)
        if cluster is None:
            raise NoHealthyEndpointError(
                f"service {snapshot.target}: cluster {cluster_name!r} is unknown"
            )
        if request_hash is None and not excluded:
            return cluster, cluster.picker.pick()
        return cluster, cluster.picker.pick(PickContext(request_hash, excluded))

    def record(
        self,
        elapsed: float,
        method: str,
        code: grpc.StatusCode | None,
        cluster: str,
        endpoint: Endpoint,
    ) -> None:
        status = code if code is not None else grpc.StatusCode.UNKNOWN
        self.metrics.record_rpc(
            elapsed,
            full_method=method,
            status_code=_STATUS_NUMBER[status],
            error_type=None if status is grpc.StatusCode.OK else status.name,
            service=self.target,
            cluster=cluster,
            endpoint=endpoint.authority,
            server_address=self.host,
            server_port=self.port,
        )

    def describe(self, error: Exception) -> str:
        return f"meshlib: {self.target}: {error}"
