"""From one EDS resource to a picker: priority, then locality, then endpoint.

Only usable endpoints count (HEALTHY or UNKNOWN, as gRPC and Envoy route).
The lowest priority number that still has a usable endpoint in a locality of
positive weight takes all traffic (failover); within it the cluster's LB
policy spreads requests over localities and endpoints.
"""

from __future__ import annotations

from dataclasses import replace

from meshlib.balancing.picker import FailingPicker, Picker
from meshlib.balancing.policy import LbPolicy
from meshlib.xds_client.resources import EndpointsResource, LocalityEndpoints


def usable_localities(resource: EndpointsResource) -> list[LocalityEndpoints]:
    """The localities of the best priority, each trimmed to its usable endpoints."""
    by_priority: dict[int, list[LocalityEndpoints]] = {}
    for loc in resource.localities:
        if loc.weight <= 0:
            continue
        usable = tuple(e for e in loc.endpoints if e.health.usable)
        if usable:
            trimmed = loc if len(usable) == len(loc.endpoints) else replace(loc, endpoints=usable)
            by_priority.setdefault(loc.priority, []).append(trimmed)
    if not by_priority:
        return []
    return by_priority[min(by_priority)]


def build_picker(cluster: str, resource: EndpointsResource, policy: LbPolicy) -> Picker:
    """A picker for ``cluster``; one that always fails (saying why) when nothing is usable."""
    localities = usable_localities(resource)
    if not localities:
        total = len(resource.all_endpoints())
        return FailingPicker(
            f"cluster {cluster!r} has no usable endpoint "
            f"({total} endpoint(s) in EDS {resource.cluster_name!r}, none HEALTHY or UNKNOWN)"
        )
    return policy.build(cluster, localities)
