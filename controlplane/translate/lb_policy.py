"""DestinationRule ``loadBalancer`` -> the cluster's load-balancing policy.

ROUND_ROBIN and consistentHash ringHash use the legacy ``lb_policy`` enum with
its ``*_lb_config`` fields, which Envoy, gRPC (gRFC A42) and meshlib all read.
grpcio's C core NACKs the LEAST_REQUEST, RANDOM and MAGLEV enums ("LB policy
is not supported"), so those clusters carry ``load_balancing_policy`` (gRFC
A52) instead: the wanted policy first, then a fallback gRPC implements --
[LeastRequest, RoundRobin], [Random, RoundRobin], [Maglev, RingHash]. Envoy and
meshlib take the first entry, gRPC the first it knows.

``locality_weighted`` (set when ``distribute`` gives localities their weights)
goes into the typed configs too: with ``load_balancing_policy`` Envoy reads
locality weighting from the policy, not from ``common_lb_config``.

Istio's default (no ``loadBalancer``) is LEAST_REQUEST for Envoy sidecars;
meshlib keeps ROUND_ROBIN, gRPC's default, so an unconfigured service behaves
the same in every client. ``PASSTHROUGH`` (connect to the caller's original
destination) has no proxyless meaning and is refused.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import extension_pb2
from envoy.extensions.load_balancing_policies.common.v3 import common_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.maglev.v3 import maglev_pb2
from envoy.extensions.load_balancing_policies.random.v3 import random_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from google.protobuf.message import Message

from controlplane.traffic_model import (
    ConsistentHash,
    HashAlgorithm,
    LoadBalancerSettings,
    SimpleLB,
)
from controlplane.translate.common import duration, pack
from controlplane.translate.errors import TranslationError

Cluster = cluster_pb2.Cluster
LEAST_REQUEST_CHOICE_COUNT = 2  # power of two choices (gRFC A48's default)
DEFAULT_MINIMUM_RING_SIZE = 1024  # Envoy's and gRPC's default
MAX_RING_SIZE = 8 * 1024 * 1024  # gRFC A42: larger values are NACKed
MAX_MAGLEV_TABLE_SIZE = 5_000_011  # Envoy's upper bound (a prime)
_POLICY_PREFIX = "envoy.load_balancing_policies."


def apply_load_balancer(
    cluster: cluster_pb2.Cluster,
    settings: LoadBalancerSettings | None,
    where: str,
    *,
    locality_weighted: bool = False,
) -> None:
    """Set the LB fields of ``cluster``; ``where`` names the rule in errors."""
    cluster.lb_policy = Cluster.ROUND_ROBIN
    if settings is None:
        return
    if settings.consistent_hash is not None:
        _no_warmup(settings, where, "consistentHash")
        _consistent_hash(cluster, settings.consistent_hash, where, locality_weighted)
        return
    simple = settings.simple or SimpleLB.ROUND_ROBIN
    if simple is SimpleLB.PASSTHROUGH:
        raise TranslationError(
            f"{where}: loadBalancer.simple PASSTHROUGH is not supported for proxyless "
            "clients (there is no original destination to pass through to)"
        )
    if simple is SimpleLB.RANDOM:
        _no_warmup(settings, where, "simple RANDOM")
        random = random_pb2.Random(locality_lb_config=_locality(locality_weighted))
        _typed(cluster, ("random", random), ("round_robin", round_robin_pb2.RoundRobin()))
        return
    slow_start = _slow_start(settings.warmup_duration_s)
    if simple is SimpleLB.LEAST_REQUEST:
        least_request = least_request_pb2.LeastRequest(
            slow_start_config=slow_start, locality_lb_config=_locality(locality_weighted)
        )
        least_request.choice_count.value = LEAST_REQUEST_CHOICE_COUNT
        fallback = round_robin_pb2.RoundRobin()
        _typed(cluster, ("least_request", least_request), ("round_robin", fallback))
        return
    if settings.warmup_duration_s is not None:
        window = duration(settings.warmup_duration_s)
        cluster.round_robin_lb_config.slow_start_config.slow_start_window.CopyFrom(window)


def _slow_start(warmup_s: float | None) -> common_pb2.SlowStartConfig | None:
    if warmup_s is None:
        return None
    return common_pb2.SlowStartConfig(slow_start_window=duration(warmup_s))


def _locality(weighted: bool) -> common_pb2.LocalityLbConfig | None:
    if not weighted:
        return None
    return common_pb2.LocalityLbConfig(
        locality_weighted_lb_config=common_pb2.LocalityLbConfig.LocalityWeightedLbConfig()
    )


def _no_warmup(settings: LoadBalancerSettings, where: str, what: str) -> None:
    if settings.warmup_duration_s is not None:
        raise TranslationError(
            f"{where}: loadBalancer.warmupDurationSecs works with simple ROUND_ROBIN or "
            f"LEAST_REQUEST only, not with {what}"
        )


def _consistent_hash(
    cluster: cluster_pb2.Cluster, hashing: ConsistentHash, where: str, locality_weighted: bool
) -> None:
    if hashing.algorithm is HashAlgorithm.MAGLEV:
        maglev = maglev_pb2.Maglev()
        size = hashing.maglev_table_size
        if size is not None:
            if size > MAX_MAGLEV_TABLE_SIZE or not _is_prime(size):
                raise TranslationError(
                    f"{where}: consistentHash.maglev.tableSize must be a prime up to "
                    f"{MAX_MAGLEV_TABLE_SIZE}, got {size}"
                )
            maglev.table_size.value = size
        ring_hash = ring_hash_pb2.RingHash(hash_function=ring_hash_pb2.RingHash.XX_HASH)
        ring_hash.minimum_ring_size.value = DEFAULT_MINIMUM_RING_SIZE
        if locality_weighted:
            weighted = common_pb2.LocalityLbConfig.LocalityWeightedLbConfig()
            maglev.locality_weighted_lb_config.CopyFrom(weighted)
            ring_hash.locality_weighted_lb_config.CopyFrom(weighted)
        _typed(cluster, ("maglev", maglev), ("ring_hash", ring_hash))
        return
    size = hashing.minimum_ring_size or DEFAULT_MINIMUM_RING_SIZE
    if size > MAX_RING_SIZE:
        raise TranslationError(
            f"{where}: consistentHash.ringHash.minimumRingSize {size} is above {MAX_RING_SIZE}"
        )
    cluster.lb_policy = Cluster.RING_HASH
    cluster.ring_hash_lb_config.minimum_ring_size.value = size
    cluster.ring_hash_lb_config.hash_function = Cluster.RingHashLbConfig.XX_HASH


def _typed(cluster: cluster_pb2.Cluster, *policies: tuple[str, Message]) -> None:
    """Replace the enum by ``load_balancing_policy`` listing ``policies`` in order."""
    cluster.ClearField("lb_policy")
    cluster.load_balancing_policy.CopyFrom(
        cluster_pb2.LoadBalancingPolicy(
            policies=[
                cluster_pb2.LoadBalancingPolicy.Policy(
                    typed_extension_config=extension_pb2.TypedExtensionConfig(
                        name=_POLICY_PREFIX + name, typed_config=pack(config)
                    )
                )
                for name, config in policies
            ]
        )
    )


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    factor = 2
    while factor * factor <= n:
        if n % factor == 0:
            return False
        factor += 1
    return True
