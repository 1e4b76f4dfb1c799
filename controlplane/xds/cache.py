"""Snapshots per node id, and the watches streams hold on them.

Setting a snapshot checks it for consistency first (an inconsistent one is
refused, the previous one stays), then tells every watcher of that node.
Everything runs on the event loop; watchers must not block.
"""

from __future__ import annotations

from collections.abc import Callable

from controlplane.xds.consistency import check_consistency
from controlplane.xds.snapshot import Snapshot

Watcher = Callable[[Snapshot], None]
Cancel = Callable[[], None]


class SnapshotCache:
    def __init__(self) -> None:
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, list[Watcher]] = {}

    def get(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id)

    def set(self, node_id: str, snapshot: Snapshot) -> None:
        """Check, store and announce ``snapshot``; raises InconsistentSnapshotError."""
        check_consistency(snapshot.messages)
        self.set_checked(node_id, snapshot)

    def set_checked(self, node_id: str, snapshot: Snapshot) -> None:
        """Store and announce a snapshot the caller already checked."""
        previous = self._snapshots.get(node_id)
        if previous is snapshot:  # alike nodes share one: most rebuilds change nothing
            return
        if previous is not None and previous.versions() == snapshot.versions():
            return
        self._snapshots[node_id] = snapshot
        for watcher in list(self._watchers.get(node_id, ())):
            watcher(snapshot)

    def clear(self, node_id: str) -> None:
        self._snapshots.pop(node_id, None)

    def node_ids(self) -> list[str]:
        return sorted(self._snapshots)

    def watch(self, node_id: str, watcher: Watcher) -> Cancel:
        """Call ``watcher`` with every new snapshot of ``node_id`` until cancelled."""
        self._watchers.setdefault(node_id, []).append(watcher)

        def cancel() -> None:
            watchers = self._watchers.get(node_id, [])
            if watcher in watchers:
                watchers.remove(watcher)
            if not watchers:
                self._watchers.pop(node_id, None)

        return cancel
