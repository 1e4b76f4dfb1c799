"""Deadlines: one time budget shared by a call, its retries and the calls it makes.

A :class:`Deadline` is an absolute point on a monotonic clock. The current one
lives in a context variable, so nested calls (and asyncio tasks, which copy the
context) share it; :func:`deadline_scope` can only shorten it, never extend it.
Downstream it travels as gRPC's ``grpc-timeout`` (set by grpcio from the call's
``timeout=``) or, for HTTP, ``x-meshlib-deadline-ms`` = remaining milliseconds.
A server reads either (and Envoy's ``x-envoy-expected-rq-timeout-ms``) back with
:func:`incoming_deadline_scope`. Expired work is not started: :func:`check_deadline`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias, TypeVar

from meshlib.errors import DeadlineExceeded, ResilienceValueError

Clock = Callable[[], float]
T = TypeVar("T")

DEADLINE_HEADER: Final = "x-meshlib-deadline-ms"
ENVOY_TIMEOUT_HEADER: Final = "x-envoy-expected-rq-timeout-ms"
GRPC_TIMEOUT_HEADER: Final = "grpc-timeout"

# grpc-timeout units (PROTOCOL-HTTP2.md): value of at most 8 ASCII digits + unit.
_GRPC_UNITS_NS: Final = {
    "H": 3600 * 10**9,
    "M": 60 * 10**9,
    "S": 10**9,
    "m": 10**6,
    "u": 10**3,
    "n": 1,
}
_GRPC_MAX_VALUE: Final = 99_999_999

Headers: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str | bytes]]


class LowerHeaders(dict[str, str]):
    """Request headers whose names are all lower-case (what the transports hand the
    resilience stages), so a stage can test names without normalising them."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute deadline ``at`` on ``clock`` (``time.monotonic`` unless injected).

    ``at`` means something only on its own clock: every comparison goes through
    ``clock`` (two deadlines on different clocks compare by the time they have left).
    """

    at: float
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float, *, clock: Clock = time.monotonic) -> Deadline:
        """The deadline ``seconds`` from now."""
        if math.isnan(seconds):
            raise ResilienceValueError("deadline: seconds is NaN")
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.at

    def earliest(self, other: Deadline | None) -> Deadline:
        """The earlier of this deadline and ``other`` (a budget can only shrink)."""
        if other is None:
            return self
        if other.clock is self.clock:
            return self if self.at <= other.at else other
        return self if self.at - self.clock() <= other.at - other.clock() else other

    def check(self, what: str = "call") -> None:
        """Raise :class:`DeadlineExceeded` if the deadline has passed."""
        if self.expired():
            raise DeadlineExceeded(f"deadline exceeded before the {what} started", timeout_s=0.0)


_CURRENT: Final[contextvars.ContextVar[Deadline | None]] = contextvars.ContextVar(
    "meshlib_deadline", default=None
)


#: ``current_deadline()``: the deadline of the running call, if any (the context
#: variable's own getter: no Python frame, as the request path reads it per call).
current_deadline: Final[Callable[[], Deadline | None]] = _CURRENT.get


def remaining_time() -> float | None:
    """Seconds left on the current deadline (``None`` when there is none)."""
    deadline = _CURRENT.get()
    return None if deadline is None else deadline.remaining()


def check_deadline(what: str = "call") -> None:
    """Refuse to start work whose deadline has already passed."""
    deadline = _CURRENT.get()
    if deadline is not None:
        deadline.check(what)


@contextlib.contextmanager
def deadline_scope(
    seconds: float | None = None,
    *,
    deadline: Deadline | None = None,
    clock: Clock = time.monotonic,
) -> Iterator[Deadline | None]:
    """Run the block under a deadline ``seconds`` from now (or ``deadline``).

    The effective deadline is the earliest of the new one and the enclosing one,
    so a nested scope never extends its caller's budget. With neither argument the
    block runs under the enclosing deadline unchanged. Works in sync code and in
    coroutines alike (the context variable is per thread / per task).
    """
    new = deadline
    if seconds is not None:
        new = Deadline.after(seconds, clock=clock).earliest(new)
    effective = new.earliest(_CURRENT.get()) if new is not None else _CURRENT.get()
    token = _CURRENT.set(effective)
    try:
        yield effective
    finally:
        _CURRENT.reset(token)


def enter_deadline(deadline: Deadline) -> contextvars.Token[Deadline | None]:
    """Make ``deadline`` (already the earliest) current; undo with :func:`exit_deadline`.

    The allocation-free form of :func:`deadline_scope` for the request path.
    """
    return _CURRENT.set(deadline)


def exit_deadline(token: contextvars.Token[Deadline | None]) -> None:
    _CURRENT.reset(token)


#: The message of the cancellation a :class:`TryTimer` delivers (see :func:`cut_by_deadline`).
TRY_DEADLINE_CANCEL: Final = "meshlib: the try's deadline passed"


def cut_by_deadline(error: BaseException) -> bool:
    """Whether ``error`` is the cancellation a :class:`TryTimer` delivered (a try cut at
    its deadline, not cancelled by its caller): code that records the try reads it so."""
    return isinstance(error, asyncio.CancelledError) and error.args[:1] == (TRY_DEADLINE_CANCEL,)


class TryTimer:
    """Cancels the current task after ``seconds``: how an async try is bounded.

    What ``asyncio.timeout`` does, reduced to one timer handle (no task per try
    as ``wait_for`` makes, no context-manager object), which matters on the
    request path. The awaiting code catches ``CancelledError`` and asks
    :meth:`fired`; a cancellation that is not this timer's passes through. Always
    :meth:`cancel` it when the wait ends. (Python 3.10 has no cancel counts: there
    an outer cancel that races the timer reads as the timeout.)
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_task")

    def __init__(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None, "TryTimer needs a running task"
        self._task = task
        self._cancelling = 0
        if sys.version_info >= (3, 11):
            self._cancelling = task.cancelling()
        self._expired = False
        self._handle = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        self._task.cancel(TRY_DEADLINE_CANCEL)

    def fired(self) -> bool:
        """In ``except CancelledError``: whether this timer's cancel ended the wait
        (the cancel is then taken back)."""
        if not self._expired:
            return False
        if sys.version_info >= (3, 11):
            return self._task.uncancel() <= self._cancelling
        return True

    def cancel(self) -> None:
        self._handle.cancel()


async def run_within(awaitable: Awaitable[T], seconds: float) -> T:
    """Await ``awaitable`` in the current task, cancelled after ``seconds``
    (``asyncio.TimeoutError``); see :class:`TryTimer`."""
    timer = TryTimer(seconds)
    try:
        return await awaitable
    except asyncio.CancelledError:
        if timer.fired():
            raise asyncio.TimeoutError from None
        raise
    finally:
        timer.cancel()


def encode_grpc_timeout(seconds: float) -> str:
    """``seconds`` as a ``grpc-timeout`` value, rounded up to the unit used.

    Milliseconds are preferred (``"1500m"``); coarser units when the value would
    not fit 8 digits, microseconds below one millisecond.
    """
    if math.isnan(seconds):
        raise ResilienceValueError("grpc-timeout: seconds is NaN")
    nanos = max(0, round(seconds * 1e9))
    units = ("u", "m", "S", "M", "H") if nanos < _GRPC_UNITS_NS["m"] else ("m", "S", "M", "H")
    for unit in units:
        value = -(-nanos // _GRPC_UNITS_NS[unit])
        if value <= _GRPC_MAX_VALUE:
            return f"{value}{unit}"
    return f"{_GRPC_MAX_VALUE}H"


def decode_grpc_timeout(value: str) -> float:
    """Seconds from a ``grpc-timeout`` value such as ``"2S"`` or ``"1500m"``."""
    text = value.strip()
    digits, unit = text[:-1], text[-1:]
    if unit not in _GRPC_UNITS_NS or not digits.isdigit() or len(digits) > 8:
        raise ResilienceValueError(
            f"{GRPC_TIMEOUT_HEADER}: {value!r} is not 1-8 digits followed by one of H M S m u n"
        )
    return int(digits) * _GRPC_UNITS_NS[unit] / 1e9


def deadline_headers(deadline: Deadline | None = None) -> dict[str, str]:
    """HTTP headers that carry ``deadline`` (default: the current one) downstream."""
    deadline = deadline if deadline is not None else _CURRENT.get()
    if deadline is None:
        return {}
    return {DEADLINE_HEADER: str(math.ceil(deadline.remaining() * 1000))}


def _header_items(headers: Headers) -> Iterator[tuple[str, str]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in items:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        yield key.lower(), text


def _milliseconds(name: str, value: str) -> float:
    text = value.strip()
    if not text.isdigit():
        raise ResilienceValueError(f"{name}: {value!r} is not a whole number of milliseconds")
    return int(text) / 1000.0


def deadline_from_headers(headers: Headers, *, clock: Clock = time.monotonic) -> Deadline | None:
    """The deadline incoming headers or gRPC metadata carry (the earliest if several).

    Reads ``grpc-timeout``, ``x-meshlib-deadline-ms`` and Envoy's
    ``x-envoy-expected-rq-timeout-ms``; a malformed value is a
    :class:`ResilienceValueError` naming the header.
    """
    budgets: list[float] = []
    for name, value in _header_items(headers):
        if name == GRPC_TIMEOUT_HEADER:
            budgets.append(decode_grpc_timeout(value))
        elif name in (DEADLINE_HEADER, ENVOY_TIMEOUT_HEADER):
            budgets.append(_milliseconds(name, value))
    if not budgets:
        return None
    return Deadline.after(min(budgets), clock=clock)


@contextlib.contextmanager
def incoming_deadline_scope(
    headers: Headers, *, clock: Clock = time.monotonic
) -> Iterator[Deadline | None]:
    """Server side: run the handler under the deadline the caller sent."""
    with deadline_scope(deadline=deadline_from_headers(headers, clock=clock)) as effective:
        yield effective
