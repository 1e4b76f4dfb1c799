"""The registry's workloads in snapshot order, (namespace, service, id), kept sorted as
they change (bisect): a change costs a copy of the list, not a sort of every workload,
which matters once a fleet's thousands of workloads register and heartbeat."""

from __future__ import annotations

import bisect

from controlplane.model import RegisteredWorkload

Key = tuple[str, str, str]


def order_key(workload: RegisteredWorkload) -> Key:
    return (workload.namespace, workload.service, workload.id)


class OrderedWorkloads:
    """Workloads sorted by :func:`order_key` (ids are unique, so keys are)."""

    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._items: list[RegisteredWorkload] = []

    def put(self, workload: RegisteredWorkload, previous: RegisteredWorkload | None) -> None:
        """Hold ``workload`` in place of ``previous`` (the one with its id, if any)."""
        if previous is not None:
            self.remove(previous)
        key = order_key(workload)
        index = bisect.bisect_left(self._keys, key)
        self._keys.insert(index, key)
        self._items.insert(index, workload)

    def remove(self, workload: RegisteredWorkload) -> None:
        key = order_key(workload)
        index = bisect.bisect_left(self._keys, key)
        if index < len(self._keys) and self._keys[index] == key:
            del self._keys[index]
            del self._items[index]

    def snapshot(self) -> tuple[RegisteredWorkload, ...]:
        return tuple(self._items)

    def with_put(
        self, workload: RegisteredWorkload, previous: RegisteredWorkload | None
    ) -> tuple[RegisteredWorkload, ...]:
        """The snapshot :meth:`put` would make, leaving this one as it is."""
        trial = OrderedWorkloads()
        trial._keys = self._keys.copy()
        trial._items = self._items.copy()
        trial.put(workload, previous)
        return trial.snapshot()
