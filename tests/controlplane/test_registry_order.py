"""The registry's snapshot stays in (namespace, service, id) order through any mix of
registrations, replacements (moving a workload to another service or namespace),
deregistrations, expiries, restores and other replicas' changes."""

from __future__ import annotations

import random

from controlplane.model import RegisteredWorkload
from controlplane.registry import RegistrationRequest, Registry


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def workload(rng: random.Random, wid: str) -> RegisteredWorkload:
    return RegisteredWorkload(
        id=wid,
        service=rng.choice(["a", "b", "c"]),
        address=f"10.0.0.{rng.randint(1, 200)}",
        ports={80: 8080},
        namespace=rng.choice(["default", "ns1", "ns2"]),
        ttl_s=5.0,
    )


def test_the_snapshot_stays_ordered_through_every_kind_of_change() -> None:
    rng = random.Random(12)
    clock = Clock()
    snapshots: list[tuple[RegisteredWorkload, ...]] = []
    registry = Registry(clock=clock, on_change=snapshots.append)
    ids = [f"w{n}" for n in range(40)]
    for _ in range(600):
        wid = rng.choice(ids)
        action = rng.random()
        if action < 0.45:
            w = workload(rng, wid)
            request = RegistrationRequest(
                w.service, w.address, dict(w.ports), namespace=w.namespace, id=wid, ttl_s=5.0
            )
            registry.register(request)
        elif action < 0.65:
            registry.deregister(wid)
        elif action < 0.8:
            registry.follow([(workload(rng, wid), 5.0)], [rng.choice(ids)])
        elif action < 0.9:
            registry.restore([(workload(rng, wid), rng.choice([1.0, 5.0]))])
        else:
            clock.now += rng.choice([0.5, 2.0])
            registry.sweep()
        held = registry.snapshot()
        assert list(held) == sorted(held, key=lambda w: (w.namespace, w.service, w.id))
        assert {w.id: w for w in held} == {w.id: registry.get(w.id) for w in held}
        assert len({w.id for w in held}) == len(held)
        assert all(registry.get(i) is None for i in ids if i not in {w.id for w in held})
    assert snapshots and snapshots[-1] == registry.snapshot()
