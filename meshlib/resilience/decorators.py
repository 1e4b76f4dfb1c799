"""Decorators that give application functions the mesh's resilience, sync or async.

- ``@retry(attempts=3, on=..., backoff=..., budget=...)``: tenacity-driven
  retries with Envoy's jittered back-off and, by default, a retry budget per
  decorated function (20% of concurrent calls, at least 3 concurrent retries)
  so a failing dependency cannot multiply its load. ``attempts`` counts every
  try, the first included. Retries stop at the current deadline.
- ``@timeout(seconds)``: runs the call under a deadline (nested mesh calls and
  ``grpc-timeout`` / ``x-meshlib-deadline-ms`` propagation share it). Async
  functions are cancelled at the deadline. Sync functions cannot be
  interrupted safely: they run in the caller's thread, mesh calls inside them
  respect the deadline, and if the function returns late its result is
  discarded and :class:`DeadlineExceeded` is raised. Either way, work whose
  deadline already passed is not started.
- ``@circuit_breaker("name" | CircuitBreaker, config=...)``: a resilience4j
  breaker (shared by name through :data:`breakers`) guards the function.
- ``@fallback(handler, on=..., service=...)``: see :mod:`meshlib.resilience.fallback`.

Every decorator keeps the function's signature (``functools.wraps`` + ParamSpec).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from meshlib.errors import DeadlineExceeded, ResilienceValueError
from meshlib.resilience.backoff import BackOff
from meshlib.resilience.breaker import BreakerConfig, BreakerRegistry, CircuitBreaker, breakers
from meshlib.resilience.budget import RetryBudget
from meshlib.resilience.conditions import FailureKind, Outcome
from meshlib.resilience.deadline import deadline_scope, run_within
from meshlib.resilience.fallback import ExceptionTypes, fallback
from meshlib.resilience.retry import (
    Attempt,
    RetryPolicy,
    async_run_with_retries,
    run_with_retries,
)

__all__ = ["circuit_breaker", "fallback", "retry", "timeout"]

P = ParamSpec("P")
R = TypeVar("R")

AsyncFn = Callable[..., Coroutine[Any, Any, Any]]


def _name(func: Callable[..., object]) -> str:
    return getattr(func, "__qualname__", repr(func))


def _describe_error(error: BaseException) -> Outcome:
    return Outcome(failure=FailureKind.OTHER, error=error)


def _outcome_matcher(
    on: ExceptionTypes | Callable[[BaseException], bool],
) -> Callable[[Outcome], bool]:
    if isinstance(on, (type, tuple)):
        types = on

        def matches(outcome: Outcome) -> bool:
            return outcome.error is not None and isinstance(outcome.error, types)

        return matches

    predicate = on

    def matches_predicate(outcome: Outcome) -> bool:
        return outcome.error is not None and predicate(outcome.error)

    return matches_predicate


def retry(
    attempts: int = 3,
    *,
    on: ExceptionTypes | Callable[[BaseException], bool] = Exception,
    backoff: BackOff | float = 0.025,
    budget: RetryBudget | bool = True,
    per_try_timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry the function on exceptions matching ``on`` (types or a predicate)."""
    if attempts < 1:
        raise ResilienceValueError(f"@retry: attempts {attempts} must be >= 1")
    back_off = backoff if isinstance(backoff, BackOff) else BackOff(base_interval_s=backoff)
    policy = RetryPolicy(
        num_retries=attempts - 1,
        retry_on=_outcome_matcher(on),
        per_try_timeout_s=per_try_timeout,
        back_off=back_off,
        retry_previous_hosts=False,
    )

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        name = _name(func)
        shared: RetryBudget | None
        if isinstance(budget, RetryBudget):
            shared = budget
        else:
            shared = RetryBudget(name=name) if budget else None

        if inspect.iscoroutinefunction(func):
            async_func = cast(AsyncFn, func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async def one_try(_attempt: Attempt) -> Any:
                    return await async_func(*args, **kwargs)

                return await async_run_with_retries(
                    one_try, policy, describe_error=_describe_error, budget=shared,
                    sleep=async_sleep, rng=rng, name=name,
                )  # fmt: skip

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            def one_try(_attempt: Attempt) -> R:
                return func(*args, **kwargs)

            return run_with_retries(
                one_try, policy, describe_error=_describe_error, budget=shared,
                sleep=sleep, rng=rng, name=name,
            )  # fmt: skip

        return wrapper

    return decorate


def timeout(seconds: float) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the function under a deadline ``seconds`` from the call (see module doc)."""
    if not seconds > 0:
        raise ResilienceValueError(f"@timeout: seconds {seconds} must be > 0")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        name = _name(func)

        def late() -> DeadlineExceeded:
            return DeadlineExceeded(f"{name} did not finish within {seconds}s", timeout_s=seconds)

        if inspect.iscoroutinefunction(func):
            async_func = cast(AsyncFn, func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with deadline_scope(seconds) as deadline:
                    assert deadline is not None
                    deadline.check(name)
                    try:
                        return await run_within(async_func(*args, **kwargs), deadline.remaining())
                    except asyncio.TimeoutError:
                        if deadline.expired():
                            raise late() from None
                        raise

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with deadline_scope(seconds) as deadline:
                assert deadline is not None
                deadline.check(name)
                result = func(*args, **kwargs)
                if deadline.expired():
                    raise late()
                return result

        return wrapper

    return decorate


def circuit_breaker(
    name_or_breaker: str | CircuitBreaker,
    *,
    config: BreakerConfig | None = None,
    registry: BreakerRegistry | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard the function with a breaker: a named one (shared, created on first use) or yours."""
    if isinstance(name_or_breaker, CircuitBreaker):
        breaker = name_or_breaker
    else:
        breaker = (registry if registry is not None else breakers).get(name_or_breaker, config)

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):
            async_func = cast(AsyncFn, func)

            @functools.wraps(func)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with breaker.guard():
                    return await async_func(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with breaker.guard():
                return func(*args, **kwargs)

        return wrapper

    return decorate
