"""xDS resource types: each a type URL, a protobuf class and a decoder to a model.

As in grpc-go's xdsclient, the ADS machinery knows nothing about Listeners or
Clusters: it looks the type up by URL and asks it to decode. Adding a type is
adding one ResourceType here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import message as pb_message

from meshlib.errors import XdsValidationError
from meshlib.xds_client.decode_cluster import decode_cluster
from meshlib.xds_client.decode_endpoints import decode_cluster_load_assignment
from meshlib.xds_client.decode_listener import decode_listener
from meshlib.xds_client.decode_route import decode_route_configuration
from meshlib.xds_client.inbound_resources import InboundListenerResource
from meshlib.xds_client.resources import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
    ClusterResource,
    EndpointsResource,
    ListenerResource,
    RouteConfigResource,
)

T = TypeVar("T")

# SotW responses may wrap each resource in envoy.service.discovery.v3.Resource.
RESOURCE_WRAPPER_TYPE_URL = "type.googleapis.com/envoy.service.discovery.v3.Resource"


@dataclass(frozen=True)
class ResourceType(Generic[T]):
    """One xDS resource type: how to recognise, name and decode it."""

    type_url: str
    name: str  # short name, e.g. "Listener"
    message_class: Any  # the generated protobuf class
    name_field: str  # the proto field holding the resource name
    decoder: Callable[[Any], T]  # protobuf message -> validated model
    model_name: Callable[[T], str]  # model -> resource name
    all_resources_required_in_sotw: bool

    def decode(self, any_msg: Any) -> T:
        """Decode and validate one ``google.protobuf.Any``; raises XdsValidationError."""
        return self.decoder(self._unpack(any_msg))

    def resource_name(self, any_msg: Any) -> str | None:
        """The resource's name if the bytes parse at all (to blame a NACK on it)."""
        try:
            return str(getattr(self._unpack(any_msg), self.name_field)) or None
        except Exception:  # any failure means "no readable name"; never raises
            return None

    def _unpack(self, any_msg: Any) -> Any:
        if any_msg.type_url == RESOURCE_WRAPPER_TYPE_URL:
            wrapper = discovery_pb2.Resource()
            try:
                wrapper.ParseFromString(any_msg.value)
            except pb_message.DecodeError as exc:
                raise XdsValidationError(f"{self.name}: cannot parse Resource wrapper") from exc
            any_msg = wrapper.resource
        if any_msg.type_url != self.type_url:
            raise XdsValidationError(
                f"{self.name}: resource of type {any_msg.type_url!r} in a {self.name} response"
            )
        msg = self.message_class()
        try:
            msg.ParseFromString(any_msg.value)
        except pb_message.DecodeError as exc:
            raise XdsValidationError(f"{self.name}: cannot parse resource: {exc}") from exc
        return msg


LISTENER: ResourceType[ListenerResource | InboundListenerResource] = ResourceType(
    type_url=LISTENER_TYPE_URL,
    name="Listener",
    message_class=listener_pb2.Listener,
    name_field="name",
    decoder=decode_listener,
    model_name=lambda r: r.name,
    all_resources_required_in_sotw=True,
)
ROUTE_CONFIG: ResourceType[RouteConfigResource] = ResourceType(
    type_url=ROUTE_CONFIG_TYPE_URL,
    name="RouteConfiguration",
    message_class=route_pb2.RouteConfiguration,
    name_field="name",
    decoder=decode_route_configuration,
    model_name=lambda r: r.name,
    all_resources_required_in_sotw=False,
)
CLUSTER: ResourceType[ClusterResource] = ResourceType(
    type_url=CLUSTER_TYPE_URL,
    name="Cluster",
    message_class=cluster_pb2.Cluster,
    name_field="name",
    decoder=decode_cluster,
    model_name=lambda r: r.name,
    all_resources_required_in_sotw=True,
)
ENDPOINTS: ResourceType[EndpointsResource] = ResourceType(
    type_url=ENDPOINTS_TYPE_URL,
    name="ClusterLoadAssignment",
    message_class=endpoint_pb2.ClusterLoadAssignment,
    name_field="cluster_name",
    decoder=decode_cluster_load_assignment,
    model_name=lambda r: r.cluster_name,
    all_resources_required_in_sotw=False,
)

RESOURCE_TYPES: Mapping[str, ResourceType[Any]] = MappingProxyType(
    {t.type_url: t for t in (LISTENER, ROUTE_CONFIG, CLUSTER, ENDPOINTS)}
)


def resource_type_for(type_url: str) -> ResourceType[Any] | None:
    """The registered resource type for ``type_url``, or None if meshlib does not know it."""
    return RESOURCE_TYPES.get(type_url)
