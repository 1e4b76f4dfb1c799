"""Small proto pieces shared by several builders."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, config_source_pb2


def ads_config_source() -> config_source_pb2.ConfigSource:
    """ "Fetch it over the same ADS stream", in the v3 API."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def socket_address(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )
