"""Keep a snapshot for every connected node, built from the latest inputs.

A rebuild translates for every node first and sets nothing unless all of them
translate and pass the consistency check: a bad input never half-applies.
The inputs that last built cleanly are kept, so a node that connects while the
latest inputs are broken still gets the last good config.

Nodes that look alike to translate (same locality and metadata; the id and
the cluster are not inputs of translate) share one translation and one snapshot,
found by the node's own likeness first, so a connect costs no translation when
a look-alike connected before (or a trial node of the check was one); labels
and a namespace that no rule reads are set aside first (``routing_view``), so
callers differ only by the labels some ``sourceLabels`` names.

:meth:`SnapshotUpdater.check` translates candidate inputs without setting
anything, for every connected node and for the two node shapes that may
connect later (a proxyless client and an Envoy sidecar, also as a caller of
each ``sourceLabels`` / ``sourceNamespace`` selector): the control plane
uses it to refuse a config or a registration before it can break a rebuild.
The translations a check made are kept, so when the inputs it passed are set
next, their rebuild translates nothing again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import Resources, TranslationError, translate
from controlplane.translate.ambiguity import AmbiguousDestinationError, ambiguous_destinations
from controlplane.translate.source_match import routing_view, selector_nodes
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.consistency import check_consistency
from controlplane.xds.errors import SnapshotError
from controlplane.xds.snapshot import Snapshot

log = structlog.get_logger(__name__)

Translate = Callable[[MeshConfig, Sequence[RegisteredWorkload], NodeInfo], Resources]

# The node shapes a trial translation covers besides the connected nodes.
TRIAL_NODES = (
    NodeInfo(id="trial-proxyless"),
    NodeInfo(id="trial-sidecar", metadata={"mesh.proxy": "sidecar", "mesh.outbound_port": 15001}),
)


@dataclass(frozen=True, slots=True)
class Inputs:
    config: MeshConfig
    workloads: tuple[RegisteredWorkload, ...]


class SnapshotUpdater:
    def __init__(self, cache: SnapshotCache, translate_fn: Translate = translate) -> None:
        self._cache = cache
        self._translate = translate_fn
        self._inputs = Inputs(MeshConfig(), ())
        self._good = self._inputs
        self._nodes: dict[str, NodeInfo] = {}
        self._streams: dict[str, int] = {}  # node id -> open streams
        self._shapes: dict[str, str] = {}  # node id -> _likeness of the connected node
        # Snapshots of the inputs built most recently (newest last), by node likeness:
        # a node that connects reuses its look-alikes' translation, and a rebuild
        # reuses the translations its check made.
        self._built: list[tuple[Inputs, dict[str, Snapshot]]] = []
        self._checked: Inputs | None = None  # the inputs the last check passed
        self._ambiguous: list[tuple[Inputs, set[str]]] = []
        self.last_error: str | None = None

    def set_inputs(
        self,
        *,
        config: MeshConfig | None = None,
        workloads: Sequence[RegisteredWorkload] | None = None,
    ) -> None:
        """Replace config and/or workloads; takes effect at the next :meth:`rebuild`."""
        candidate = self._candidate(config, workloads)
        checked = self._checked
        if (
            checked is not None
            and checked.config is candidate.config
            and checked.workloads == candidate.workloads
        ):
            candidate = checked  # the inputs just checked: the rebuild reuses its translations
        self._checked = None
        self._inputs = candidate

    def check(
        self,
        *,
        config: MeshConfig | None = None,
        workloads: Sequence[RegisteredWorkload] | None = None,
    ) -> None:
        """Translate the latest inputs with ``config`` and/or ``workloads`` replaced, for
        every connected node and :data:`TRIAL_NODES`; raise TranslationError or
        SnapshotError when any fails, AmbiguousDestinationError when the change
        would leave a destination's port to a guess it did not need before.
        Sets nothing."""
        candidate = self._candidate(config, workloads)
        self._checked = None
        trials = [*TRIAL_NODES, *selector_nodes(candidate.config, TRIAL_NODES)]
        self._build_all(candidate, [*trials, *self._nodes.values()])
        before = self._ambiguities(self._inputs)
        new = [p for p in sorted(self._ambiguities(candidate)) if p not in before]
        if new:
            raise AmbiguousDestinationError("; ".join(new))
        self._checked = candidate

    def _ambiguities(self, inputs: Inputs) -> set[str]:
        """Kept for the last two inputs: a checked candidate is the next check's 'before'."""
        for known, found in self._ambiguous:
            if known is inputs:
                return found
        try:
            found = set(ambiguous_destinations(inputs.config, inputs.workloads))
        except TranslationError:  # inputs that do not translate: nothing to compare
            found = set()
        self._ambiguous = [*self._ambiguous[-1:], (inputs, found)]
        return found

    def _candidate(
        self, config: MeshConfig | None, workloads: Sequence[RegisteredWorkload] | None
    ) -> Inputs:
        return Inputs(
            config if config is not None else self._inputs.config,
            tuple(workloads) if workloads is not None else self._inputs.workloads,
        )

    def rebuild(self) -> bool:
        """Rebuild every node's snapshot from the latest inputs; False if refused."""
        try:
            snapshots = self._build_all(self._inputs, list(self._nodes.values()))
        except (TranslationError, SnapshotError) as exc:
            self.last_error = str(exc)
            log.error("xds_rebuild_refused", error=str(exc), nodes=len(self._nodes))
            return False
        for node_id, snapshot in snapshots.items():
            self._cache.set_checked(node_id, snapshot)
        self._good = self._inputs
        self.last_error = None
        log.info("xds_rebuilt", nodes=len(snapshots))
        return True

    # --- NodeDirectory -----------------------------------------------------

    def connect(self, node: NodeInfo) -> None:
        """A stream for ``node`` opened: make sure it has a snapshot now."""
        self._streams[node.id] = self._streams.get(node.id, 0) + 1
        if self._nodes.get(node.id) == node and self._cache.get(node.id) is not None:
            return
        self._nodes[node.id] = node
        self._shapes[node.id] = _likeness(node)
        for inputs in (self._inputs, self._good):
            try:
                snapshot = self._build_all(inputs, [node])[node.id]
            except (TranslationError, SnapshotError) as exc:
                log.error("xds_node_build_failed", node=node.id, error=str(exc))
                continue
            self._cache.set_checked(node.id, snapshot)
            return

    def disconnect(self, node_id: str) -> None:
        """A stream closed; forget the node when it was its last one."""
        remaining = self._streams.get(node_id, 0) - 1
        if remaining > 0:
            self._streams[node_id] = remaining
            return
        self._streams.pop(node_id, None)
        self._nodes.pop(node_id, None)
        self._shapes.pop(node_id, None)
        self._cache.clear(node_id)

    # --- building ----------------------------------------------------------

    def _build_all(self, inputs: Inputs, nodes: list[NodeInfo]) -> dict[str, Snapshot]:
        shared = self._shared(inputs)
        snapshots: dict[str, Snapshot] = {}
        by_shape: dict[str, Snapshot] = {}  # nodes alike in every field but the id
        for node in nodes:
            shape = self._shapes.get(node.id) if self._nodes.get(node.id) is node else None
            if shape is None:
                shape = _likeness(node)
            snapshot = by_shape.get(shape)
            if snapshot is None:
                snapshot = shared.get(_SHAPE + shape)  # a look-alike connected before
            if snapshot is None:
                view = routing_view(inputs.config, node)
                key = _likeness(view)
                snapshot = shared.get(key)
                if snapshot is None:
                    resources = self._translate(inputs.config, inputs.workloads, view)
                    before = self._built_before(inputs, key)
                    check_consistency(resources, before.messages if before else None)
                    snapshot = shared[key] = Snapshot.from_resources(resources, before)
                shared[_SHAPE + shape] = snapshot
            by_shape[shape] = snapshot
            snapshots[node.id] = snapshot
        return snapshots

    def _built_before(self, inputs: Inputs, key: str) -> Snapshot | None:
        """The newest snapshot of other inputs for the same routing view: checked, and
        packed (an incremental translation keeps the messages it did not rebuild)."""
        for built, shared in reversed(self._built):
            snapshot = shared.get(key) if built is not inputs else None
            if snapshot is not None:
                return snapshot
        return None

    def _shared(self, inputs: Inputs) -> dict[str, Snapshot]:
        """The snapshots built from ``inputs`` so far, by likeness (kept for a few inputs)."""
        for built, shared in self._built:
            if built is inputs:
                return shared
        shared = {}
        self._built = [*self._built[-(_BUILT_KEPT - 1) :], (inputs, shared)]
        return shared


# Inputs whose snapshots are kept: the served ones, the last good ones, a checked candidate.
_BUILT_KEPT = 3


# Prefix of the keys of ``_shared`` that are a node's own likeness (before its routing view).
_SHAPE = "shape:"


def _likeness(node: NodeInfo) -> str:
    """Everything translate may read from a node: locality and metadata (neither the
    id nor the cluster, which tell pods apart and no translation reads)."""
    return json.dumps([node.locality, node.metadata], sort_keys=True, default=repr)
