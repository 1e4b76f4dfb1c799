"""A DestinationRule's ``trafficPolicy`` (rule, subset and port level).

Istio's TrafficPolicy: ``loadBalancer``, ``connectionPool``, ``outlierDetection``
``portLevelSettings`` (one per port number) and ``tls`` (:mod:`.client_tls`).
Tunnelling and proxyProtocol are refused, never ignored.
"""

from __future__ import annotations

from controlplane.config.client_tls import parse_client_tls
from controlplane.config.durations import duration
from controlplane.config.fields import Fields
from controlplane.config.load_balancer import parse_load_balancer
from controlplane.config.workload_entry import MAX_PORT
from controlplane.security_model import ClientTLSSettings
from controlplane.traffic_model import (
    ConnectionPoolSettings,
    HTTPSettings,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    TCPSettings,
    TrafficPolicy,
)

POLICY_FIELDS = ("loadBalancer", "connectionPool", "outlierDetection", "portLevelSettings", "tls")
POLICY_NOT_YET = ("tunnel", "proxyProtocol")
POLICY_REFUSED = {
    "retryBudget": "field is not supported yet; use the annotation meshlib.dev/retry-budget",
}
PORT_FIELDS = ("port", "loadBalancer", "connectionPool", "outlierDetection", "tls")
TCP_FIELDS = ("maxConnections", "connectTimeout", "maxConnectionDuration")
TCP_NOT_YET = ("tcpKeepalive", "idleTimeout")
HTTP_FIELDS = (
    "http1MaxPendingRequests",
    "http2MaxRequests",
    "maxRequestsPerConnection",
    "maxRetries",
    "idleTimeout",
)
HTTP_NOT_YET = ("h2UpgradePolicy", "useClientProtocol", "maxConcurrentStreams")
OUTLIER_FIELDS = (
    "consecutive5xxErrors",
    "consecutiveGatewayErrors",
    "consecutiveLocalOriginFailures",
    "splitExternalLocalOriginErrors",
    "interval",
    "baseEjectionTime",
    "maxEjectionPercent",
    "minHealthPercent",
)
OUTLIER_REFUSED = {"consecutiveErrors": "deprecated field; use consecutive5xxErrors"}
MAX_INT32 = 2**31 - 1
MAX_UINT32 = 2**32 - 1


def parse_traffic_policy(fields: Fields) -> TrafficPolicy | None:
    """Validate a trafficPolicy; None when any issue was reported."""
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(POLICY_FIELDS, POLICY_NOT_YET, "trafficPolicy", POLICY_REFUSED)
    parts = _parts(fields)
    ports = _port_level_settings(fields)
    tls = _tls(fields)
    if ctx.count != before:
        return None
    load_balancer, connection_pool, outlier_detection = parts
    return TrafficPolicy(
        load_balancer=load_balancer,
        connection_pool=connection_pool,
        outlier_detection=outlier_detection,
        port_level_settings=ports,
        tls=tls,
    )


def _tls(fields: Fields) -> ClientTLSSettings | None:
    tls_fields = fields.mapping("tls")
    return parse_client_tls(tls_fields) if tls_fields is not None else None


def _parts(
    fields: Fields,
) -> tuple[LoadBalancerSettings | None, ConnectionPoolSettings | None, OutlierDetection | None]:
    lb_fields = fields.mapping("loadBalancer")
    pool_fields = fields.mapping("connectionPool")
    outlier_fields = fields.mapping("outlierDetection")
    return (
        parse_load_balancer(lb_fields) if lb_fields is not None else None,
        _connection_pool(pool_fields) if pool_fields is not None else None,
        _outlier_detection(outlier_fields) if outlier_fields is not None else None,
    )


def _port_level_settings(fields: Fields) -> tuple[PortTrafficPolicy, ...]:
    ctx = fields.ctx
    result: list[PortTrafficPolicy] = []
    seen: set[int] = set()
    for path, value in fields.items("portLevelSettings") or ():
        entry = Fields.of(ctx, path, value)
        if entry is None:
            continue
        before = ctx.count
        entry.reject_unknown(PORT_FIELDS, what="a port traffic policy")
        port: int | None = None
        selector = entry.mapping("port", required=True)
        if selector is not None:
            selector.reject_unknown(("number",), what="a port selector")
            port = selector.integer("number", minimum=1, maximum=MAX_PORT, required=True)
        if port is not None and port in seen:
            ctx.error(entry.at("port"), f"duplicate port {port} (one setting per port)")
        load_balancer, connection_pool, outlier_detection = _parts(entry)
        tls = _tls(entry)
        if ctx.count != before or port is None:
            continue
        seen.add(port)
        result.append(
            PortTrafficPolicy(
                port=port,
                load_balancer=load_balancer,
                connection_pool=connection_pool,
                outlier_detection=outlier_detection,
                tls=tls,
            )
        )
    return tuple(result)


def _connection_pool(fields: Fields) -> ConnectionPoolSettings | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(("tcp", "http"), what="connectionPool")
    if not fields.present("tcp") and not fields.present("http"):
        ctx.error(fields.path, "must set tcp, http or both")
    tcp: TCPSettings | None = None
    tcp_fields = fields.mapping("tcp")
    if tcp_fields is not None:
        tcp_fields.reject_unknown(TCP_FIELDS, TCP_NOT_YET, "connectionPool.tcp")
        tcp = TCPSettings(
            max_connections=tcp_fields.integer("maxConnections", minimum=0, maximum=MAX_INT32),
            connect_timeout_s=duration(tcp_fields, "connectTimeout"),
            max_connection_duration_s=duration(tcp_fields, "maxConnectionDuration"),
        )
    http: HTTPSettings | None = None
    http_fields = fields.mapping("http")
    if http_fields is not None:
        http_fields.reject_unknown(HTTP_FIELDS, HTTP_NOT_YET, "connectionPool.http")
        counts = {
            key: http_fields.integer(key, minimum=0, maximum=MAX_INT32) for key in HTTP_FIELDS[:4]
        }
        http = HTTPSettings(
            http1_max_pending_requests=counts["http1MaxPendingRequests"],
            http2_max_requests=counts["http2MaxRequests"],
            max_requests_per_connection=counts["maxRequestsPerConnection"],
            max_retries=counts["maxRetries"],
            idle_timeout_s=duration(http_fields, "idleTimeout"),
        )
    if ctx.count != before:
        return None
    return ConnectionPoolSettings(tcp=tcp, http=http)


def _outlier_detection(fields: Fields) -> OutlierDetection | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(OUTLIER_FIELDS, what="outlierDetection", refused=OUTLIER_REFUSED)
    default = OutlierDetection()
    errors_5xx = fields.integer("consecutive5xxErrors", minimum=0, maximum=MAX_UINT32)
    gateway = fields.integer("consecutiveGatewayErrors", minimum=0, maximum=MAX_UINT32)
    local = fields.integer("consecutiveLocalOriginFailures", minimum=0, maximum=MAX_UINT32)
    split = fields.boolean("splitExternalLocalOriginErrors")
    if local is not None and not split:
        ctx.error(
            fields.at("consecutiveLocalOriginFailures"),
            "needs splitExternalLocalOriginErrors: true (Envoy counts local failures apart "
            "only then)",
        )
    interval = duration(fields, "interval")
    base_ejection = duration(fields, "baseEjectionTime")
    max_ejection = fields.integer("maxEjectionPercent", minimum=0, maximum=100)
    min_health = fields.integer("minHealthPercent", minimum=0, maximum=100)
    if ctx.count != before:
        return None
    return OutlierDetection(
        consecutive_5xx_errors=errors_5xx,
        consecutive_gateway_errors=gateway,
        consecutive_local_origin_failures=local,
        split_external_local_origin_errors=bool(split),
        interval_s=default.interval_s if interval is None else interval,
        base_ejection_time_s=default.base_ejection_time_s
        if base_ejection is None
        else base_ejection,
        max_ejection_percent=default.max_ejection_percent if max_ejection is None else max_ejection,
        min_health_percent=default.min_health_percent if min_health is None else min_health,
    )
