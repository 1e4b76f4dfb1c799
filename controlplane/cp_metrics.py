"""The control plane's own metrics, served at ``GET /metrics`` (Prometheus text 0.0.4).

Names are istiod's where istiod has one, so its dashboards and alerts work as
they are (istiod exposes its counters without a ``_total`` suffix, which the
``prometheus_client`` library would force on them; so this module writes the
few lines of text format itself):

    pilot_xds_pushes{type}                responses sent, type cds/eds/lds/rds; a response
                                          that could not be written is type cds_senderr, ...
    pilot_total_xds_rejects{type}         NACKs received, by type
    pilot_xds{kind}                       connected clients (streams that named a node), by
                                          kind meshlib/grpc/envoy/unknown
    pilot_proxy_convergence_time          histogram (seconds, buckets .1 .5 1 3 5 10): from a
                                          change being accepted to a client ACKing every
                                          response that change made us send it
    pilot_xds_push_context_errors         rebuilds refused (no client got the change)
    mesh_controlplane_config_reloads_total{source,result}
                                          config re-reads: accepted / refused / unchanged
    mesh_controlplane_jwks_fetches_total{result}
                                          RequestAuthentication jwksUri fetches: ok / error
    mesh_controlplane_store_latency_seconds{op}
                                          histogram: seconds per store call (open, commit,
                                          save_registrations, touch_registrations, ...)
    mesh_controlplane_info{replica,version}  1

It is the control plane's :class:`~controlplane.xds.observer.XdsObserver`;
everything runs on the event loop.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controlplane.xds.subscription import Rejection, Sent
from controlplane.xds.typeurls import SEND_ORDER, short_name

CONVERGENCE_BUCKETS = (0.1, 0.5, 1.0, 3.0, 5.0, 10.0)  # istiod's
# A local SQLite commit is a millisecond or a few (fsync); etcd's is a network round trip
# and a raft commit; an etcd member moving on is seconds.
STORE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
KINDS = ("meshlib", "grpc", "envoy", "unknown")
TYPE_LABELS = tuple(short_name(url).lower() for url in SEND_ORDER)


def _type_label(type_url: str) -> str:
    return short_name(type_url).lower()


@dataclass(slots=True)
class _Awaiting:
    """The responses one change made us push to a stream, not ACKed yet (type -> nonce)."""

    changed_at: float
    nonces: dict[str, str] = field(default_factory=dict)


class Histogram:
    def __init__(self, buckets: Iterable[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class ControlPlaneMetrics:
    def __init__(
        self,
        replica: str = "",
        version: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._info = {"replica": replica, "version": version}
        self.pushes: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.connected: Counter[str] = Counter()
        self.push_context_errors = 0
        self.config_reloads: Counter[tuple[str, str]] = Counter()
        self.jwks_fetches: Counter[str] = Counter()
        self.convergence = Histogram(CONVERGENCE_BUCKETS)
        self.store_latency: dict[str, Histogram] = {}
        self._pending_change: float | None = None  # earliest change not yet rebuilt
        self._applied_change: float | None = None  # the change the latest rebuild carried
        self._awaiting: dict[object, _Awaiting] = {}
        self._kinds: dict[object, str] = {}

    # --- XdsObserver ---------------------------------------------------------

    def change_accepted(self) -> None:
        if self._pending_change is None:
            self._pending_change = self._clock()

    def rebuilt(self, ok: bool) -> None:
        if not ok:
            self.push_context_errors += 1
            return
        if self._pending_change is not None:
            self._applied_change, self._pending_change = self._pending_change, None

    def stream_opened(self, stream: object, kind: str) -> None:
        self._kinds[stream] = kind
        self.connected[kind] += 1

    def stream_closed(self, stream: object) -> None:
        self._awaiting.pop(stream, None)
        kind = self._kinds.pop(stream, None)
        if kind is not None:
            self.connected[kind] -= 1

    def sent(self, stream: object, type_url: str, sent: Sent, *, push: bool) -> None:
        self.pushes[_type_label(type_url)] += 1
        if not push or self._applied_change is None:
            return
        awaiting = self._awaiting.get(stream)
        if awaiting is None or awaiting.changed_at != self._applied_change:
            awaiting = self._awaiting[stream] = _Awaiting(self._applied_change)
        awaiting.nonces[type_url] = sent.nonce

    def send_failed(self, stream: object, type_url: str) -> None:
        self.pushes[f"{_type_label(type_url)}_senderr"] += 1

    def acked(self, stream: object, type_url: str, sent: Sent) -> None:
        awaiting = self._awaiting.get(stream)
        if awaiting is None or awaiting.nonces.get(type_url) != sent.nonce:
            return
        del awaiting.nonces[type_url]
        if not awaiting.nonces:
            del self._awaiting[stream]
            self.convergence.observe(max(0.0, self._clock() - awaiting.changed_at))

    def nacked(self, stream: object, type_url: str, rejection: Rejection) -> None:
        self.rejects[_type_label(type_url)] += 1
        self._awaiting.pop(stream, None)  # refused: this client never converges on it

    # --- config --------------------------------------------------------------

    def config_reload(self, result: str, source: str = "file") -> None:
        """A config re-read: ``accepted``, ``refused`` or ``unchanged``."""
        self.config_reloads[(source, result)] += 1

    def jwks_fetch(self, result: str) -> None:
        """A jwksUri fetch: ``ok`` or ``error`` (the last good keys kept)."""
        self.jwks_fetches[result] += 1

    def store_call(self, op: str, seconds: float) -> None:
        """One store call (:class:`controlplane.store.timed.TimedStore`) took ``seconds``."""
        histogram = self.store_latency.get(op)
        if histogram is None:
            histogram = self.store_latency[op] = Histogram(STORE_BUCKETS)
        histogram.observe(seconds)

    # --- exposition ----------------------------------------------------------

    def render(self) -> str:
        """Every metric in the Prometheus text format."""
        out: list[str] = []
        _labelled(
            out, "pilot_xds_pushes", "counter", "xDS responses sent (and send errors), by type.",
            "type", {t: self.pushes[t] for t in TYPE_LABELS} | dict(self.pushes),
        )  # fmt: skip
        _labelled(
            out, "pilot_total_xds_rejects", "counter", "xDS responses NACKed by clients.",
            "type", {t: self.rejects[t] for t in TYPE_LABELS} | dict(self.rejects),
        )  # fmt: skip
        _labelled(
            out, "pilot_xds", "gauge", "Clients connected over xDS, by kind.",
            "kind", {k: self.connected[k] for k in KINDS} | dict(self.connected),
        )  # fmt: skip
        _family(
            out,
            "pilot_proxy_convergence_time",
            "histogram",
            "Seconds from a config change being accepted to a client ACKing all it was sent.",
        )
        out += _histogram("pilot_proxy_convergence_time", self.convergence)
        _family(out, "pilot_xds_push_context_errors", "counter", "Rebuilds refused.")
        out.append(_sample("pilot_xds_push_context_errors", {}, self.push_context_errors))
        name = "mesh_controlplane_config_reloads_total"
        _family(out, name, "counter", "Config re-reads, by source and result.")
        for (source, result), n in sorted(self.config_reloads.items()):
            out.append(_sample(name, {"source": source, "result": result}, n))
        _labelled(
            out, "mesh_controlplane_jwks_fetches_total", "counter",
            "RequestAuthentication jwksUri fetches, by result (error: the last keys kept).",
            "result", {r: self.jwks_fetches[r] for r in ("ok", "error")},
        )  # fmt: skip
        name = "mesh_controlplane_store_latency_seconds"
        _family(out, name, "histogram", "Seconds per store call, by operation.")
        for op, histogram in sorted(self.store_latency.items()):
            out += _histogram(name, histogram, {"op": op})
        _family(out, "mesh_controlplane_info", "gauge", "This control plane replica.")
        out.append(_sample("mesh_controlplane_info", self._info, 1))
        return "".join(out)


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")


def _labelled(
    out: list[str], name: str, kind: str, help_text: str, label: str, values: dict[str, int]
) -> None:
    _family(out, name, kind, help_text)
    out += [_sample(name, {label: key}, n) for key, n in sorted(values.items())]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return repr(value)


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_number(value)}\n"
    text = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
    return f"{name}{{{text}}} {_number(value)}\n"


def _histogram(name: str, histogram: Histogram, labels: dict[str, str] | None = None) -> list[str]:
    labels = labels or {}
    lines = []
    cumulative = 0
    bounds = [*(_number(b) for b in histogram.buckets), "+Inf"]
    for bound, count in zip(bounds, histogram.counts, strict=True):
        cumulative += count
        lines.append(_sample(f"{name}_bucket", {**labels, "le": bound}, cumulative))
    lines.append(_sample(f"{name}_sum", labels, histogram.total))
    lines.append(_sample(f"{name}_count", labels, histogram.count))
    return lines
