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

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias

import grpc

from meshlib.balancing.picker import Outcome as LbOutcome
from meshlib.errors import NoRouteError, ServiceNotFoundError
from meshlib.observability.metrics import client_metrics
from meshlib.resilience.deadline import LowerHeaders
from meshlib.routing.connection_pool import DEFAULT_POOL_SETTINGS, PoolSettings
from meshlib.routing.directory import ServiceDirectory, split_target
from meshlib.routing.plan import ForwardPlan, LocalReply, plan_request
from meshlib.routing.snapshot import ClusterState, ServiceSnapshot
from meshlib.transport.outcome import grpc_outcome
from meshlib.transport.pool_settings import grpc_pool_options
from meshlib.transport.try_observer import TryObserver, TryReport
from meshlib.xds_client.resources import Endpoint

Metadata = Sequence[tuple[str, str | bytes]]
#: A channel's ``options`` as given (checked and listed by ``grpc_channel_core.checked_options``).
ChannelOptions = Iterable[tuple[str, Any]]

_STATUS_NUMBER = {code: code.value[0] for code in grpc.StatusCode}
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


#: One gRPC try's done hook (:class:`~meshlib.transport.try_observer.TryReport`).
GrpcTryReport: TypeAlias = TryReport[str, grpc.StatusCode | None]


def rpc_status(error: BaseException) -> tuple[grpc.StatusCode | None, str | None]:
    """How a try that raised ended: a sync grpc.Call or an aio AioRpcError says its
    code and details; an RpcError that does not is unknown; anything else (the caller
    interrupted) is CANCELLED."""
    if isinstance(error, grpc.RpcError):
        code_of = getattr(error, "code", None)
        if not callable(code_of):
            return None, None
        details = getattr(error, "details", None)
        return code_of(), details() if callable(details) else None
    return grpc.StatusCode.CANCELLED, None


# The statuses whose outcome the details cannot change (UNAVAILABLE's may: connect failure).
_GRPC_QUICK: Final[Mapping[grpc.StatusCode | None, LbOutcome]] = {
    code: grpc_outcome(code) for code in grpc.StatusCode if code is not grpc.StatusCode.UNAVAILABLE
}


def _grpc_error_outcome(error: BaseException) -> LbOutcome:
    return grpc_outcome(*rpc_status(error))


class MethodPlanCache:
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

    def __init__(self, directory: ServiceDirectory, ready_timeout_s: float, target: str) -> None:
        host, port = split_target(target)
        self.host, self.port = host, port
        self.target = f"{host}:{port}"
        self.timeout = ready_timeout_s
        self.directory = directory
        self.state = directory.service(self.target)
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
        cache: MethodPlanCache | None = None,
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

    def observer(self, cluster: ClusterState) -> TryObserver[str, grpc.StatusCode | None]:
        """The per-try observer of this channel's tries to ``cluster`` (calls: the
        method name, for the metrics' labels)."""
        return TryObserver(
            cluster.reporter,
            cluster.name,
            outcome_of=grpc_outcome,
            error_outcome=_grpc_error_outcome,
            quick=_GRPC_QUICK,
            usual=grpc.StatusCode.OK,
            metrics=self.metrics,
            record=self._record,
        )

    def _record(
        self,
        elapsed: float,
        method: str,
        cluster: str,
        endpoint: Endpoint,
        code: grpc.StatusCode | None,
        _error: BaseException | None,
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
        text = f"meshlib: {self.target}: {error}"
        if isinstance(error, ServiceNotFoundError):  # a typo'd port: name the mesh's ports
            ports = self.directory.ports_of(self.host)
            if ports:
                text += f" (the mesh has {self.host} on port {', '.join(map(str, ports))})"
        return text
