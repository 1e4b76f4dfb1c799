"""meshlib's xDS client: bootstrap, one ADS stream, validated resources, watchers.

client = XdsClient(load_bootstrap())
cancel = client.watch(LISTENER, "sessions:50051", CallbackWatcher(on_changed=print))
cancel_all = client.watch_all(LISTENER, CallbackWatcher(on_changed=print))  # {name: listener}
"""

from meshlib.xds_client.bootstrap import (
    Bootstrap,
    ChannelCreds,
    NodeConfig,
    XdsServerConfig,
    load_bootstrap,
    parse_bootstrap,
)
from meshlib.xds_client.channel import open_channel
from meshlib.xds_client.client import XdsClient
from meshlib.xds_client.resource_types import (
    CLUSTER,
    ENDPOINTS,
    LISTENER,
    RESOURCE_TYPES,
    ROUTE_CONFIG,
    ResourceType,
    resource_type_for,
)
from meshlib.xds_client.watchers import CallbackWatcher, CancelWatch, ResourceWatcher

__all__ = [
    "CLUSTER",
    "ENDPOINTS",
    "LISTENER",
    "RESOURCE_TYPES",
    "ROUTE_CONFIG",
    "Bootstrap",
    "CallbackWatcher",
    "CancelWatch",
    "ChannelCreds",
    "NodeConfig",
    "ResourceType",
    "ResourceWatcher",
    "XdsClient",
    "XdsServerConfig",
    "load_bootstrap",
    "open_channel",
    "parse_bootstrap",
    "resource_type_for",
]
