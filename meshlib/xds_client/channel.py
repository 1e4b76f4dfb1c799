"""The one place that turns a bootstrap server entry into a gRPC channel.

Only ``insecure`` credentials exist today; TLS (and later mTLS with meshlib's
own identity) is added here, so the ADS stream and the registration client
pick it up together.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from meshlib.errors import BootstrapError
from meshlib.xds_client.bootstrap import XdsServerConfig

ChannelOptions = Sequence[tuple[str, int | str]]


def open_channel(server: XdsServerConfig, *, options: ChannelOptions = ()) -> grpc.Channel:
    """Open a channel to ``server`` with the credentials its bootstrap entry selects.

    ``options`` are extra grpc channel arguments (e.g. reconnect backoff).
    """
    creds = server.selected_creds
    if creds.type == "insecure":
        # grpc accepts the bootstrap's ``server_uri`` forms (``host:port``, ``dns:///...``).
        return grpc.insecure_channel(server.server_uri, options=list(options))
    raise BootstrapError(
        f"xds server {server.server_uri}: channel_creds type {creds.type!r} is not supported yet"
    )
