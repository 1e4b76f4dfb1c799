"""The immutable per-service view the request path reads.

A :class:`ServiceSnapshot` pairs one route table with the state of every
cluster it references. It is built on the xDS client's thread and published
by swapping one reference, so a request reads it without locks and always sees
one consistent version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from meshlib.balancing.picker import (
    NO_PICK_CONTEXT,
    NOOP_REPORTER,
    FailingPicker,
    LoadReporter,
    PickContext,
    Picker,
)
from meshlib.balancing.policy import UnknownPolicyError, get_policy
from meshlib.balancing.runtime import ClusterRuntime
from meshlib.errors import NoHealthyEndpointError, RoutingError
from meshlib.observability.logging import get_logger
from meshlib.resilience.route_resilience import NO_SERVICE_RESILIENCE, ServiceResilience
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.routing._route_table import RouteResult, RouteTable
from meshlib.routing.connection_pool import DEFAULT_POOL_SETTINGS, PoolSettings, pool_settings
from meshlib.xds_client.resources import (
    ClusterResource,
    ClusterType,
    Endpoint,
    EndpointsResource,
    Locality,
    LocalityEndpoints,
)

if TYPE_CHECKING:
    from meshlib.security.pki import WorkloadCertificate

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ClusterState:
    """One cluster as the data path sees it: its resource, endpoints and picker."""

    name: str
    picker: Picker
    resource: ClusterResource | None = None
    endpoints: EndpointsResource | None = None
    #: Authorities (``host:port``) of every endpoint in EDS, usable or not.
    authorities: frozenset[str] = frozenset()
    #: Told about every call (least request, outlier detection); outlives rebuilds.
    reporter: LoadReporter = NOOP_REPORTER
    #: Connection-pool settings for the endpoint clients (connect / idle timeouts, HTTP/2).
    pool: PoolSettings = DEFAULT_POOL_SETTINGS


def pick_endpoint(
    state: ClusterState | None,
    target: str,
    cluster_name: str,
    request_hash: int | None,
    excluded: frozenset[str],
) -> Endpoint:
    """A try's endpoint from its cluster (the HTTP and gRPC adapters' one pick): the
    picker's plain rotation when there is no hash and nothing to avoid. RoutingError
    (NoHealthyEndpointError when the cluster is unknown)."""
    if state is None:
        raise NoHealthyEndpointError(f"service {target}: cluster {cluster_name!r} is unknown")
    if request_hash is None and not excluded:
        return state.picker.pick()
    return state.picker.pick(PickContext(request_hash, excluded))


def failed_cluster(name: str, reason: str) -> ClusterState:
    return ClusterState(name, FailingPicker(reason))


def build_cluster_state(
    cluster: ClusterResource,
    endpoints: EndpointsResource | None,
    runtime: ClusterRuntime | None = None,
    *,
    local_locality: Locality | None = None,
    certificate: WorkloadCertificate | None = None,
) -> ClusterState:
    """The cluster state for a CDS resource and (for EDS clusters) its endpoints.

    ``runtime`` carries active requests, slow-start clocks and ejections across
    rebuilds (pass the cluster's previous one); None starts a fresh one.
    ``local_locality`` (the bootstrap node's) drives zone-aware routing.
    ``certificate``: the workload certificate a cluster with mTLS presents.
    """
    name = cluster.name
    if cluster.tls is not None and certificate is None:
        return failed_cluster(
            name,
            f"cluster {name!r} requires mTLS (CDS UpstreamTlsContext) but this mesh has no "
            "workload identity: give Mesh a join token (token=, MESH_TOKEN, MESH_TOKEN_FILE) "
            "or a bootstrap with certificate_providers",
        )
    if cluster.type is ClusterType.LOGICAL_DNS:
        if not cluster.dns_host or cluster.dns_port is None:
            return failed_cluster(name, f"LOGICAL_DNS cluster {name!r} has no host and port")
        endpoint = Endpoint(address=cluster.dns_host, port=cluster.dns_port)
        endpoints = EndpointsResource(name, (LocalityEndpoints(Locality(), 1, 0, (endpoint,)),))
        cluster = replace(cluster, lb_policy="pick_first", lb_config=None)
    elif cluster.type is not ClusterType.EDS:
        return failed_cluster(
            name, f"cluster {name!r}: cluster type {cluster.type.value} is not supported yet"
        )
    if endpoints is None:
        return failed_cluster(name, f"cluster {name!r}: no endpoints received yet")
    try:
        policy = get_policy(cluster.lb_policy)
    except UnknownPolicyError as exc:
        return failed_cluster(name, f"cluster {name!r}: {exc}")
    if runtime is None:
        runtime = ClusterRuntime(name, local_locality=local_locality)
    try:
        runtime.update(cluster, endpoints, policy)
    except ValueError as exc:
        return failed_cluster(name, f"cluster {name!r}: {exc}")
    return ClusterState(
        name,
        runtime,
        cluster,
        endpoints,
        runtime.authorities,
        runtime,
        pool_settings(cluster, certificate),
    )


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """Everything needed to route a request to the service ``target`` (``HOST:PORT``)."""

    target: str
    route_table: RouteTable
    clusters: Mapping[str, ClusterState]
    version: int
    authorities: frozenset[str] = field(default=frozenset())
    #: Each route's compiled retry / timeout / fault / rate-limit policy.
    resilience: ServiceResilience = NO_SERVICE_RESILIENCE
    #: Each cluster's thresholds, retry budget and breaker (outlive snapshots).
    cluster_resilience: Mapping[str, ClusterResilience] = field(default_factory=dict)

    def resilience_of(self, cluster: str) -> ClusterResilience:
        """The cluster's resilience runtime (default thresholds if CDS sent none yet)."""
        found = self.cluster_resilience.get(cluster)
        return found if found is not None else _fallback_resilience(cluster)

    def route(
        self,
        authority: str,
        path: str,
        headers: Mapping[str, str],
        ctx: PickContext = NO_PICK_CONTEXT,
    ) -> tuple[RouteResult, ClusterState, Endpoint]:
        """Match a route, then pick an endpoint of its cluster. Raises RoutingError."""
        result = self.route_table.match(authority, path, headers, fallback_authority=self.target)
        cluster = self.clusters.get(result.cluster)
        if cluster is None:
            raise NoHealthyEndpointError(
                f"service {self.target}: route {result.route.name!r} names unknown cluster "
                f"{result.cluster!r}"
            )
        return result, cluster, cluster.picker.pick(ctx)


@dataclass(frozen=True, slots=True)
class ServiceFailure:
    """Why the service cannot take requests now; each request raises a fresh error."""

    target: str
    error_type: type[RoutingError]
    message: str

    def error(self) -> RoutingError:
        return self.error_type(self.message)


ServiceView = ServiceSnapshot | ServiceFailure

_FALLBACK_RESILIENCE: dict[str, ClusterResilience] = {}


def _fallback_resilience(cluster: str) -> ClusterResilience:
    """Default thresholds for a cluster a snapshot has no runtime for (tests, aggregates)."""
    found = _FALLBACK_RESILIENCE.get(cluster)
    if found is None:
        found = _FALLBACK_RESILIENCE.setdefault(cluster, ClusterResilience(cluster))
    return found
