"""Which try outcomes are worth retrying: Envoy's ``retry_on`` as pure functions.

A transport describes each try as an :class:`Outcome` (HTTP status, gRPC
status, how it failed if no answer came, response headers); a
:class:`RetryOn` built from Envoy / Istio condition names says whether that
outcome is retriable. Semantics follow Envoy's router:

- ``5xx``: a 5xx answer, or no answer at all (connect failure, refused
  stream, reset, per-try timeout).
- ``gateway-error``: 502 / 503 / 504, or no answer at all.
- ``reset``: no answer at all (disconnect, reset, per-try timeout, connect failure).
- ``reset-before-request``: a reset before the request was sent (connect failure,
  refused stream) — safe even for non-idempotent requests.
- ``connect-failure``, ``refused-stream``: exactly those failures.
- ``retriable-4xx``: 409. ``retriable-status-codes``: the configured codes.
- ``retriable-headers``: a response header matcher matches.
- ``envoy-ratelimited``: the answer carries ``x-envoy-ratelimited``.
- gRPC (``x-envoy-retry-grpc-on``): ``cancelled``, ``deadline-exceeded``,
  ``internal``, ``resource-exhausted``, ``unavailable`` match the gRPC status.

Istio's ``retryOn`` may also list bare status codes (``"503"``): they join
``retriable-status-codes``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from meshlib.errors import ResilienceValueError
from meshlib.resilience.grpc_codes import GrpcCode


class FailureKind(enum.Enum):
    """How a try failed when no answer came back."""

    CONNECT_FAILURE = "connect-failure"  # never reached the server (refused, connect timeout)
    REFUSED_STREAM = "refused-stream"  # HTTP/2 REFUSED_STREAM: the server did not process it
    RESET = "reset"  # the connection or stream broke after the request went out
    TIMEOUT = "per-try-timeout"  # no answer within the per-try timeout
    OTHER = "other"  # any other error: never retried by Envoy conditions


# Failures where the request provably never reached the application.
NOT_SENT: Final = frozenset({FailureKind.CONNECT_FAILURE, FailureKind.REFUSED_STREAM})

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one try produced, as the retry conditions see it.

    ``headers`` are response headers (and trailers) with lower-case names;
    ``error`` is the exception a try raised (for exception-type predicates);
    ``endpoint`` is the ``host:port`` the try went to, if known.
    """

    status: int | None = None
    grpc_status: int | None = None
    failure: FailureKind | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    error: BaseException | None = None
    endpoint: str | None = None

    @property
    def answered(self) -> bool:
        """True when the server answered (a status, not a transport failure)."""
        return self.failure is None and (self.status is not None or self.grpc_status is not None)


HeaderPredicate = Callable[[Mapping[str, str]], bool]
RetryCondition = Callable[[Outcome], bool]
"""An abstract retry predicate over one try's outcome (a :class:`RetryOn` is one)."""


def on_5xx(outcome: Outcome) -> bool:
    return outcome.failure not in (None, FailureKind.OTHER) or (
        outcome.status is not None and 500 <= outcome.status <= 599
    )


def on_gateway_error(outcome: Outcome) -> bool:
    return outcome.failure not in (None, FailureKind.OTHER) or outcome.status in (502, 503, 504)


def on_reset(outcome: Outcome) -> bool:
    return outcome.failure not in (None, FailureKind.OTHER)


def on_reset_before_request(outcome: Outcome) -> bool:
    return outcome.failure in NOT_SENT


def on_connect_failure(outcome: Outcome) -> bool:
    return outcome.failure is FailureKind.CONNECT_FAILURE


def on_refused_stream(outcome: Outcome) -> bool:
    return outcome.failure is FailureKind.REFUSED_STREAM


def on_retriable_4xx(outcome: Outcome) -> bool:
    return outcome.status == 409


def on_envoy_ratelimited(outcome: Outcome) -> bool:
    return "x-envoy-ratelimited" in outcome.headers


def on_http3_post_connect_failure(outcome: Outcome) -> bool:
    """meshlib speaks no HTTP/3, so this Envoy condition never matches (accepted, inert)."""
    return False


_HTTP_CONDITIONS: Final[Mapping[str, RetryCondition]] = MappingProxyType(
    {
        "5xx": on_5xx,
        "gateway-error": on_gateway_error,
        "reset": on_reset,
        "reset-before-request": on_reset_before_request,
        "connect-failure": on_connect_failure,
        "refused-stream": on_refused_stream,
        "retriable-4xx": on_retriable_4xx,
        "envoy-ratelimited": on_envoy_ratelimited,
        "http3-post-connect-failure": on_http3_post_connect_failure,
    }
)
# Conditions that need data from the policy rather than a fixed function.
_PARAMETRIC: Final = frozenset({"retriable-status-codes", "retriable-headers"})

GRPC_CONDITIONS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "cancelled": GrpcCode.CANCELLED,
        "deadline-exceeded": GrpcCode.DEADLINE_EXCEEDED,
        "internal": GrpcCode.INTERNAL,
        "resource-exhausted": GrpcCode.RESOURCE_EXHAUSTED,
        "unavailable": GrpcCode.UNAVAILABLE,
    }
)

KNOWN_CONDITIONS: Final = frozenset({*_HTTP_CONDITIONS, *_PARAMETRIC, *GRPC_CONDITIONS})


@dataclass(frozen=True, slots=True)
class RetryOn:
    """Envoy retry conditions plus the data the parametric ones need.

    Call it with an :class:`Outcome`; :meth:`reason` names the matching condition.
    """

    conditions: frozenset[str] = frozenset()
    retriable_status_codes: frozenset[int] = frozenset()
    retriable_headers: tuple[HeaderPredicate, ...] = ()

    @classmethod
    def parse(
        cls,
        names: Iterable[str] | str,
        *,
        retriable_status_codes: Iterable[int] = (),
        retriable_headers: Iterable[HeaderPredicate] = (),
        where: str = "retry_on",
    ) -> RetryOn:
        """Build from names (a list or Envoy's comma-separated string).

        Bare numbers are status codes (Istio). gRPC code names in either
        spelling (``unavailable`` / ``UNAVAILABLE``) are accepted. An unknown
        name is a :class:`ResilienceValueError` naming it and ``where``.
        """
        items = names.split(",") if isinstance(names, str) else list(names)
        conditions: set[str] = set()
        codes = set(retriable_status_codes)
        for raw in items:
            name = raw.strip()
            if not name:
                continue
            if name.isdigit():
                code = int(name)
                if not 100 <= code <= 599:
                    raise ResilienceValueError(f"{where}: status code {code} is not 100..599")
                codes.add(code)
                conditions.add("retriable-status-codes")
                continue
            normal = name.lower().replace("_", "-")
            if normal not in KNOWN_CONDITIONS:
                known = ", ".join(sorted(KNOWN_CONDITIONS))
                raise ResilienceValueError(
                    f"{where}: unknown retry condition {name!r} (known: {known})"
                )
            conditions.add(normal)
        return cls(frozenset(conditions), frozenset(codes), tuple(retriable_headers))

    def reason(self, outcome: Outcome) -> str | None:
        """The name of the first condition ``outcome`` matches, or ``None``."""
        for name in sorted(self.conditions):
            check = _HTTP_CONDITIONS.get(name)
            if check is not None and check(outcome):
                return name
            grpc_code = GRPC_CONDITIONS.get(name)
            if grpc_code is not None and outcome.grpc_status == grpc_code:
                return name
        if "retriable-status-codes" in self.conditions and (
            outcome.status in self.retriable_status_codes
        ):
            return "retriable-status-codes"
        if (
            "retriable-headers" in self.conditions
            and outcome.failure is None
            and any(matches(outcome.headers) for matches in self.retriable_headers)
        ):
            return "retriable-headers"
        return None

    def __call__(self, outcome: Outcome) -> bool:
        return self.reason(outcome) is not None


# Istio's default retry policy (attempts 2) retries on these conditions.
ISTIO_DEFAULT_RETRY_ON: Final = RetryOn.parse(
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    retriable_status_codes=(503,),
)

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def is_idempotent_method(method: str) -> bool:
    """RFC 9110 idempotent methods (a retry of these cannot double an effect)."""
    return method.upper() in IDEMPOTENT_METHODS
