"""A cluster's load-balancing policy and its config, plus common_lb_config.

The policy comes from ``load_balancing_policy`` (the first entry meshlib
supports, gRFC A52; ``wrr_locality`` is unwrapped since meshlib always weights
localities) or else the ``lb_policy`` enum with its ``*_lb_config``. Checks are
gRPC's (A42 ring sizes, A48 choice_count) and Envoy's (maglev table size prime,
xxHash only, percentages in range).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.maglev.v3 import maglev_pb2
from envoy.extensions.load_balancing_policies.pick_first.v3 import pick_first_pb2
from envoy.extensions.load_balancing_policies.random.v3 import random_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2

from meshlib.xds_client._decode_util import (
    DecodeContext,
    enum_name,
    percent,
    positive_duration_s,
    reject_if_set,
    unpack_any,
    wrapped,
)
from meshlib.xds_client.cluster_policies import DEFAULT_MAGLEV_TABLE_SIZE, MAX_RING_SIZE
from meshlib.xds_client.resources import (
    CommonLbConfig,
    LbConfig,
    LeastRequestConfig,
    MaglevConfig,
    PickFirstConfig,
    RandomConfig,
    RingHashConfig,
    RoundRobinConfig,
    SlowStartConfig,
    ZoneAwareLbConfig,
)

_Cluster = cluster_pb2.Cluster
_MAX_MAGLEV_TABLE_SIZE = 5_000_011  # Envoy's upper bound


@dataclass(frozen=True, slots=True)
class LbChoice:
    """The decoded policy: its registry name, config, and a locality setting if it has one."""

    name: str
    config: LbConfig
    locality: tuple[ZoneAwareLbConfig | None, bool] | None = None  # (zone_aware, weighted)


def lb_choice(ctx: DecodeContext, msg: Any) -> LbChoice:
    """The cluster's LB policy, from load_balancing_policy or the lb_policy enum."""
    if msg.HasField("load_balancing_policy"):
        return _typed_policy(ctx, msg.load_balancing_policy, "load_balancing_policy")
    policy = msg.lb_policy
    if policy == _Cluster.ROUND_ROBIN:
        cfg = msg.round_robin_lb_config
        where = "round_robin_lb_config"
        return LbChoice("round_robin", RoundRobinConfig(slow_start=_slow_start(ctx, cfg, where)))
    if policy == _Cluster.LEAST_REQUEST:
        return LbChoice(
            "least_request",
            _least_request(ctx, msg.least_request_lb_config, "least_request_lb_config"),
        )
    if policy == _Cluster.RING_HASH:
        cfg = msg.ring_hash_lb_config
        if cfg.hash_function != _Cluster.RingHashLbConfig.XX_HASH:
            raise ctx.error("ring_hash_lb_config.hash_function: only XX_HASH is supported")
        return LbChoice("ring_hash", _ring_sizes(ctx, cfg, "ring_hash_lb_config"))
    if policy == _Cluster.MAGLEV:
        return LbChoice("maglev", _maglev(ctx, msg.maglev_lb_config, "maglev_lb_config"))
    if policy == _Cluster.RANDOM:
        return LbChoice("random", RandomConfig())
    name = enum_name(ctx, _Cluster.LbPolicy, policy, "lb_policy")
    raise ctx.error(f"lb_policy {name} is not supported")


def common_lb_config(ctx: DecodeContext, msg: Any, choice: LbChoice) -> CommonLbConfig:
    """Cluster.common_lb_config; a locality setting in a typed policy takes precedence."""
    where = "common_lb_config"
    common = msg.common_lb_config
    zone_aware: ZoneAwareLbConfig | None = None
    weighted = False
    if msg.HasField("common_lb_config"):
        reject_if_set(ctx, common, ("consistent_hashing_lb_config",), where)
        if common.HasField("zone_aware_lb_config"):
            zone_aware = _zone_aware(
                ctx, common.zone_aware_lb_config, f"{where}.zone_aware_lb_config"
            )
        weighted = common.HasField("locality_weighted_lb_config")
    if choice.locality is not None:
        zone_aware, weighted = choice.locality
    return CommonLbConfig(
        healthy_panic_threshold_percent=percent(
            ctx, common, "healthy_panic_threshold", where, 50.0
        ),
        zone_aware=zone_aware,
        locality_weighted=weighted,
    )


_TYPED_POLICIES: dict[str, Any] = {
    "type.googleapis.com/" + cls.DESCRIPTOR.full_name: cls
    for cls in (
        round_robin_pb2.RoundRobin,
        least_request_pb2.LeastRequest,
        random_pb2.Random,
        ring_hash_pb2.RingHash,
        maglev_pb2.Maglev,
        pick_first_pb2.PickFirst,
    )
}
_WRR_LOCALITY_URL = "type.googleapis.com/" + wrr_locality_pb2.WrrLocality.DESCRIPTOR.full_name


def _typed_policy(ctx: DecodeContext, policy: Any, where: str) -> LbChoice:
    """The first policy in the list meshlib supports (gRFC A52)."""
    seen: list[str] = []
    for i, entry in enumerate(policy.policies):
        at = f"{where}.policies[{i}].typed_extension_config.typed_config"
        config = entry.typed_extension_config.typed_config
        if config.type_url == _WRR_LOCALITY_URL:
            wrr = unpack_any(ctx, config, wrr_locality_pb2.WrrLocality, at)
            return _typed_policy(ctx, wrr.endpoint_picking_policy, f"{at}.endpoint_picking_policy")
        cls = _TYPED_POLICIES.get(config.type_url)
        if cls is not None:
            return _typed_config(ctx, unpack_any(ctx, config, cls, at), at)
        seen.append(config.type_url or "(no typed_config)")
    listed = ", ".join(seen) or "none"
    raise ctx.error(f"{where}: no supported policy (got {listed})")


def _typed_config(ctx: DecodeContext, cfg: Any, where: str) -> LbChoice:
    if isinstance(cfg, round_robin_pb2.RoundRobin):
        slow = _slow_start(ctx, cfg, where)
        return LbChoice(
            "round_robin", RoundRobinConfig(slow_start=slow), _locality(ctx, cfg, where)
        )
    if isinstance(cfg, least_request_pb2.LeastRequest):
        if wrapped(cfg, "enable_full_scan", False) or cfg.selection_method != 0:
            raise ctx.error(f"{where}: full-scan selection is not supported")
        config = _least_request(ctx, cfg, where)
        return LbChoice("least_request", config, _locality(ctx, cfg, where))
    if isinstance(cfg, random_pb2.Random):
        return LbChoice("random", RandomConfig(), _locality(ctx, cfg, where))
    if isinstance(cfg, pick_first_pb2.PickFirst):
        return LbChoice(
            "pick_first", PickFirstConfig(shuffle_address_list=cfg.shuffle_address_list)
        )
    reject_if_set(ctx, cfg, ("consistent_hashing_lb_config",), where)
    weighted = (None, True) if cfg.HasField("locality_weighted_lb_config") else None
    if isinstance(cfg, ring_hash_pb2.RingHash):
        if cfg.hash_function not in (0, 1):  # DEFAULT_HASH (xxHash) or XX_HASH
            raise ctx.error(f"{where}.hash_function: only XX_HASH is supported")
        if cfg.use_hostname_for_hashing or cfg.HasField("hash_balance_factor"):
            raise ctx.error(f"{where}: use_hostname_for_hashing / hash_balance_factor unsupported")
        return LbChoice("ring_hash", _ring_sizes(ctx, cfg, where), weighted)
    return LbChoice("maglev", _maglev(ctx, cfg, where), weighted)


def _locality(
    ctx: DecodeContext, cfg: Any, where: str
) -> tuple[ZoneAwareLbConfig | None, bool] | None:
    if not cfg.HasField("locality_lb_config"):
        return None
    loc = cfg.locality_lb_config
    at = f"{where}.locality_lb_config"
    if loc.HasField("zone_aware_lb_config"):
        return _zone_aware(ctx, loc.zone_aware_lb_config, f"{at}.zone_aware_lb_config"), False
    return None, loc.HasField("locality_weighted_lb_config")


def _zone_aware(ctx: DecodeContext, cfg: Any, where: str) -> ZoneAwareLbConfig:
    return ZoneAwareLbConfig(
        routing_enabled_percent=percent(ctx, cfg, "routing_enabled", where, 100.0),
        min_cluster_size=wrapped(cfg, "min_cluster_size", 6),
        fail_traffic_on_panic=cfg.fail_traffic_on_panic,
    )


def _least_request(ctx: DecodeContext, cfg: Any, where: str) -> LeastRequestConfig:
    count = wrapped(cfg, "choice_count", 2)
    if count < 2:  # gRFC A48
        raise ctx.error(f"{where}.choice_count: must be >= 2, got {count}")
    bias = 1.0
    if cfg.HasField("active_request_bias"):
        bias = cfg.active_request_bias.default_value
        if bias < 0:
            raise ctx.error(f"{where}.active_request_bias: must be >= 0, got {bias}")
    return LeastRequestConfig(
        choice_count=count, active_request_bias=bias, slow_start=_slow_start(ctx, cfg, where)
    )


def _slow_start(ctx: DecodeContext, cfg: Any, where: str) -> SlowStartConfig | None:
    if not cfg.HasField("slow_start_config"):
        return None
    slow = cfg.slow_start_config
    at = f"{where}.slow_start_config"
    window = positive_duration_s(ctx, slow, "slow_start_window", at)
    if window is None:
        return None  # Envoy: no window, no slow start
    aggression = 1.0
    if slow.HasField("aggression"):
        aggression = slow.aggression.default_value
        if aggression <= 0:
            raise ctx.error(f"{at}.aggression: must be greater than 0, got {aggression}")
    return SlowStartConfig(
        window_s=window,
        aggression=aggression,
        min_weight_percent=percent(ctx, slow, "min_weight_percent", at, 10.0),
    )


def _ring_sizes(ctx: DecodeContext, cfg: Any, where: str) -> RingHashConfig:
    low = wrapped(cfg, "minimum_ring_size", 1024)
    high = wrapped(cfg, "maximum_ring_size", MAX_RING_SIZE)
    if low == 0:
        raise ctx.error(f"{where}.minimum_ring_size: must be greater than 0")
    if low > MAX_RING_SIZE:
        raise ctx.error(f"{where}.minimum_ring_size: above {MAX_RING_SIZE}")
    if high > MAX_RING_SIZE:
        raise ctx.error(f"{where}.maximum_ring_size: above {MAX_RING_SIZE}")
    if low > high:
        raise ctx.error(f"{where}: minimum_ring_size is above maximum_ring_size")
    return RingHashConfig(minimum_ring_size=low, maximum_ring_size=high)


def _maglev(ctx: DecodeContext, cfg: Any, where: str) -> MaglevConfig:
    size = wrapped(cfg, "table_size", DEFAULT_MAGLEV_TABLE_SIZE)
    if size > _MAX_MAGLEV_TABLE_SIZE:
        raise ctx.error(f"{where}.table_size: {size} is above {_MAX_MAGLEV_TABLE_SIZE}")
    if not _is_prime(size):
        raise ctx.error(f"{where}.table_size: {size} is not a prime number")
    return MaglevConfig(table_size=size)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True
