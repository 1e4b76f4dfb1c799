"""The mirror runners drop (and count) shadows instead of ever blocking the caller."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from meshlib.balancing.picker import Outcome
from meshlib.transport.mirror import TaskMirror, ThreadMirror
from meshlib.transport.outcome import grpc_outcome, http_outcome
from tests.transport.polling import eventually


def test_thread_mirror_drops_when_saturated() -> None:
    release = threading.Event()
    running = threading.Event()

    def block() -> None:
        running.set()
        release.wait(5)

    mirror = ThreadMirror(workers=1, queue_size=2)
    try:
        mirror.submit(block)
        assert running.wait(5)
        for _ in range(9):
            mirror.submit(block)
        # One running, two queued, the rest dropped at once.
        assert mirror.stats.as_dict()["dropped"] == 7
    finally:
        release.set()
        mirror.close()
    assert mirror.stats.as_dict()["sent"] == 3


def test_thread_mirror_counts_failures_and_drops_after_close() -> None:
    mirror = ThreadMirror(workers=1)

    def boom() -> None:
        raise OSError("unreachable")

    mirror.submit(boom)
    eventually(lambda: mirror.stats.as_dict()["failed"] == 1)
    mirror.close()
    mirror.submit(lambda: None)
    assert mirror.stats.as_dict()["dropped"] == 1


async def test_task_mirror_bounds_in_flight_and_cancels_on_close() -> None:
    mirror = TaskMirror(max_in_flight=2)
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    for _ in range(3):
        mirror.submit(forever)
    await started.wait()
    assert mirror.in_flight == 2 and mirror.stats.as_dict()["dropped"] == 1
    await mirror.aclose()
    assert mirror.in_flight == 0
    mirror.submit(forever)
    assert mirror.stats.as_dict()["dropped"] == 2


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.SUCCESS),
        (499, Outcome.SUCCESS),
        (500, Outcome.ERROR_5XX),
        (501, Outcome.ERROR_5XX),
        (502, Outcome.GATEWAY_ERROR),
        (503, Outcome.GATEWAY_ERROR),
        (504, Outcome.GATEWAY_ERROR),
    ],
)
def test_http_outcomes(status: int, outcome: Outcome) -> None:
    assert http_outcome(status) is outcome


@pytest.mark.parametrize(
    ("code", "details", "outcome"),
    [
        (grpc.StatusCode.OK, None, Outcome.SUCCESS),
        (grpc.StatusCode.INVALID_ARGUMENT, None, Outcome.SUCCESS),
        (grpc.StatusCode.CANCELLED, None, Outcome.SUCCESS),
        (grpc.StatusCode.UNAVAILABLE, "backend overloaded", Outcome.GATEWAY_ERROR),
        (grpc.StatusCode.DEADLINE_EXCEEDED, None, Outcome.GATEWAY_ERROR),
        (grpc.StatusCode.INTERNAL, None, Outcome.ERROR_5XX),
        (grpc.StatusCode.UNKNOWN, None, Outcome.ERROR_5XX),
        (grpc.StatusCode.DATA_LOSS, None, Outcome.ERROR_5XX),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: Connection refused",
            Outcome.LOCAL_ORIGIN_FAILURE,
        ),
    ],
)
def test_grpc_outcomes(code: grpc.StatusCode, details: str | None, outcome: Outcome) -> None:
    assert grpc_outcome(code, details) is outcome
