"""``@fallback(handler)``: answer from a fallback when a call fails or its service is degraded.

The handler is called with the SAME arguments as the decorated function (so
one signature serves both) and its return value is returned instead. The
reason is available inside the handler from :func:`fallback_cause`: the
exception that triggered it, or ``None`` when the mesh marked ``service``
degraded (then the function is not called at all). Async functions need an
async handler (checked when decorating).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Final, ParamSpec, TypeVar, cast

from meshlib.observability.logging import get_logger
from meshlib.observability.metrics import resilience_metrics
from meshlib.resilience.degraded import DegradedServices, degraded_services

_log = get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

_CAUSE: Final[contextvars.ContextVar[BaseException | None]] = contextvars.ContextVar(
    "meshlib_fallback_cause", default=None
)

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


def fallback_cause() -> BaseException | None:
    """Inside a fallback handler: the exception that triggered it (``None``: degraded)."""
    return _CAUSE.get()


def fallback(
    handler: Callable[P, R],
    *,
    on: ExceptionTypes = Exception,
    service: str | None = None,
    registry: DegradedServices | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Call ``handler(*args, **kwargs)`` when the function raises ``on``.

    With ``service="sessions:50051"`` the handler also answers, without calling
    the function, while the mesh marks that service degraded.
    """
    degraded = registry if registry is not None else degraded_services

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        name = getattr(func, "__qualname__", repr(func))
        is_async = inspect.iscoroutinefunction(func)
        if is_async and not inspect.iscoroutinefunction(handler):
            raise TypeError(f"@fallback on async {name}: the handler must be an async function")

        def is_degraded() -> bool:
            if service is not None and degraded.is_degraded(service):
                _log.info("fallback", function=name, reason="degraded", service=service)
                resilience_metrics().fallback(name, "degraded")
                return True
            return False

        if is_async:
            async_func = cast(Callable[P, Coroutine[Any, Any, Any]], func)
            async_handler = cast(Callable[P, Coroutine[Any, Any, Any]], handler)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                if is_degraded():
                    return await async_handler(*args, **kwargs)
                try:
                    return await async_func(*args, **kwargs)
                except on as error:
                    _log.info("fallback", function=name, reason=type(error).__name__)
                    resilience_metrics().fallback(name, type(error).__name__)
                    token = _CAUSE.set(error)
                    try:
                        return await async_handler(*args, **kwargs)
                    finally:
                        _CAUSE.reset(token)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if is_degraded():
                return handler(*args, **kwargs)
            try:
                return func(*args, **kwargs)
            except on as error:
                _log.info("fallback", function=name, reason=type(error).__name__)
                resilience_metrics().fallback(name, type(error).__name__)
                token = _CAUSE.set(error)
                try:
                    return handler(*args, **kwargs)
                finally:
                    _CAUSE.reset(token)

        return wrapper

    return decorate
