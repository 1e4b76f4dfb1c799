from __future__ import annotations

import pytest

from meshlib.errors import ResilienceValueError
from meshlib.resilience.conditions import (
    ISTIO_DEFAULT_RETRY_ON,
    FailureKind,
    Outcome,
    RetryOn,
    is_idempotent_method,
)
from meshlib.resilience.grpc_codes import GrpcCode

CONNECT = Outcome(failure=FailureKind.CONNECT_FAILURE)
REFUSED = Outcome(failure=FailureKind.REFUSED_STREAM)
RESET = Outcome(failure=FailureKind.RESET)
TIMEOUT = Outcome(failure=FailureKind.TIMEOUT)
OTHER = Outcome(failure=FailureKind.OTHER)


def status(code: int, **headers: str) -> Outcome:
    return Outcome(status=code, headers=headers)


def grpc(code: GrpcCode) -> Outcome:
    return Outcome(status=200, grpc_status=code)


# condition -> (outcomes it retries, outcomes it does not)
CASES: dict[str, tuple[list[Outcome], list[Outcome]]] = {
    "5xx": (
        [status(500), status(503), status(599), CONNECT, REFUSED, RESET, TIMEOUT],
        [status(200), status(404), status(409), status(429), OTHER],
    ),
    "gateway-error": (
        [status(502), status(503), status(504), CONNECT, RESET, TIMEOUT],
        [status(500), status(501), status(200), OTHER],
    ),
    "reset": ([RESET, TIMEOUT, CONNECT, REFUSED], [status(503), OTHER]),
    "reset-before-request": ([CONNECT, REFUSED], [RESET, TIMEOUT, status(503)]),
    "connect-failure": ([CONNECT], [RESET, REFUSED, status(503)]),
    "refused-stream": ([REFUSED], [RESET, CONNECT, status(503)]),
    "retriable-4xx": ([status(409)], [status(400), status(429), status(503)]),
    "envoy-ratelimited": ([status(429, **{"x-envoy-ratelimited": "true"})], [status(429)]),
    "cancelled": ([grpc(GrpcCode.CANCELLED)], [grpc(GrpcCode.UNAVAILABLE), status(503)]),
    "deadline-exceeded": ([grpc(GrpcCode.DEADLINE_EXCEEDED)], [grpc(GrpcCode.INTERNAL)]),
    "internal": ([grpc(GrpcCode.INTERNAL)], [grpc(GrpcCode.UNKNOWN)]),
    "resource-exhausted": ([grpc(GrpcCode.RESOURCE_EXHAUSTED)], [grpc(GrpcCode.CANCELLED)]),
    "unavailable": ([grpc(GrpcCode.UNAVAILABLE)], [grpc(GrpcCode.OK), CONNECT]),
}


@pytest.mark.parametrize("condition", sorted(CASES))
def test_each_condition_classifies_outcomes(condition: str) -> None:
    retry_on = RetryOn.parse([condition])
    retried, not_retried = CASES[condition]
    for outcome in retried:
        assert retry_on.reason(outcome) == condition, outcome
    for outcome in not_retried:
        assert not retry_on(outcome), outcome


def test_retriable_status_codes_and_bare_numbers() -> None:
    retry_on = RetryOn.parse("retriable-status-codes", retriable_status_codes=[429])
    assert retry_on(status(429)) and not retry_on(status(503))
    istio_style = RetryOn.parse(["503", "connect-failure"])
    assert istio_style.reason(status(503)) == "retriable-status-codes"
    assert istio_style(CONNECT) and not istio_style(status(502))


def test_retriable_headers_take_predicates_and_need_an_answer() -> None:
    retry_on = RetryOn.parse(
        ["retriable-headers"], retriable_headers=[lambda h: h.get("x-upstream-retry") == "yes"]
    )
    assert retry_on(status(200, **{"x-upstream-retry": "yes"}))
    assert not retry_on(status(200, **{"x-upstream-retry": "no"}))
    assert not retry_on(RESET)


def test_comma_string_and_grpc_names_in_either_spelling() -> None:
    retry_on = RetryOn.parse("5xx, UNAVAILABLE ,deadline_exceeded")
    assert retry_on.conditions == {"5xx", "unavailable", "deadline-exceeded"}
    inert = RetryOn.parse(["http3-post-connect-failure"])  # Envoy's; meshlib has no HTTP/3
    assert not inert(CONNECT) and not inert(status(503))


@pytest.mark.parametrize("bad", ["5xxx", "retry-everything", "999"])
def test_unknown_conditions_are_clear_errors(bad: str) -> None:
    with pytest.raises(ResilienceValueError, match=r"route r1"):
        RetryOn.parse([bad], where="route r1")


def test_istio_default_policy() -> None:
    assert ISTIO_DEFAULT_RETRY_ON(CONNECT)
    assert ISTIO_DEFAULT_RETRY_ON(REFUSED)
    assert ISTIO_DEFAULT_RETRY_ON(status(503))
    assert ISTIO_DEFAULT_RETRY_ON(grpc(GrpcCode.UNAVAILABLE))
    assert not ISTIO_DEFAULT_RETRY_ON(status(500))
    assert not ISTIO_DEFAULT_RETRY_ON(RESET)


def test_idempotent_methods() -> None:
    assert is_idempotent_method("get") and is_idempotent_method("PUT")
    assert not is_idempotent_method("POST") and not is_idempotent_method("PATCH")
