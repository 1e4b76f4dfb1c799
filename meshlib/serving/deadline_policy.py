"""The caller's deadline: refuse a call that arrives late, run the rest under it.

The handler runs inside :func:`~meshlib.resilience.deadline_scope` with the
deadline the caller sent, so every mesh call it makes (httpx or gRPC, sync or
async) shares that budget and passes on what is left. A deadline that has already
passed is refused (504 / DEADLINE_EXCEEDED); a malformed deadline header is
refused naming it (400 / INVALID_ARGUMENT).
"""

from __future__ import annotations

from functools import partial

from meshlib.errors import DeadlineExceeded, ResilienceValueError
from meshlib.resilience.deadline import deadline_scope
from meshlib.serving.call import IncomingCall
from meshlib.serving.decision import PASS, Decision, Deny, Wrap


class DeadlinePolicy:
    """Runs each handler under its caller's deadline."""

    name = "deadline"

    def check(self, call: IncomingCall) -> Decision:
        try:
            deadline = call.deadline()
        except ResilienceValueError as exc:
            return Deny.from_error(exc)
        if deadline is None:
            return PASS
        if deadline.expired():
            return Deny.from_error(DeadlineExceeded("deadline already exceeded", timeout_s=0.0))
        return Wrap(partial(deadline_scope, deadline=deadline))

    def __repr__(self) -> str:
        return "DeadlinePolicy()"
