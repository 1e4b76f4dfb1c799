"""Type URLs of the resources translate produces.

Built from the Envoy v3 descriptors (the same strings meshlib's client uses),
so the control plane does not import the client library.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

_PREFIX = "type.googleapis.com/"
LISTENER_TYPE_URL: str = _PREFIX + listener_pb2.Listener.DESCRIPTOR.full_name
ROUTE_CONFIG_TYPE_URL: str = _PREFIX + route_pb2.RouteConfiguration.DESCRIPTOR.full_name
CLUSTER_TYPE_URL: str = _PREFIX + cluster_pb2.Cluster.DESCRIPTOR.full_name
ENDPOINTS_TYPE_URL: str = _PREFIX + endpoint_pb2.ClusterLoadAssignment.DESCRIPTOR.full_name
