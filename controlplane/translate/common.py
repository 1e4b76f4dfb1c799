"""Small proto pieces shared by several builders."""

from __future__ import annotations

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from controlplane.translate.errors import TranslationError


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


def pack(message: Message) -> any_pb2.Any:
    """Pack into an Any deterministically (map fields in a fixed order)."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def duration(seconds: float) -> duration_pb2.Duration:
    """Seconds (float) as a Duration, rounded to the microsecond."""
    micros = round(seconds * 1_000_000)
    return duration_pb2.Duration(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def per_million(percent: float, where: str) -> percent_pb2.FractionalPercent:
    """A percentage in [0, 100] as a FractionalPercent per million (Istio's precision)."""
    if not 0 <= percent <= 100:
        raise TranslationError(f"{where}: percentage must be within [0, 100], got {percent}")
    return percent_pb2.FractionalPercent(
        numerator=round(percent * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )
