"""What a server policy answers, and the one loop that applies a list of them.

A policy's :meth:`ServerPolicy.check` answers, without blocking:

- :data:`PASS`: nothing to do;
- :class:`Deny`: refuse the call, with the status for each protocol (the handler
  does not run; the policies after it are not asked);
- :class:`Wrap`: run the handler inside a context manager (a deadline scope, a
  span, a timer); wraps nest in list order, the first one outermost.

:func:`admit` is the only place that walks the list; both adapters call it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias

from meshlib.errors import RateLimitedError, ResilienceError
from meshlib.serving.call import IncomingCall

_GRPC_UNAVAILABLE: Final = 14


class Pass:
    """The answer "nothing to do" (use the :data:`PASS` singleton)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PASS"


PASS: Final = Pass()


@dataclass(frozen=True, slots=True)
class Deny:
    """Refuse the call: ``http_status`` for HTTP callers, ``grpc_status`` (a status
    code number) for gRPC callers, ``message`` as the gRPC details and the HTTP body
    (unless ``body`` is given), ``headers`` added to the HTTP answer."""

    http_status: int
    grpc_status: int
    message: str
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_error(cls, error: ResilienceError, *, body: str | None = None) -> Deny:
        """The denial a sidecar would answer ``error`` with (its statuses and headers)."""
        headers = error.response_headers if isinstance(error, RateLimitedError) else ()
        return cls(
            http_status=error.http_status or 503,
            grpc_status=_GRPC_UNAVAILABLE if error.grpc_status is None else error.grpc_status,
            message=f"meshlib: {error}",
            body=body,
            headers=headers,
        )

    @property
    def http_body(self) -> str:
        return self.message if self.body is None else self.body


@dataclass(frozen=True, slots=True)
class Wrap:
    """Run the handler inside ``enter()`` (a context manager, entered per call)."""

    enter: Callable[[], AbstractContextManager[object]]


Decision: TypeAlias = "Pass | Deny | Wrap"


class ServerPolicy(Protocol):
    """One server-side policy: ``name`` for logs and errors, ``check`` per call."""

    name: str

    def check(self, call: IncomingCall) -> Decision: ...


class Admitted:
    """A call every policy let through; :meth:`scope` enters their wraps in order."""

    __slots__ = ("wraps",)

    def __init__(self, wraps: tuple[Wrap, ...]) -> None:
        self.wraps = wraps

    def scope(self) -> AbstractContextManager[object]:
        """The context the handler runs in (the wraps, first outermost)."""
        if not self.wraps:
            return contextlib.nullcontext()
        if len(self.wraps) == 1:
            return self.wraps[0].enter()
        return _nested(self.wraps)


_NOTHING: Final = Admitted(())


@contextlib.contextmanager
def _nested(wraps: tuple[Wrap, ...]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for wrap in wraps:
            stack.enter_context(wrap.enter())
        yield


def admit(policies: Sequence[ServerPolicy], call: IncomingCall) -> Admitted | Deny:
    """Ask each policy in order: the first :class:`Deny` ends the walk; otherwise the
    call is admitted with the wraps collected."""
    wraps: list[Wrap] = []
    for policy in policies:
        decision = policy.check(call)
        if decision is PASS:
            continue
        if isinstance(decision, Deny):
            return decision
        if not isinstance(decision, Wrap):
            raise TypeError(
                f"server policy {policy.name!r} answered {decision!r}: "
                "expected PASS, a Deny or a Wrap"
            )
        wraps.append(decision)
    return Admitted(tuple(wraps)) if wraps else _NOTHING
