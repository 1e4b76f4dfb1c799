"""Envoy's outlier detection for one cluster, driven by call outcomes and a clock.

Consecutive-error detectors (5xx, gateway errors, and — with
``split_external_local_origin_errors`` — local-origin failures) act on the
call that crosses the threshold; success-rate and failure-percentage
detectors run once per ``interval_s``. Without the split a local-origin
failure counts as a gateway error (Envoy maps a connect failure to 503). An
ejection lasts ``min(base * k, max) + jitter`` where ``k`` grows by one per
ejection (while ``base * k < max``) and shrinks by one per interval the host
spends un-ejected. ``max_ejection_percent`` caps ejected hosts (one is always
allowed with ``always_eject_one_host``); ``enforcing_*`` are the chances that
a detection really ejects.

Interval work is done lazily: the runtime calls :meth:`tick` on every call
start and finish (a float compare when nothing is due), so there is no timer
thread per cluster. A cluster that takes no calls keeps its ejections until
the next call, which then sees them expire before it is counted. The
detector is not thread-safe: the cluster runtime holds its lock around it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from meshlib.balancing.picker import Outcome
from meshlib.xds_client.resources import OutlierDetection


class HostMonitor:
    __slots__ = (
        "backoff",
        "consecutive_5xx",
        "consecutive_gateway",
        "consecutive_local",
        "ejected_at",
        "ext_success",
        "ext_total",
        "jitter",
        "local_success",
        "local_total",
        "times_ejected",
    )

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.consecutive_local = 0
        self.ext_success = 0
        self.ext_total = 0
        self.local_success = 0
        self.local_total = 0
        self.ejected_at: float | None = None
        self.jitter = 0.0
        self.backoff = 0
        self.times_ejected = 0

    def reset_interval(self) -> None:
        self.ext_success = self.ext_total = self.local_success = self.local_total = 0


@dataclass(frozen=True, slots=True)
class Change:
    """One ejection or return, for logs and metrics."""

    authority: str
    ejected: bool
    reason: str
    duration_s: float = 0.0


class OutlierDetector:
    def __init__(
        self, config: OutlierDetection, now: float, rng: random.Random | None = None
    ) -> None:
        self.config = config
        self.monitors: dict[str, HostMonitor] = {}
        self.ejected: frozenset[str] = frozenset()
        self.next_tick = now + config.interval_s
        self._rng = rng if rng is not None else random.Random()
        self.changes: list[Change] = []

    def sync(self, authorities: Iterable[str]) -> bool:
        """Track exactly these hosts; True when the ejected set changed."""
        wanted = set(authorities)
        for gone in set(self.monitors) - wanted:
            del self.monitors[gone]
        for new in wanted - set(self.monitors):
            self.monitors[new] = HostMonitor()
        return self._refresh_ejected()

    def reconfigure(self, config: OutlierDetection, now: float) -> None:
        """Apply a new CDS config; counters and ejections carry over."""
        if config.interval_s != self.config.interval_s:
            self.next_tick = min(self.next_tick, now + config.interval_s)
        self.config = config

    # --- per call --------------------------------------------------------------

    def record(self, authority: str, outcome: Outcome, now: float) -> bool:
        """Count one call; True when it ejected its host."""
        monitor = self.monitors.get(authority)
        if monitor is None:
            return False  # the host left EDS while the call was in flight
        cfg = self.config
        split = cfg.split_external_local_origin_errors
        if outcome is Outcome.LOCAL_ORIGIN_FAILURE:
            if split:
                monitor.local_total += 1
                monitor.consecutive_local += 1
                if monitor.consecutive_local == cfg.consecutive_local_origin_failure:
                    monitor.consecutive_local = 0
                    return self._eject(
                        authority,
                        monitor,
                        "consecutive_local_origin_failure",
                        cfg.enforcing_consecutive_local_origin_failure,
                        now,
                    )
                return False
            outcome = Outcome.GATEWAY_ERROR
        elif split:
            monitor.local_total += 1
            monitor.local_success += 1
            monitor.consecutive_local = 0
        monitor.ext_total += 1
        if outcome is Outcome.SUCCESS:
            monitor.ext_success += 1
            monitor.consecutive_5xx = 0
            monitor.consecutive_gateway = 0
            return False
        ejected = False
        if outcome is Outcome.GATEWAY_ERROR:
            monitor.consecutive_gateway += 1
            if monitor.consecutive_gateway == cfg.consecutive_gateway_failure:
                monitor.consecutive_gateway = 0
                ejected = self._eject(
                    authority,
                    monitor,
                    "consecutive_gateway_failure",
                    cfg.enforcing_consecutive_gateway_failure,
                    now,
                )
        else:
            monitor.consecutive_gateway = 0
        monitor.consecutive_5xx += 1
        if monitor.consecutive_5xx == cfg.consecutive_5xx:
            monitor.consecutive_5xx = 0
            ejected = (
                self._eject(
                    authority, monitor, "consecutive_5xx", cfg.enforcing_consecutive_5xx, now
                )
                or ejected
            )
        return ejected

    # --- per interval ------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """Run the interval work if due; True when the ejected set changed."""
        if now < self.next_tick:
            return False
        interval = self.config.interval_s
        while self.next_tick <= now:
            self.next_tick += interval
        changed = self._unejections(now)
        cfg = self.config
        external = {a: (m.ext_success, m.ext_total) for a, m in self.monitors.items()}
        changed |= self._success_rate(external, cfg.enforcing_success_rate, "success_rate", now)
        changed |= self._failure_percentage(
            external, cfg.enforcing_failure_percentage, "failure_percentage", now
        )
        if cfg.split_external_local_origin_errors:
            local = {a: (m.local_success, m.local_total) for a, m in self.monitors.items()}
            changed |= self._success_rate(
                local, cfg.enforcing_local_origin_success_rate, "local_origin_success_rate", now
            )
            changed |= self._failure_percentage(
                local,
                cfg.enforcing_failure_percentage_local_origin,
                "local_origin_failure_percentage",
                now,
            )
        for monitor in self.monitors.values():
            monitor.reset_interval()
        return changed

    def _unejections(self, now: float) -> bool:
        cfg = self.config
        changed = False
        for authority, monitor in self.monitors.items():
            if monitor.ejected_at is None:
                if monitor.backoff > 0:
                    monitor.backoff -= 1
                continue
            duration = min(cfg.base_ejection_time_s * monitor.backoff, cfg.max_ejection_time_s)
            if now - monitor.ejected_at >= duration + monitor.jitter:
                monitor.ejected_at = None
                self.changes.append(Change(authority, False, "ejection_expired"))
                changed = True
        if changed:
            self._refresh_ejected()
        return changed

    def _success_rate(
        self, counts: dict[str, tuple[int, int]], enforcing: int, reason: str, now: float
    ) -> bool:
        cfg = self.config
        if enforcing <= 0:
            return False
        rates = {
            a: 100.0 * ok / total
            for a, (ok, total) in counts.items()
            if total >= cfg.success_rate_request_volume and self.monitors[a].ejected_at is None
        }
        if not rates or len(rates) < cfg.success_rate_minimum_hosts:
            return False
        mean = sum(rates.values()) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for r in rates.values()) / len(rates))
        threshold = mean - stdev * cfg.success_rate_stdev_factor / 1000.0
        changed = False
        for authority, rate in rates.items():
            if rate < threshold:
                changed |= self._eject(authority, self.monitors[authority], reason, enforcing, now)
        return changed

    def _failure_percentage(
        self, counts: dict[str, tuple[int, int]], enforcing: int, reason: str, now: float
    ) -> bool:
        cfg = self.config
        if enforcing <= 0:
            return False
        failing = {
            a: 100.0 * (total - ok) / total
            for a, (ok, total) in counts.items()
            if total >= cfg.failure_percentage_request_volume
            and total > 0
            and self.monitors[a].ejected_at is None
        }
        if len(failing) < cfg.failure_percentage_minimum_hosts:
            return False
        changed = False
        for authority, percent in failing.items():
            if percent >= cfg.failure_percentage_threshold:
                changed |= self._eject(authority, self.monitors[authority], reason, enforcing, now)
        return changed

    # --- ejection -----------------------------------------------------------------

    def _eject(
        self, authority: str, monitor: HostMonitor, reason: str, enforcing: int, now: float
    ) -> bool:
        cfg = self.config
        if monitor.ejected_at is not None or enforcing <= 0:
            return False
        active = len(self.ejected)
        allowed = 100.0 * (active + 1) / len(self.monitors) <= min(100, cfg.max_ejection_percent)
        if not allowed and not (cfg.always_eject_one_host and active == 0):
            return False
        if enforcing < 100 and self._rng.random() * 100 >= enforcing:
            return False
        if cfg.base_ejection_time_s * monitor.backoff < cfg.max_ejection_time_s:
            monitor.backoff += 1
        monitor.ejected_at = now
        monitor.times_ejected += 1
        jitter = cfg.max_ejection_time_jitter_s
        monitor.jitter = self._rng.uniform(0.0, jitter) if jitter > 0 else 0.0
        duration = min(cfg.base_ejection_time_s * monitor.backoff, cfg.max_ejection_time_s)
        self.changes.append(Change(authority, True, reason, duration + monitor.jitter))
        self._refresh_ejected()
        return True

    def _refresh_ejected(self) -> bool:
        ejected = frozenset(a for a, m in self.monitors.items() if m.ejected_at is not None)
        changed = ejected != self.ejected
        self.ejected = ejected
        return changed
