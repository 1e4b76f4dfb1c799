"""Istio ``retries`` to Envoy's RetryPolicy, the way Istio maps it.

* no ``retries``: Istio's default policy (2 retries on connect-failure,
  refused-stream, unavailable, cancelled and 503, on another host);
* ``attempts: 0``: no retry policy at all;
* otherwise the default with ``num_retries = attempts``; ``retryOn`` replaces
  the conditions: names (HTTP and gRPC ones share Envoy's one ``retry_on``
  string) stay, numbers become ``retriable_status_codes`` plus the
  ``retriable-status-codes`` condition. ``retryRemoteLocalities`` adds the
  previous_priorities retry priority.

The back-off is Envoy's default (25 ms base, 250 ms max), written out so every
client reads the same numbers.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as previous_priorities_pb2,
)
from google.protobuf import duration_pb2, wrappers_pb2

from controlplane.traffic_model import HTTPRetry
from controlplane.translate.common import duration, pack
from controlplane.translate.errors import TranslationError

DEFAULT_ATTEMPTS = 2
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_STATUS_CODES: tuple[int, ...] = (503,)
STATUS_CODES_CONDITION = "retriable-status-codes"
HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5
BACK_OFF_BASE_MS = 25
BACK_OFF_MAX_MS = 250
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"


def retry_policy(retries: HTTPRetry | None, where: str) -> rc.RetryPolicy | None:
    """The route's RetryPolicy; None means "do not retry"."""
    if retries is None:
        return _policy(DEFAULT_ATTEMPTS, DEFAULT_RETRY_ON, DEFAULT_STATUS_CODES)
    if retries.attempts < 0:
        raise TranslationError(f"{where}.attempts: must be >= 0, got {retries.attempts}")
    if retries.attempts == 0:
        return None
    retry_on, codes = DEFAULT_RETRY_ON, DEFAULT_STATUS_CODES
    if retries.retry_on:
        retry_on, codes = _parse_retry_on(retries.retry_on, f"{where}.retryOn")
    policy = _policy(retries.attempts, retry_on, codes)
    if retries.per_try_timeout_s is not None:
        if retries.per_try_timeout_s <= 0:
            raise TranslationError(
                f"{where}.perTryTimeout: must be > 0, got {retries.per_try_timeout_s}s"
            )
        policy.per_try_timeout.CopyFrom(duration(retries.per_try_timeout_s))
    if retries.retry_remote_localities:
        config = previous_priorities_pb2.PreviousPrioritiesConfig(
            update_frequency=retries.attempts + 1
        )
        policy.retry_priority.CopyFrom(
            rc.RetryPolicy.RetryPriority(name=PREVIOUS_PRIORITIES, typed_config=pack(config))
        )
    return policy


def _policy(attempts: int, retry_on: str, codes: tuple[int, ...]) -> rc.RetryPolicy:
    return rc.RetryPolicy(
        retry_on=retry_on,
        num_retries=wrappers_pb2.UInt32Value(value=attempts),
        retriable_status_codes=list(codes),
        retry_host_predicate=[
            rc.RetryPolicy.RetryHostPredicate(
                name=PREVIOUS_HOSTS, typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate())
            )
        ],
        host_selection_retry_max_attempts=HOST_SELECTION_RETRY_MAX_ATTEMPTS,
        retry_back_off=rc.RetryPolicy.RetryBackOff(
            base_interval=duration_pb2.Duration(nanos=BACK_OFF_BASE_MS * 1_000_000),
            max_interval=duration_pb2.Duration(nanos=BACK_OFF_MAX_MS * 1_000_000),
        ),
    )


def _parse_retry_on(entries: tuple[str, ...], where: str) -> tuple[str, tuple[int, ...]]:
    names: list[str] = []
    codes: list[int] = []
    for entry in entries:
        item = entry.strip()
        if item.isdigit():
            code = int(item)
            if not 100 <= code <= 599:
                raise TranslationError(f"{where}: {item} is not an HTTP status code")
            if code not in codes:
                codes.append(code)
        elif item and item not in names:
            names.append(item)
    if codes and STATUS_CODES_CONDITION not in names:
        names.append(STATUS_CODES_CONDITION)
    if not names:
        raise TranslationError(f"{where}: no retry condition given")
    return ",".join(names), tuple(codes)
