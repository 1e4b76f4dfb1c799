"""``ring_hash``: Envoy's ring (the same as gRPC's, gRFC A42), so meshlib, Envoy
and grpcio send one hash key to the same endpoint.

Building: normalized host weights (hosts.normalized_weights) are scaled so the
lightest host gets a whole number of entries, ``scale = min(ceil(min_w *
min_ring_size) / min_w, max_ring_size)``; walking the hosts in EDS order with
running sums (``target += scale * w``; add entries while ``current < target``),
entry ``i`` of a host is ``xxHash64("<address>_<i>", seed 0)``, address being
``ip:port`` (IPv6 bracketed). The ring is sorted by hash.

Picking: the first entry whose hash is >= the request hash, wrapping to the
first entry (a binary search). A retry (``attempt`` k) takes the k-th entry
after it, as Envoy does. A request without a hash gets a random one.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

import xxhash

from meshlib.balancing._hosts import BuildContext, HostPicker, normalized_weights
from meshlib.xds_client.cluster_policies import MAX_RING_SIZE as ENVOY_MAX_RING_SIZE
from meshlib.xds_client.resources import Endpoint, LocalityEndpoints, RingHashConfig

_getrandbits = random.getrandbits
_xxh64 = xxhash.xxh64_intdigest


def build_ring(
    weighted: Sequence[tuple[Endpoint, float]], min_ring_size: int, max_ring_size: int
) -> list[tuple[int, Endpoint]]:
    """The sorted ring of (hash, endpoint) entries, as Envoy builds it."""
    min_weight = min(w for _, w in weighted)
    scale = min(math.ceil(min_weight * min_ring_size) / min_weight, float(max_ring_size))
    ring: list[tuple[int, Endpoint]] = []
    current = 0.0
    target = 0.0
    for endpoint, weight in weighted:
        prefix = f"{endpoint.authority}_"
        target += scale * weight
        i = 0
        while current < target:
            ring.append((_xxh64(f"{prefix}{i}".encode()), endpoint))
            i += 1
            current += 1
    ring.sort(key=lambda entry: entry[0])
    return ring


class RingPicker:
    __slots__ = ("_hashes", "_n", "_owners")

    def __init__(self, ring: Sequence[tuple[int, Endpoint]]) -> None:
        self._hashes = [h for h, _ in ring]
        self._owners = tuple(e for _, e in ring)
        self._n = len(self._owners)

    def choose(self, h: int | None, attempt: int) -> Endpoint:
        if h is None:
            h = _getrandbits(64)
        index = bisect.bisect_left(self._hashes, h)
        if index == self._n:
            index = 0
        if attempt:
            index = (index + attempt) % self._n
        return self._owners[index]


class RingHash:
    name = "ring_hash"
    hash_based = True

    def build(self, localities: Sequence[LocalityEndpoints], ctx: BuildContext) -> HostPicker:
        config = ctx.config if isinstance(ctx.config, RingHashConfig) else RingHashConfig()
        low, high = config.minimum_ring_size, config.maximum_ring_size
        if not 0 < low <= high <= ENVOY_MAX_RING_SIZE:
            raise ValueError(
                f"ring_hash: need 0 < minimum_ring_size ({low}) <= maximum_ring_size ({high}) "
                f"<= {ENVOY_MAX_RING_SIZE}"
            )
        weighted = normalized_weights(localities, ctx.locality_weighted)
        return RingPicker(build_ring(weighted, low, high))


POLICY = RingHash()
