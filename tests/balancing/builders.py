"""Small builders for EDS and CDS models used across the balancing tests."""

from __future__ import annotations

from collections.abc import Sequence

from meshlib.balancing._locality import build_picker
from meshlib.balancing.picker import Picker
from meshlib.balancing.policy import get_policy
from meshlib.xds_client.resources import (
    ClusterResource,
    ClusterType,
    CommonLbConfig,
    Endpoint,
    EndpointsResource,
    HealthStatus,
    LbConfig,
    Locality,
    LocalityEndpoints,
)

HEALTHY = HealthStatus.HEALTHY


def ep(
    port: int, health: HealthStatus = HEALTHY, weight: int = 1, address: str = "10.0.0.1"
) -> Endpoint:
    return Endpoint(address, port, health, weight)


def loc(
    zone: str,
    endpoints: Sequence[Endpoint],
    *,
    weight: int = 1,
    priority: int = 0,
) -> LocalityEndpoints:
    return LocalityEndpoints(Locality("r", zone), weight, priority, tuple(endpoints))


def eds(*localities: LocalityEndpoints, overprovisioning: int = 140) -> EndpointsResource:
    return EndpointsResource("c", localities, overprovisioning_factor=overprovisioning)


def cluster(
    policy: str = "round_robin",
    config: LbConfig | None = None,
    common: CommonLbConfig | None = None,
    **fields: object,
) -> ClusterResource:
    return ClusterResource(
        "c",
        ClusterType.EDS,
        "c",
        lb_policy=policy,
        lb_config=config,
        common_lb_config=common if common is not None else CommonLbConfig(),
        **fields,  # type: ignore[arg-type]
    )


def picker(
    *localities: LocalityEndpoints,
    policy: str = "round_robin",
    common: CommonLbConfig | None = None,
) -> Picker:
    return build_picker(
        "c", eds(*localities), get_policy(policy), common=common or CommonLbConfig()
    )


def ports(endpoints: Sequence[Endpoint]) -> list[int]:
    return [e.port for e in endpoints]
