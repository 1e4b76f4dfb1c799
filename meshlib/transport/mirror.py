"""Fire-and-forget shadow traffic (``request_mirror_policies``).

A mirrored request is copied to the shadow cluster and its response thrown
away; mirroring must never slow down or fail the caller. The sync side runs
shadows on a few daemon threads fed by a bounded queue: when the queue is
full the shadow is dropped (and counted), never waited for. The async side
starts a task per shadow, keeps it referenced until done, drops beyond a
bound, and cancels what is still running on close. Failures of a shadow are
counted and logged at debug level, never raised.

A shadow is one try of the mirror cluster's call plan, made by the plan's own
adapter as any try is (pick, build the request for the endpoint, send,
classify, report through the per-try observer: the shadow's load report and
metrics count for the shadow cluster), as Envoy's router sends a shadow: once,
never retried, bounded by the route timeout (HTTP) or the caller's timeout
capped by the route's maximum (gRPC), its answer thrown away.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from meshlib.observability.logging import get_logger
from meshlib.resilience.call_plan import NOTHING_EXCLUDED, CallPlan
from meshlib.resilience.deadline import Deadline
from meshlib.resilience.retry import Attempt
from meshlib.routing.plan import ForwardPlan, MirrorTarget

log = get_logger(__name__)

DEFAULT_WORKERS = 2
DEFAULT_QUEUE = 64
DEFAULT_ASYNC_IN_FLIGHT = 64

#: What a shadow's plan is asked for (HTTP: the request and its plan; gRPC: the call).
C = TypeVar("C")
#: What a shadow's try answers (thrown away, after ``finish`` frees it).
T = TypeVar("T")
#: The shadow's plan: the call plan of (the route, the mirror's cluster).
PlanOf = Callable[[ForwardPlan], CallPlan[C, T]]
#: The shadow's call, for its forward plan.
CallOf = Callable[[ForwardPlan], C]


def shadow_forward(forward: ForwardPlan, target: MirrorTarget) -> ForwardPlan:
    """``forward`` aimed at a mirror: its cluster and (``-shadow``) authority, no
    mirrors of its own, never reused for another request."""
    return ForwardPlan(
        forward.virtual_host,
        forward.route,
        forward.action,
        target.cluster,
        forward.path,
        target.authority,
        forward.request_hash,
        forward.request_headers,
        None,
        (),
        path_rewritten=forward.path_rewritten,
        host_rewritten=True,
    )


def shadow_attempt(plan: CallPlan[Any, Any], caller_timeout: float | None) -> Attempt:
    """The shadow's one try, bounded from now by the route timeout (HTTP), or the
    caller's timeout capped by the route's maximum (gRPC)."""
    bounds = [s for s in (caller_timeout, plan.timeout_s, plan.cap_s) if s is not None]
    deadline = Deadline(time.monotonic() + min(bounds)) if bounds else None
    return Attempt(1, NOTHING_EXCLUDED, deadline)


def _send_shadow(
    shadow: ForwardPlan,
    plan_of: PlanOf[C, T],
    call_of: CallOf[C],
    caller_timeout: float | None,
    finish: Callable[[T], None] | None,
) -> None:
    plan = plan_of(shadow)
    answer = plan.adapter.send(call_of(shadow), shadow_attempt(plan, caller_timeout))
    if finish is not None:
        finish(answer)


async def _send_shadow_async(
    shadow: ForwardPlan,
    plan_of: PlanOf[C, T],
    call_of: CallOf[C],
    caller_timeout: float | None,
    finish: Callable[[T], Awaitable[None]] | None,
) -> None:
    plan = plan_of(shadow)
    answer = await plan.adapter.send_async(call_of(shadow), shadow_attempt(plan, caller_timeout))
    if finish is not None:
        await finish(answer)


class MirrorStats:
    """Counters of shadow traffic (read them for tests and dashboards)."""

    __slots__ = ("_lock", "dropped", "failed", "sent", "skipped_streaming")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0  # shadows that got a response (any status)
        self.failed = 0  # shadows that raised (connect error, no endpoint, ...)
        self.dropped = 0  # shadows not sent: the mirror pool was saturated or closed
        self.skipped_streaming = 0  # not mirrored: the request body is a stream

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "sent": self.sent,
                "failed": self.failed,
                "dropped": self.dropped,
                "skipped_streaming": self.skipped_streaming,
            }


def _run_shadow(job: Callable[[], None], stats: MirrorStats) -> None:
    try:
        job()
    except Exception as exc:
        stats.count("failed")
        log.debug("mirror_failed", error=repr(exc))
    else:
        stats.count("sent")


class ThreadMirror:
    """Runs sync shadow jobs on a small pool of daemon threads (started lazily)."""

    def __init__(self, workers: int = DEFAULT_WORKERS, queue_size: int = DEFAULT_QUEUE) -> None:
        self.stats = MirrorStats()
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(queue_size)
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job``; drop it (counted) when the queue is full or closed."""
        if not self._threads:
            self._start()
        if self._closed:
            self.stats.count("dropped")
            return
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.stats.count("dropped")
            log.debug("mirror_dropped", reason="saturated")

    def shadow(
        self,
        forward: ForwardPlan,
        plan_of: PlanOf[C, T],
        call_of: CallOf[C],
        caller_timeout: float | None,
        finish: Callable[[T], None] | None = None,
    ) -> None:
        """Queue one shadow try per mirror of ``forward`` (see the module doc);
        ``finish`` frees the thrown-away answer (HTTP: reads and closes it)."""
        for target in forward.mirrors:
            shadow = shadow_forward(forward, target)
            self.submit(partial(_send_shadow, shadow, plan_of, call_of, caller_timeout, finish))

    def _start(self) -> None:
        with self._lock:
            if self._threads or self._closed:
                return
            for i in range(self._workers):
                thread = threading.Thread(
                    target=self._work, name=f"meshlib-mirror-{i}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            _run_shadow(job, self.stats)

    def close(self, timeout: float = 2.0) -> None:
        """Stop taking shadows; let queued ones finish (bounded by ``timeout``)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)  # after the queued jobs: they run first
        for thread in threads:
            thread.join(timeout)


class TaskMirror:
    """Runs async shadow jobs as tasks on the caller's loop, bounded in number."""

    def __init__(self, max_in_flight: int = DEFAULT_ASYNC_IN_FLIGHT) -> None:
        self.stats = MirrorStats()
        self._max = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def submit(self, job: Callable[[], Awaitable[None]]) -> None:
        """Start ``job()`` as a task now; drop it (counted) beyond the bound."""
        if self._closed or len(self._tasks) >= self._max:
            self.stats.count("dropped")
            log.debug("mirror_dropped", reason="closed" if self._closed else "saturated")
            return
        task = asyncio.ensure_future(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def shadow(
        self,
        forward: ForwardPlan,
        plan_of: PlanOf[C, T],
        call_of: CallOf[C],
        caller_timeout: float | None,
        finish: Callable[[T], Awaitable[None]] | None = None,
    ) -> None:
        """Start one shadow try per mirror of ``forward`` (the async twin of
        :meth:`ThreadMirror.shadow`)."""
        for target in forward.mirrors:
            shadow = shadow_forward(forward, target)
            self.submit(
                partial(_send_shadow_async, shadow, plan_of, call_of, caller_timeout, finish)
            )

    async def _run(self, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.count("failed")
            log.debug("mirror_failed", error=repr(exc))
        else:
            self.stats.count("sent")

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel shadows still running and wait for them to unwind."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
