"""The registry's expiry task stops when cancelled, even as a registration wakes it.

``asyncio.wait_for`` on Python 3.11 returns the inner result instead of raising when
the task is cancelled just as the awaited event fires, so a control plane stopping
while a registration arrived hung for ever (its expiry task kept running)."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.registry import RegistrationRequest, Registry


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 4])
async def test_cancel_as_a_registration_wakes_the_expiry_task(turns: int) -> None:
    registry = Registry()
    task = asyncio.create_task(registry.run_expiry(max_interval_s=30))
    await asyncio.sleep(0.05)  # parked in its wait
    registry.register(RegistrationRequest(service="s", address="10.0.0.1", ports={80: 80}))
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done, "the expiry task kept running after cancel"
    assert task.cancelled()
