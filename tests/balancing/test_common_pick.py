"""The common pick (round robin, no hash, nothing excluded) is one call, same rotation."""

from __future__ import annotations

import os
import sys
from collections import Counter
from types import FrameType
from typing import Any

from meshlib.balancing._schedule import WeightedSchedule
from meshlib.balancing.picker import PickContext
from meshlib.balancing.policy import get_policy
from meshlib.balancing.runtime import ClusterRuntime
from tests.balancing.builders import cluster, eds, ep, loc

_MESHLIB = os.sep + "meshlib" + os.sep


def _runtime(ports: range, **weights: int) -> ClusterRuntime:
    runtime = ClusterRuntime("c")
    endpoints = [ep(p, weight=weights.get(f"p{p}", 1)) for p in ports]
    runtime.update(cluster(), eds(loc("a", endpoints)), get_policy("round_robin"))
    return runtime


def _meshlib_calls(call: Any) -> int:
    calls = 0

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        nonlocal calls
        if event == "call" and _MESHLIB in frame.f_code.co_filename:
            calls += 1

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return calls


def test_take_is_the_rotation_next_gives_from_the_same_start() -> None:
    for weights in ([1, 1, 1], [5, 1, 3]):
        items = ["a", "b", "c"]
        stepped = WeightedSchedule(items, weights, start=4)
        taken = WeightedSchedule(items, weights, start=4)
        cycle = 2 * stepped.cycle_length + 1
        assert [taken.take() for _ in range(cycle)] == [stepped.next() for _ in range(cycle)]


def test_a_round_robin_pick_with_no_context_is_one_meshlib_call() -> None:
    runtime = _runtime(range(1, 4))
    runtime.pick()
    assert _meshlib_calls(runtime.pick) == 1


def test_the_one_call_pick_keeps_round_robin_exact_and_weighted() -> None:
    runtime = _runtime(range(1, 4), p2=3)
    counts = Counter(runtime.pick().port for _ in range(50))
    assert counts == {1: 10, 2: 30, 3: 10}


def test_a_pick_with_context_still_avoids_excluded_hosts() -> None:
    runtime = _runtime(range(1, 4))
    excluded = frozenset({ep(1).authority, ep(2).authority})
    assert {runtime.pick(PickContext(None, excluded)).port for _ in range(12)} == {3}


def test_the_one_call_pick_follows_an_update() -> None:
    runtime = _runtime(range(1, 4))
    runtime.update(cluster(), eds(loc("a", [ep(7), ep(8)])), get_policy("round_robin"))
    assert {runtime.pick().port for _ in range(10)} == {7, 8}
    runtime.update(cluster(), eds(loc("a", [])), get_policy("round_robin"))
    _raises(runtime)


def _raises(runtime: ClusterRuntime) -> None:
    try:
        runtime.pick()
    except Exception as error:  # no endpoints: the picker's own error, not a stale pick
        assert "c" in str(error)
    else:
        raise AssertionError("picked from a cluster with no endpoints")
