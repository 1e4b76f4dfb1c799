"""The mesh's service list before its first answer: waits end when the list comes, or
(for callers that can do without it) when the control plane is known unreachable.
The watcher is fed as the xDS client feeds it, from another thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from meshlib.errors import ServiceNotReadyError, XdsConnectionError
from meshlib.routing._membership import Membership

WAIT_S = 30.0  # waits that must end early end on an event, never on this


def later(action: Callable[..., object], *args: object) -> threading.Timer:
    """``action(*args)`` on another thread, a moment from now."""
    timer = threading.Timer(0.05, action, args)
    timer.start()
    return timer


def test_a_stream_failure_ends_settling_waits_but_not_waits_for_the_list() -> None:
    membership = Membership()
    later(membership.on_ambient_error, XdsConnectionError("refused")).join()
    assert membership.wait(WAIT_S, settle=True) is None
    assert membership.unreachable == "refused"
    assert membership.wait(0.05) is None  # the list itself is still awaited, up to its timeout
    with pytest.raises(ServiceNotReadyError, match="service list"):
        membership.contains("a:1", 0.05)


def test_a_wait_that_runs_out_marks_the_control_plane_unreachable() -> None:
    membership = Membership()
    assert membership.wait(0.05) is None
    assert membership.unreachable is not None
    assert membership.wait(WAIT_S, settle=True) is None  # at once now


def test_the_list_wakes_every_waiter_and_clears_the_mark() -> None:
    membership = Membership()
    membership.on_ambient_error(XdsConnectionError("refused"))
    timer = later(membership.on_changed, {"a:1": object()})
    assert membership.wait(WAIT_S) == frozenset({"a:1"})
    timer.join()
    assert membership.unreachable is None
    membership.on_ambient_error(XdsConnectionError("lost"))  # fail static: the list stays
    assert membership.unreachable is None and membership.contains("a:1", 0)


async def test_async_waiters_end_on_the_mark_or_the_list_and_never_pile_up() -> None:
    membership = Membership()
    settling = asyncio.ensure_future(membership.wait_async(WAIT_S, settle=True))
    listing = asyncio.ensure_future(membership.wait_async(WAIT_S))
    await asyncio.sleep(0.01)
    await asyncio.to_thread(membership.on_ambient_error, XdsConnectionError("refused"))
    assert await asyncio.wait_for(settling, WAIT_S) is None
    assert not listing.done()
    for _ in range(5):  # an outage's worth of timed-out waits leaves nothing behind
        assert await membership.wait_async(0.01) is None
    assert len(membership._async_waiters) == 1  # only `listing`
    await asyncio.to_thread(membership.on_changed, {"a:1": object()})
    assert await asyncio.wait_for(listing, WAIT_S) == frozenset({"a:1"})
    assert membership._async_waiters == []
    assert await membership.contains_async("a:1", 0)
