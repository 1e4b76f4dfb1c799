"""Per-request client metrics through the OpenTelemetry API (no SDK needed).

Names and attributes follow OpenTelemetry's stable semantic conventions
(``http.client.request.duration``, ``rpc.client.call.duration`` in seconds)
plus meshlib's own ``mesh.*`` attributes. Without an SDK the API hands out
no-op instruments, so recording costs one dict and a call; when an SDK
provider is installed later, the proxy instruments start recording.
"""

from __future__ import annotations

from typing import Final

from opentelemetry import metrics

METER_NAME: Final = "meshlib"
HTTP_DURATION: Final = "http.client.request.duration"
RPC_DURATION: Final = "rpc.client.call.duration"
REQUESTS: Final = "meshlib.client.requests"

# The buckets semconv recommends for request durations (seconds).
_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

Attributes = dict[str, str | int]


class ClientMetrics:
    """The instruments one process records client requests with."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter(METER_NAME, meter_provider=meter_provider)
        self._http = meter.create_histogram(
            HTTP_DURATION,
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._rpc = meter.create_histogram(
            RPC_DURATION,
            unit="s",
            description="Duration of RPC client calls.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self._requests = meter.create_counter(
            REQUESTS, unit="{request}", description="Client requests sent through the mesh."
        )

    def record_http(
        self,
        duration_s: float,
        *,
        method: str,
        status_code: int | None,
        error_type: str | None,
        service: str,
        cluster: str,
        endpoint: str,
        server_address: str,
        server_port: int,
    ) -> None:
        failed = error_type is not None or (status_code is not None and status_code >= 500)
        attributes: Attributes = {
            "http.request.method": method,
            "server.address": server_address,
            "server.port": server_port,
            "mesh.service": service,
            "mesh.cluster": cluster,
            "mesh.endpoint": endpoint,
            "mesh.outcome": "failure" if failed else "success",
        }
        if status_code is not None:
            attributes["http.response.status_code"] = status_code
        if error_type is not None:
            attributes["error.type"] = error_type
        elif status_code is not None and status_code >= 500:
            attributes["error.type"] = str(status_code)
        self._http.record(duration_s, attributes)
        self._requests.add(1, attributes)

    def record_rpc(
        self,
        duration_s: float,
        *,
        full_method: str,
        status_code: int,
        error_type: str | None,
        service: str,
        cluster: str,
        endpoint: str,
        server_address: str,
        server_port: int,
    ) -> None:
        rpc_service, _, rpc_method = full_method.lstrip("/").partition("/")
        attributes: Attributes = {
            "rpc.system": "grpc",
            "rpc.service": rpc_service,
            "rpc.method": rpc_method,
            "rpc.grpc.status_code": status_code,
            "server.address": server_address,
            "server.port": server_port,
            "mesh.service": service,
            "mesh.cluster": cluster,
            "mesh.endpoint": endpoint,
            "mesh.outcome": "success" if status_code == 0 else "failure",
        }
        if error_type is not None:
            attributes["error.type"] = error_type
        self._rpc.record(duration_s, attributes)
        self._requests.add(1, attributes)


_default: ClientMetrics | None = None


def client_metrics() -> ClientMetrics:
    """The process-wide instruments (created on first use)."""
    global _default
    if _default is None:
        _default = ClientMetrics()
    return _default
