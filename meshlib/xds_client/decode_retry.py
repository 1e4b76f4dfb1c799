"""RetryPolicy and HedgePolicy (route or virtual host).

Validated as Envoy validates them, with gRFC A44's checks (a back-off base
interval above 0, a max interval not below it). ``retry_on`` names meshlib does
not know are kept in ``unknown_retry_on`` (and logged) rather than refused, as
Envoy and gRPC both ignore them.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2 as pp_pb2,
)

from meshlib.observability.logging import get_logger
from meshlib.xds_client._decode_util import (
    DecodeContext,
    optional_duration_s,
    per_million,
    positive_duration_s,
    reject_if_set,
    unpack_any,
    wrapped,
)
from meshlib.xds_client.decode_headers import header_name
from meshlib.xds_client.decode_matchers import header_matchers
from meshlib.xds_client.resources import (
    HedgePolicy,
    RateLimitedRetryBackOff,
    ResetHeader,
    ResetHeaderFormat,
    RetryBackOff,
    RetryOn,
    RetryPolicy,
)

log = get_logger(__name__)

_PREVIOUS_HOSTS_URL = (
    "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
)
_PREVIOUS_HOSTS_NAME = "envoy.retry_host_predicates.previous_hosts"
_PREVIOUS_PRIORITIES_NAME = "envoy.retry_priorities.previous_priorities"
_RETRY_ON = {c.value: c for c in RetryOn}
_RESET_FORMATS = (ResetHeaderFormat.SECONDS, ResetHeaderFormat.UNIX_TIMESTAMP)
_DEFAULT_RATE_LIMITED_MAX_S = 300.0


def retry_policy(ctx: DecodeContext, policy: Any, where: str) -> RetryPolicy:
    """Validate one ``envoy.config.route.v3.RetryPolicy``."""
    reject_if_set(ctx, policy, ("retry_options_predicates",), where)
    known: set[RetryOn] = set()
    unknown: list[str] = []
    for raw in policy.retry_on.split(","):
        name = raw.strip()
        if not name:
            continue
        if name in _RETRY_ON:
            known.add(_RETRY_ON[name])
        elif name not in unknown:
            unknown.append(name)
    if unknown:
        log.warning("xds_retry_on_unknown", resource=ctx.resource_name, where=where, names=unknown)
    attempts = policy.host_selection_retry_max_attempts
    if attempts < 0:
        raise ctx.error(f"{where}.host_selection_retry_max_attempts: must not be negative")
    codes = tuple(policy.retriable_status_codes)
    for i, code in enumerate(codes):
        if not 100 <= code <= 599:
            raise ctx.error(f"{where}.retriable_status_codes[{i}]: {code} is not an HTTP status")
    per_try = optional_duration_s(ctx, policy, "per_try_timeout", where)
    per_try_idle = optional_duration_s(ctx, policy, "per_try_idle_timeout", where)
    return RetryPolicy(
        retry_on=frozenset(known),
        unknown_retry_on=tuple(unknown),
        num_retries=wrapped(policy, "num_retries", 1),
        per_try_timeout_s=per_try or None,
        per_try_idle_timeout_s=per_try_idle or None,
        retry_previous_hosts=_previous_hosts(ctx, policy.retry_host_predicate, where),
        host_selection_retry_max_attempts=max(1, attempts),
        retriable_status_codes=codes,
        retriable_headers=header_matchers(
            ctx, policy.retriable_headers, f"{where}.retriable_headers"
        ),
        retriable_request_headers=header_matchers(
            ctx, policy.retriable_request_headers, f"{where}.retriable_request_headers"
        ),
        back_off=_back_off(ctx, policy, f"{where}.retry_back_off"),
        rate_limited_back_off=_rate_limited_back_off(ctx, policy, where),
        previous_priorities_update_frequency=_previous_priorities(ctx, policy, where),
    )


def hedge_policy(ctx: DecodeContext, policy: Any, where: str) -> HedgePolicy:
    """Validate one ``envoy.config.route.v3.HedgePolicy``."""
    initial = wrapped(policy, "initial_requests", 1)
    if initial < 1:
        raise ctx.error(f"{where}.initial_requests: must be at least 1")
    chance = 0
    if policy.HasField("additional_request_chance"):
        chance = per_million(
            ctx, policy.additional_request_chance, f"{where}.additional_request_chance"
        )
    return HedgePolicy(
        initial_requests=initial,
        additional_request_chance_per_million=chance,
        hedge_on_per_try_timeout=policy.hedge_on_per_try_timeout,
    )


def _previous_hosts(ctx: DecodeContext, predicates: Any, where: str) -> bool:
    found = False
    for i, predicate in enumerate(predicates):
        at = f"{where}.retry_host_predicate[{i}]"
        url = predicate.typed_config.type_url if predicate.HasField("typed_config") else ""
        if url == _PREVIOUS_HOSTS_URL or (not url and predicate.name == _PREVIOUS_HOSTS_NAME):
            found = True
            continue
        what = url or predicate.name or "(unnamed)"
        raise ctx.error(f"{at}: retry host predicate {what} is not supported (previous_hosts is)")
    return found


def _previous_priorities(ctx: DecodeContext, policy: Any, where: str) -> int | None:
    if not policy.HasField("retry_priority"):
        return None
    at = f"{where}.retry_priority"
    priority = policy.retry_priority
    config = unpack_any(ctx, priority.typed_config, pp_pb2.PreviousPrioritiesConfig, at)
    if config.update_frequency <= 0:
        raise ctx.error(f"{at}.update_frequency: must be greater than 0")
    return int(config.update_frequency)


def _back_off(ctx: DecodeContext, policy: Any, where: str) -> RetryBackOff:
    if not policy.HasField("retry_back_off"):
        return RetryBackOff()
    back_off = policy.retry_back_off
    base = positive_duration_s(ctx, back_off, "base_interval", where)
    if base is None:
        raise ctx.error(f"{where}.base_interval: required")
    maximum = positive_duration_s(ctx, back_off, "max_interval", where)
    if maximum is None:
        maximum = 10 * base
    if maximum < base:
        raise ctx.error(f"{where}.max_interval: must not be less than base_interval")
    return RetryBackOff(base_interval_s=base, max_interval_s=maximum)


def _rate_limited_back_off(
    ctx: DecodeContext, policy: Any, where: str
) -> RateLimitedRetryBackOff | None:
    if not policy.HasField("rate_limited_retry_back_off"):
        return None
    at = f"{where}.rate_limited_retry_back_off"
    back_off = policy.rate_limited_retry_back_off
    if not back_off.reset_headers:
        raise ctx.error(f"{at}.reset_headers: must not be empty")
    headers = []
    for i, header in enumerate(back_off.reset_headers):
        name = header_name(ctx, header.name, f"{at}.reset_headers[{i}].name")
        if not 0 <= header.format < len(_RESET_FORMATS):
            raise ctx.error(f"{at}.reset_headers[{i}].format: unknown value {header.format}")
        headers.append(ResetHeader(name=name, format=_RESET_FORMATS[header.format]))
    maximum = positive_duration_s(ctx, back_off, "max_interval", at)
    return RateLimitedRetryBackOff(
        reset_headers=tuple(headers),
        max_interval_s=_DEFAULT_RATE_LIMITED_MAX_S if maximum is None else maximum,
    )
