"""Per-request client metrics through the OpenTelemetry API (no SDK needed).

Names and attributes follow OpenTelemetry's stable semantic conventions
(``http.client.request.duration``, ``rpc.client.call.duration`` in seconds)
plus meshlib's own ``mesh.*`` attributes. Without an SDK the API hands out
no-op (proxy) instruments: :attr:`ClientMetrics.active` is then False and the
transports skip recording altogether (no attribute dicts on the request
path). When an SDK provider is installed later, the global provider is no
longer the proxy, ``active`` turns True for good, and the proxy instruments
(already bound to the real provider) record.
"""

from __future__ import annotations

from typing import Final

from opentelemetry import metrics

from meshlib.observability._otel_internals import global_provider_set, provider_first_look

METER_NAME: Final = "meshlib"
HTTP_DURATION: Final = "http.client.request.duration"
RPC_DURATION: Final = "rpc.client.call.duration"
REQUESTS: Final = "meshlib.client.requests"
OUTLIER_EJECTIONS: Final = "meshlib.outlier.ejections"

# The buckets semconv recommends for request durations (seconds).
_DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip

Attributes = dict[str, str | int]


class ClientMetrics:
    """The instruments one process records client requests with."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter(METER_NAME, meter_provider=meter_provider)
        # An explicit provider decides for good (a no-op one never records); the
        # global one records once an SDK provider is set.
        self._explicit = meter_provider is not None
        self._recording = self._explicit and not isinstance(
            meter_provider, metrics.NoOpMeterProvider
        )
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
        self._ejections = meter.create_counter(
            OUTLIER_EJECTIONS,
            unit="{ejection}",
            description="Endpoints ejected by outlier detection.",
        )

    @property
    def active(self) -> bool:
        """Whether recording reaches a real provider (False: skip building attributes)."""
        if self._recording:
            return True
        if self._explicit:
            return False
        if provider_first_look() is None or not global_provider_set():  # see _otel_internals
            return False
        self._recording = True  # the global provider is set once and for all
        return True

    def record_ejection(self, cluster: str, endpoint: str, reason: str) -> None:
        """One outlier ejection (``reason``: the detector, e.g. consecutive_5xx)."""
        self._ejections.add(
            1, {"mesh.cluster": cluster, "mesh.endpoint": endpoint, "mesh.ejection.reason": reason}
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
        if error_type is None and status_code is not None and status_code >= 500:
            error_type = str(status_code)
        common = _common(
            server_address, server_port, service, cluster, endpoint, failed, error_type
        )
        attributes: Attributes = {"http.request.method": method, **common}
        if status_code is not None:
            attributes["http.response.status_code"] = status_code
        self._http.record(duration_s, attributes)
        common["mesh.protocol"] = "http"
        self._requests.add(1, common)

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
        common = _common(
            server_address, server_port, service, cluster, endpoint, status_code != 0, error_type
        )
        attributes: Attributes = {
            "rpc.system": "grpc",
            "rpc.service": rpc_service,
            "rpc.method": rpc_method,
            "rpc.grpc.status_code": status_code,
            **common,
        }
        self._rpc.record(duration_s, attributes)
        common["mesh.protocol"] = "grpc"
        self._requests.add(1, common)


def _common(
    server_address: str,
    server_port: int,
    service: str,
    cluster: str,
    endpoint: str,
    failed: bool,
    error_type: str | None,
) -> Attributes:
    """The attributes HTTP and gRPC requests share: all that ``meshlib.client.requests``
    carries (with ``mesh.protocol``), so its series never hold the other protocol's
    attributes (a Prometheus export would fill those in empty)."""
    attributes: Attributes = {
        "server.address": server_address,
        "server.port": server_port,
        "mesh.service": service,
        "mesh.cluster": cluster,
        "mesh.endpoint": endpoint,
        "mesh.outcome": "failure" if failed else "success",
    }
    if error_type is not None:
        attributes["error.type"] = error_type
    return attributes


_default: ClientMetrics | None = None


def client_metrics() -> ClientMetrics:
    """The process-wide instruments (created on first use)."""
    global _default
    if _default is None:
        _default = ClientMetrics()
    return _default


# --- resilience events ------------------------------------------------------------

RETRIES: Final = "meshlib.client.retries"
RETRY_BUDGET_OVERFLOWS: Final = "meshlib.client.retry_budget.overflows"
HEDGES: Final = "meshlib.client.hedges"
BREAKER_TRANSITIONS: Final = "meshlib.circuit_breaker.transitions"
BREAKER_REJECTIONS: Final = "meshlib.circuit_breaker.rejections"
RATE_LIMITED: Final = "meshlib.rate_limit.rejections"
FAULTS_INJECTED: Final = "meshlib.fault.injections"
FALLBACKS: Final = "meshlib.fallbacks"


def mesh_attributes(name: str) -> Attributes:
    """``mesh.*`` attributes for a resilience object's name.

    A cluster name (``outbound|PORT|SUBSET|HOST``) gives ``mesh.cluster`` and
    ``mesh.service``; a service name (``HOST:PORT``) gives ``mesh.service``;
    anything else (a decorated function, a breaker you named) ``meshlib.name``.
    """
    parts = name.split("|")
    if len(parts) == 4 and parts[1].isdigit():
        return {"mesh.cluster": name, "mesh.service": f"{parts[3]}:{parts[1]}"}
    host, sep, port = name.rpartition(":")
    if sep and host and port.isdigit():
        return {"mesh.service": name}
    return {"meshlib.name": name}


class ResilienceMetrics:
    """Counters for every decision that changes traffic: retry, hedge, trip, limit, fault.

    Recorded only on those (rare) paths, never on a successful first try.
    """

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter(METER_NAME, meter_provider=meter_provider)
        self._retries = meter.create_counter(
            RETRIES, unit="{retry}", description="Retries started (hedges excluded)."
        )
        self._budget = meter.create_counter(
            RETRY_BUDGET_OVERFLOWS,
            unit="{retry}",
            description="Retries the retry budget (or max_retries) refused.",
        )
        self._hedges = meter.create_counter(
            HEDGES, unit="{request}", description="Hedged tries started on per-try timeout."
        )
        self._transitions = meter.create_counter(
            BREAKER_TRANSITIONS, unit="{transition}", description="Circuit breaker state changes."
        )
        self._rejections = meter.create_counter(
            BREAKER_REJECTIONS,
            unit="{request}",
            description="Calls failed fast by an open breaker or a full cluster threshold.",
        )
        self._rate_limited = meter.create_counter(
            RATE_LIMITED, unit="{request}", description="Requests refused by a local rate limit."
        )
        self._faults = meter.create_counter(
            FAULTS_INJECTED, unit="{fault}", description="Faults injected (delays and aborts)."
        )
        self._fallbacks = meter.create_counter(
            FALLBACKS, unit="{call}", description="Calls answered by a fallback handler."
        )

    def retry(self, name: str, reason: str | None) -> None:
        attributes = mesh_attributes(name)
        attributes["meshlib.retry.reason"] = reason or "unknown"
        self._retries.add(1, attributes)

    def budget_overflow(self, budget: str) -> None:
        self._budget.add(1, mesh_attributes(budget))

    def hedge(self, name: str) -> None:
        self._hedges.add(1, mesh_attributes(name))

    def breaker_transition(self, breaker: str, old: str, new: str) -> None:
        attributes = mesh_attributes(breaker)
        attributes.update({"meshlib.breaker.from": old, "meshlib.breaker.to": new})
        self._transitions.add(1, attributes)

    def breaker_rejection(self, name: str, reason: str) -> None:
        """``reason``: ``circuit_open`` or the threshold (``max_requests``, ...)."""
        attributes = mesh_attributes(name)
        attributes["meshlib.rejection.reason"] = reason
        self._rejections.add(1, attributes)

    def rate_limited(self, limiter: str) -> None:
        self._rate_limited.add(1, mesh_attributes(limiter))

    def fault(self, name: str, kind: str) -> None:
        """``kind``: ``delay`` or ``abort``."""
        attributes = mesh_attributes(name)
        attributes["meshlib.fault.kind"] = kind
        self._faults.add(1, attributes)

    def fallback(self, function: str, reason: str) -> None:
        self._fallbacks.add(1, {"code.function": function, "meshlib.fallback.reason": reason})


_resilience: ResilienceMetrics | None = None


def resilience_metrics() -> ResilienceMetrics:
    """The process-wide resilience counters (created on first use)."""
    global _resilience
    if _resilience is None:
        _resilience = ResilienceMetrics()
    return _resilience
