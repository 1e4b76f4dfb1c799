"""Builders for DestinationRule translation tests, and one mesh that uses every
cluster feature (one service per feature) for the client acceptance tests."""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.model import (
    MeshConfig,
    Resolution,
    ServiceEntry,
    ServicePort,
    Source,
    WorkloadSpec,
)
from controlplane.traffic_model import (
    ConnectionPoolSettings,
    ConsistentHash,
    DestinationRule,
    FailurePercentageEjection,
    HashAlgorithm,
    HTTPSettings,
    LoadBalancerSettings,
    LocalityDistribute,
    LocalityFailover,
    LocalityLbSetting,
    OutlierDetection,
    RetryBudget,
    SimpleLB,
    Subset,
    SuccessRateEjection,
    TCPSettings,
    TrafficPolicy,
    TrafficPolicyExtensions,
)

GRPC_PORT = ServicePort(50051, "grpc", "GRPC")


def endpoint(
    address: str,
    *,
    port: int | None = None,
    locality: str = "",
    labels: Mapping[str, str] | None = None,
    weight: int = 1,
) -> WorkloadSpec:
    return WorkloadSpec(
        address=address,
        ports={"grpc": port} if port is not None else {},
        labels=dict(labels or {}),
        locality=locality,
        weight=weight,
    )


def service(
    host: str,
    *endpoints: WorkloadSpec,
    ports: tuple[ServicePort, ...] = (GRPC_PORT,),
    degraded: bool = False,
    resolution: Resolution = Resolution.STATIC,
) -> ServiceEntry:
    return ServiceEntry(
        name=host,
        namespace="default",
        hosts=(host,),
        ports=ports,
        resolution=resolution,
        endpoints=endpoints,
        source=Source("mesh.yaml", 1),
        degraded=degraded,
    )


def rule(
    host: str,
    policy: TrafficPolicy | None = None,
    *subsets: Subset,
    extensions: TrafficPolicyExtensions | None = None,
) -> DestinationRule:
    return DestinationRule(
        name=f"{host}-rule",
        namespace="default",
        host=host,
        traffic_policy=policy,
        subsets=subsets,
        extensions=extensions or TrafficPolicyExtensions(),
        source=Source("rules.yaml", 2),
    )


FULL_OUTLIER = OutlierDetection(
    consecutive_5xx_errors=3,
    consecutive_gateway_errors=2,
    consecutive_local_origin_failures=4,
    split_external_local_origin_errors=True,
    interval_s=2.5,
    base_ejection_time_s=15,
    max_ejection_percent=50,
    min_health_percent=30,
)
FULL_POOL = ConnectionPoolSettings(
    tcp=TCPSettings(max_connections=10, connect_timeout_s=0.25, max_connection_duration_s=60),
    http=HTTPSettings(
        http1_max_pending_requests=5,
        http2_max_requests=20,
        max_requests_per_connection=100,
        max_retries=3,
        idle_timeout_s=30,
    ),
)
ALL_EXTENSIONS = TrafficPolicyExtensions(
    retry_budget=RetryBudget(budget_percent=25.0, min_retry_concurrency=2),
    success_rate_ejection=SuccessRateEjection(),
    failure_percentage_ejection=FailurePercentageEjection(threshold=50),
)
CLIENT_LOCALITY = "r1/z1/s1"
DISTRIBUTE = LocalityLbSetting(
    distribute=(LocalityDistribute(from_="r1/*", to={"r1/z1/*": 80, "r2/*": 20}),)
)

# host -> the DestinationRule trafficPolicy (and extensions) exercising one feature
FEATURES: dict[str, tuple[TrafficPolicy, TrafficPolicyExtensions | None]] = {
    "rr-warmup": (
        TrafficPolicy(load_balancer=LoadBalancerSettings(warmup_duration_s=30)),
        None,
    ),
    "least-request": (
        TrafficPolicy(
            load_balancer=LoadBalancerSettings(simple=SimpleLB.LEAST_REQUEST, warmup_duration_s=5)
        ),
        None,
    ),
    "random": (TrafficPolicy(load_balancer=LoadBalancerSettings(simple=SimpleLB.RANDOM)), None),
    "ring-hash": (
        TrafficPolicy(
            load_balancer=LoadBalancerSettings(
                consistent_hash=ConsistentHash(http_header_name="x-user", minimum_ring_size=2048)
            )
        ),
        None,
    ),
    "maglev": (
        TrafficPolicy(
            load_balancer=LoadBalancerSettings(
                consistent_hash=ConsistentHash(
                    use_source_ip=True, algorithm=HashAlgorithm.MAGLEV, maglev_table_size=65537
                )
            )
        ),
        None,
    ),
    "outliers": (TrafficPolicy(outlier_detection=FULL_OUTLIER), ALL_EXTENSIONS),
    "failover": (
        TrafficPolicy(
            outlier_detection=OutlierDetection(),
            load_balancer=LoadBalancerSettings(
                locality_lb_setting=LocalityLbSetting(
                    failover=(LocalityFailover(from_="r1", to="r3"),)
                )
            ),
        ),
        None,
    ),
    "failover-priority": (
        TrafficPolicy(
            outlier_detection=OutlierDetection(),
            load_balancer=LoadBalancerSettings(
                locality_lb_setting=LocalityLbSetting(
                    failover_priority=("topology.kubernetes.io/region", "version=v1")
                )
            ),
        ),
        None,
    ),
    "distribute": (
        TrafficPolicy(load_balancer=LoadBalancerSettings(locality_lb_setting=DISTRIBUTE)),
        None,
    ),
    "distribute-least-request": (
        TrafficPolicy(
            load_balancer=LoadBalancerSettings(
                simple=SimpleLB.LEAST_REQUEST, locality_lb_setting=DISTRIBUTE
            )
        ),
        None,
    ),
    "distribute-ring-hash": (
        TrafficPolicy(
            load_balancer=LoadBalancerSettings(
                consistent_hash=ConsistentHash(http_header_name="x-user"),
                locality_lb_setting=DISTRIBUTE,
            )
        ),
        None,
    ),
    "distribute-maglev": (
        TrafficPolicy(
            load_balancer=LoadBalancerSettings(
                consistent_hash=ConsistentHash(
                    http_header_name="x-user", algorithm=HashAlgorithm.MAGLEV
                ),
                locality_lb_setting=DISTRIBUTE,
            )
        ),
        None,
    ),
    "pool": (TrafficPolicy(connection_pool=FULL_POOL), ALL_EXTENSIONS),
}
DEGRADED_HOST = "degraded"
SUBSET_HOST = "versions"


def feature_mesh(backend_port: int) -> MeshConfig:
    """One service per feature; the live backend is in the client's locality
    (priority 0), a dead one elsewhere gives the failover settings something to order."""
    entries = [
        service(
            host,
            endpoint(
                "127.0.0.1",
                port=backend_port,
                locality=CLIENT_LOCALITY,
                labels={"version": "v1"},
            ),
            endpoint("127.0.0.2", port=1, locality="r2/z2/s2", labels={"version": "v2"}),
            endpoint("127.0.0.3", port=1, locality="r3/z3", labels={"version": "v1"}),
        )
        for host in sorted(FEATURES)
    ]
    entries.append(service(DEGRADED_HOST, endpoint("127.0.0.1", port=backend_port), degraded=True))
    entries.append(
        service(
            SUBSET_HOST,
            endpoint("127.0.0.1", port=backend_port, labels={"version": "v1"}),
            endpoint("127.0.0.2", port=1, labels={"version": "v2"}),
        )
    )
    rules = [rule(host, policy, extensions=ext) for host, (policy, ext) in sorted(FEATURES.items())]
    rules.append(
        rule(
            SUBSET_HOST,
            TrafficPolicy(outlier_detection=OutlierDetection()),
            Subset("v1", {"version": "v1"}, TrafficPolicy(connection_pool=FULL_POOL)),
            Subset(
                "v2",
                {"version": "v2"},
                TrafficPolicy(
                    load_balancer=LoadBalancerSettings(
                        consistent_hash=ConsistentHash(http_header_name="x-user")
                    )
                ),
            ),
        )
    )
    return MeshConfig(service_entries=tuple(entries), destination_rules=tuple(rules))


def feature_hosts() -> list[str]:
    return [*sorted(FEATURES), DEGRADED_HOST, SUBSET_HOST]
