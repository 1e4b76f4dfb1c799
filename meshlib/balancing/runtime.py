"""Per-cluster state that outlives picker rebuilds; the cluster's LoadReporter.

One :class:`ClusterRuntime` per cluster (kept by the service state across CDS
and EDS updates) holds each endpoint's :class:`HostStats` (active requests,
first-seen time for slow start) and the outlier detector. It is also the
cluster's :class:`Picker`: ``pick`` reads one reference to the current
immutable picker, which is rebuilt — and swapped in by reference — on a
config change, an ejection or a return. Rebuilds are serialized; the request
path never waits for one (it keeps using the previous picker). A pick with no
context (no hash, nothing excluded) of a single round-robin host set is that
set's rotation, one C-level call: the common pick runs no chain.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from meshlib.balancing._hosts import BuildContext, Clock, HostStats
from meshlib.balancing._locality import build_picker
from meshlib.balancing._outlier import Change, OutlierDetector
from meshlib.balancing.picker import NO_PICK_CONTEXT, FailingPicker, Outcome, PickContext, Picker
from meshlib.balancing.policy import LbPolicy
from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import client_metrics
from meshlib.xds_client.resources import (
    ClusterResource,
    Endpoint,
    EndpointsResource,
    Locality,
)

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Config:
    cluster: ClusterResource
    endpoints: EndpointsResource
    policy: LbPolicy


class ClusterRuntime:
    """Active requests, slow-start clocks and outlier ejections of one cluster."""

    def __init__(
        self,
        name: str,
        *,
        local_locality: Locality | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.local_locality = local_locality
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()  # stats and detector
        self._build_lock = threading.Lock()  # one rebuild at a time
        self._stats: dict[str, HostStats] = {}
        self._detector: OutlierDetector | None = None
        self._config: _Config | None = None
        #: The picker and its context-free pick (None: ask the picker), read as one
        #: reference so a swap is never seen half done.
        self._current: tuple[Picker, Callable[[], Endpoint] | None] = (
            FailingPicker(f"cluster {name!r}: no endpoints received yet"),
            None,
        )
        #: Authorities of every endpoint in the last EDS update applied.
        self.authorities: frozenset[str] = frozenset()

    # --- Picker ------------------------------------------------------------------

    def pick(self, ctx: PickContext = NO_PICK_CONTEXT) -> Endpoint:
        picker, plain = self._current
        if plain is not None and ctx is NO_PICK_CONTEXT:
            return plain()  # the common pick: one call, no chain
        return picker.pick(ctx)

    def _swap(self, picker: Picker) -> None:
        """Make ``picker`` the one calls use (with its context-free pick, if any)."""
        self._current = (picker, getattr(picker, "plain", None))

    @property
    def ejected(self) -> frozenset[str]:
        detector = self._detector
        return detector.ejected if detector is not None else frozenset()

    def stats(self, endpoint: Endpoint) -> HostStats | None:
        return self._stats.get(endpoint.authority)

    # --- LoadReporter --------------------------------------------------------------

    def call_started(self, endpoint: Endpoint) -> None:
        with self._lock:
            stats = self._stats.get(endpoint.authority)
            if stats is not None:
                stats.active += 1

    def call_finished(self, endpoint: Endpoint, outcome: Outcome, latency_s: float) -> None:
        detector = self._detector
        now = self._clock() if detector is not None else 0.0
        with self._lock:
            stats = self._stats.get(endpoint.authority)
            if stats is not None and stats.active > 0:
                stats.active -= 1
            ejected = detector is not None and detector.record(endpoint.authority, outcome, now)
        if ejected:
            self._rebuild()
        elif detector is not None and now >= detector.next_tick:
            self.tick()  # the interval's work is due

    def tick(self) -> None:
        """Run outlier detection's interval work when due (cheap when not)."""
        detector = self._detector
        if detector is None or self._clock() < detector.next_tick:
            return
        with self._lock:
            changed = detector.tick(self._clock())
        if changed or detector.changes:
            self._rebuild()

    # --- config ------------------------------------------------------------------

    def update(
        self, cluster: ClusterResource, endpoints: EndpointsResource, policy: LbPolicy
    ) -> None:
        """Apply a CDS/EDS change: sync hosts, then rebuild. Raises ValueError (bad LB
        config) without changing anything."""
        now = self._clock()
        authorities = frozenset(e.authority for e in endpoints.all_endpoints())
        config = _Config(cluster, endpoints, policy)
        with self._build_lock:
            with self._lock:
                stats = {a: self._stats.get(a) or HostStats(a, now) for a in authorities}
                detector = self._detector
                if cluster.outlier_detection is None:
                    detector = None
                elif detector is None:
                    detector = OutlierDetector(cluster.outlier_detection, now, self._rng)
                else:
                    detector.reconfigure(cluster.outlier_detection, now)
            picker = self._build(config, stats, detector.ejected if detector else frozenset())
            with self._lock:
                self._stats = stats
                self._detector = detector
                if detector is not None:
                    detector.sync(authorities)
                self._config = config
                self.authorities = authorities
            self._swap(picker)

    def _build(
        self, config: _Config, stats: dict[str, HostStats], ejected: frozenset[str]
    ) -> Picker:
        cluster = config.cluster

        def stats_of(endpoint: Endpoint) -> HostStats:
            found = stats.get(endpoint.authority)
            return found if found is not None else HostStats(endpoint.authority, self._clock())

        ctx = BuildContext(
            cluster.name,
            cluster.lb_config,
            stats_of,
            self._clock,
            cluster.common_lb_config.locality_weighted,
        )
        return build_picker(
            cluster.name,
            config.endpoints,
            config.policy,
            ctx=ctx,
            common=cluster.common_lb_config,
            local_locality=self.local_locality,
            ejected=ejected,
        )

    def _rebuild(self) -> None:
        with self._build_lock:
            with self._lock:
                config, detector = self._config, self._detector
                changes: list[Change] = []
                ejected: frozenset[str] = frozenset()
                if detector is not None:
                    changes, detector.changes = detector.changes, []
                    ejected = detector.ejected
                stats = self._stats
            for change in changes:
                self._report(change)
            if config is None:
                return
            try:
                self._swap(self._build(config, stats, ejected))
            except ValueError:  # the config built before; cannot fail now, but never crash a call
                log.exception("picker_rebuild_failed", cluster=self.name)

    def _report(self, change: Change) -> None:
        if change.ejected:
            client_metrics().record_ejection(self.name, change.authority, change.reason)
            log.warning(
                "outlier_ejected",
                cluster=self.name,
                endpoint=change.authority,
                reason=change.reason,
                duration_s=round(change.duration_s, 3),
            )
        else:
            log.info("outlier_returned", cluster=self.name, endpoint=change.authority)
