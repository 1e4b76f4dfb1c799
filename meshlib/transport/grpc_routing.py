"""What the sync and aio gRPC channels share: target, routing, errors, metrics.

A call's route is matched on its method path (``/pkg.Service/Method``) with
its metadata as headers (only built when some route looks at headers), then
the cluster's picker names the endpoint whose sub-channel carries the call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from meshlib.errors import RoutingError
from meshlib.observability.metrics import client_metrics
from meshlib.routing.directory import split_target
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.xds_client.resources import Endpoint

if TYPE_CHECKING:
    from meshlib.mesh import Mesh

Metadata = Sequence[tuple[str, str | bytes]]
ChannelOptions = Sequence[tuple[str, Any]]

_NO_HEADERS: Mapping[str, str] = {}
_perf_counter = time.perf_counter
_STATUS_NUMBER = {code: code.value[0] for code in grpc.StatusCode}


def metadata_headers(metadata: Metadata | None) -> dict[str, str]:
    """Call metadata as route-matching headers (gRFC A28: no ``-bin`` keys, joined by ',')."""
    headers = {"content-type": "application/grpc"}
    for key, value in metadata or ():
        name = key.lower()
        if name.endswith("-bin") or not isinstance(value, str):
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


class GrpcRouting:
    """Routes calls of one channel's target (``HOST:PORT``)."""

    def __init__(self, mesh: Mesh, target: str) -> None:
        host, port = split_target(target)
        self.host, self.port = host, port
        self.target = f"{host}:{port}"
        self.timeout = mesh.ready_timeout_s
        self.state = mesh.directory.service(self.target)
        self.metrics = client_metrics()

    def sub_channel_options(self, options: ChannelOptions) -> list[tuple[str, Any]]:
        """User options plus ``:authority`` = the service name, as xDS clients send it."""
        merged = [(k, v) for k, v in options if k != "grpc.default_authority"]
        merged.append(("grpc.default_authority", self.target))
        return merged

    def pick(
        self, snapshot: ServiceSnapshot, method: str, metadata: Metadata | None
    ) -> tuple[str, Endpoint]:
        """(cluster, endpoint) for one call; raises RoutingError."""
        headers = metadata_headers(metadata) if snapshot.route_table.uses_headers else _NO_HEADERS
        _result, cluster, endpoint = snapshot.route(self.target, method, headers)
        return cluster.name, endpoint

    def record(
        self,
        started: float,
        method: str,
        code: grpc.StatusCode | None,
        cluster: str,
        endpoint: Endpoint,
    ) -> None:
        status = code if code is not None else grpc.StatusCode.UNKNOWN
        self.metrics.record_rpc(
            _perf_counter() - started,
            full_method=method,
            status_code=_STATUS_NUMBER[status],
            error_type=None if status is grpc.StatusCode.OK else status.name,
            service=self.target,
            cluster=cluster,
            endpoint=endpoint.authority,
            server_address=self.host,
            server_port=self.port,
        )

    def describe(self, error: RoutingError) -> str:
        return f"meshlib: {self.target}: {error}"
