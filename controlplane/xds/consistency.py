"""Snapshot consistency: every reference a snapshot makes, it can satisfy.

A listener's HttpConnectionManager that fetches a route table over RDS needs
that RouteConfiguration; an EDS cluster needs its ClusterLoadAssignment.
(Route tables may name clusters that are missing: clients treat those routes
as failing, which is what the user configured.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from google.protobuf.message import Message

from controlplane.xds.errors import InconsistentSnapshotError
from controlplane.xds.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)

_HCM_TYPE_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name


def check_consistency(
    resources: Mapping[str, Mapping[str, Message]],
    consistent: Mapping[str, Mapping[str, Message]] | None = None,
) -> None:
    """Raise :class:`InconsistentSnapshotError` naming every dangling reference.

    ``consistent``: resources that passed this check. When ``resources`` keep all of
    their route configurations and load assignments, only the listeners and clusters
    that are not the very objects it holds can dangle, and only those are read.
    """
    routes = resources.get(ROUTE_CONFIG_TYPE_URL, {})
    assignments = resources.get(ENDPOINTS_TYPE_URL, {})
    listeners = resources.get(LISTENER_TYPE_URL, {})
    clusters = resources.get(CLUSTER_TYPE_URL, {})
    if (
        consistent is not None
        and consistent.get(ROUTE_CONFIG_TYPE_URL, {}).keys() <= routes.keys()
        and consistent.get(ENDPOINTS_TYPE_URL, {}).keys() <= assignments.keys()
    ):
        listeners = _not_in(listeners, consistent.get(LISTENER_TYPE_URL, {}))
        clusters = _not_in(clusters, consistent.get(CLUSTER_TYPE_URL, {}))
    problems = [
        f"listener {listener!r} needs route configuration {route!r}"
        for listener, message in sorted(listeners.items())
        for route in listener_route_names(message)
        if route not in routes
    ] + [
        f"cluster {cluster!r} needs cluster load assignment {eds!r}"
        for cluster, message in sorted(clusters.items())
        for eds in cluster_eds_names(message)
        if eds not in assignments
    ]
    if problems:
        raise InconsistentSnapshotError("inconsistent snapshot: " + "; ".join(problems))


def _not_in(messages: Mapping[str, Message], known: Mapping[str, Message]) -> dict[str, Message]:
    return {name: m for name, m in messages.items() if known.get(name) is not m}


def listener_route_names(listener: listener_pb2.Listener) -> Iterator[str]:
    """RDS names the listener's HttpConnectionManagers fetch (api_listener or filter chains)."""
    configs: list[any_pb2.Any] = []
    if listener.HasField("api_listener"):
        configs.append(listener.api_listener.api_listener)
    chains = [*listener.filter_chains]
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    configs.extend(f.typed_config for chain in chains for f in chain.filters)
    for manager in _managers(configs):
        if manager.HasField("rds"):
            yield manager.rds.route_config_name


def cluster_eds_names(cluster: cluster_pb2.Cluster) -> Iterator[str]:
    """The EDS resource an EDS cluster fetches (its service_name, else its name)."""
    if cluster.type == cluster_pb2.Cluster.EDS:
        yield cluster.eds_cluster_config.service_name or cluster.name


def _managers(configs: Iterable[any_pb2.Any]) -> Iterator[hcm_pb2.HttpConnectionManager]:
    for config in configs:
        if config.type_url == _HCM_TYPE_URL:
            manager = hcm_pb2.HttpConnectionManager()
            config.Unpack(manager)
            yield manager
