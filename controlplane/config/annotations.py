"""``meshlib.dev/*`` annotations: Envoy features Istio has no field for.

Each value is JSON (``meshlib.dev/degraded`` is the string "true" or "false"),
validated into the typed extension of the model; the path of an issue names the
annotation, e.g. ``metadata.annotations["meshlib.dev/retry-budget"].budgetPercent``.
Annotations with other prefixes are not config and are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TypeVar

from envoy.type.v3 import http_status_pb2

from controlplane.config.durations import as_duration
from controlplane.config.fields import DocContext, Fields, child
from controlplane.config.resource import MESHLIB_PREFIX
from controlplane.traffic_model import (
    FailurePercentageEjection,
    HedgePolicy,
    LocalRateLimit,
    RetryBudget,
    SuccessRateEjection,
    TrafficPolicyExtensions,
    VirtualServiceExtensions,
)

ANNOTATIONS_PATH = "metadata.annotations"
HEDGE = "meshlib.dev/hedge"
LOCAL_RATE_LIMIT = "meshlib.dev/local-rate-limit"
FAULT_HEADERS = "meshlib.dev/fault-headers"
RETRY_BUDGET = "meshlib.dev/retry-budget"
SUCCESS_RATE = "meshlib.dev/outlier-success-rate"
FAILURE_PERCENTAGE = "meshlib.dev/outlier-failure-percentage"
DEGRADED = "meshlib.dev/degraded"
MAX_UINT32 = 2**32 - 1
MIN_FILL_INTERVAL_MS = 50  # Envoy's token bucket refuses a shorter fill_interval
# The rate limit's status goes into Envoy's HttpStatus, an enum of named codes only.
_ENVOY_STATUS_CODES = frozenset(http_status_pb2.StatusCode.values())

T = TypeVar("T")


def meshlib_annotations(
    ctx: DocContext, annotations: Mapping[str, str], kind: str, allowed: tuple[str, ...]
) -> dict[str, tuple[str, str]]:
    """The ``meshlib.dev/`` annotations as name -> (path, value); unknown names reported."""
    found: dict[str, tuple[str, str]] = {}
    for name, value in annotations.items():
        if not name.startswith(MESHLIB_PREFIX):
            continue
        path = child(ANNOTATIONS_PATH, name)
        if name not in allowed:
            known = ", ".join(allowed) or "none"
            ctx.error(path, f"unknown annotation for {kind} (meshlib.dev annotations: {known})")
            continue
        found[name] = (path, value)
    return found


def _json_object(ctx: DocContext, path: str, value: str) -> Fields | None:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        ctx.error(path, f"must be a JSON object: {exc}")
        return None
    return Fields.of(ctx, path, parsed)


def _parsed(
    ctx: DocContext,
    found: dict[str, tuple[str, str]],
    name: str,
    parse: Callable[[Fields], T | None],
) -> T | None:
    if name not in found:
        return None
    fields = _json_object(ctx, *found[name])
    return None if fields is None else parse(fields)


def virtual_service_extensions(
    ctx: DocContext, annotations: Mapping[str, str]
) -> VirtualServiceExtensions:
    found = meshlib_annotations(
        ctx, annotations, "VirtualService", (HEDGE, LOCAL_RATE_LIMIT, FAULT_HEADERS)
    )
    fault_headers = _parsed(ctx, found, FAULT_HEADERS, _fault_headers)
    enabled, max_active = fault_headers if fault_headers is not None else (False, None)
    return VirtualServiceExtensions(
        hedge=_parsed(ctx, found, HEDGE, _hedge),
        local_rate_limit=_parsed(ctx, found, LOCAL_RATE_LIMIT, _local_rate_limit),
        fault_headers_enabled=enabled,
        max_active_faults=max_active,
    )


def destination_rule_extensions(
    ctx: DocContext, annotations: Mapping[str, str]
) -> TrafficPolicyExtensions:
    found = meshlib_annotations(
        ctx, annotations, "DestinationRule", (RETRY_BUDGET, SUCCESS_RATE, FAILURE_PERCENTAGE)
    )
    return TrafficPolicyExtensions(
        retry_budget=_parsed(ctx, found, RETRY_BUDGET, _retry_budget),
        success_rate_ejection=_parsed(ctx, found, SUCCESS_RATE, _success_rate),
        failure_percentage_ejection=_parsed(ctx, found, FAILURE_PERCENTAGE, _failure_percentage),
    )


def service_entry_degraded(ctx: DocContext, annotations: Mapping[str, str]) -> bool:
    found = meshlib_annotations(ctx, annotations, "ServiceEntry", (DEGRADED,))
    if DEGRADED not in found:
        return False
    path, value = found[DEGRADED]
    if value not in ("true", "false"):
        ctx.error(path, f'must be "true" or "false", got {value!r}')
    return value == "true"


_HEDGE_NOT_IMPLEMENTED = (
    "is not supported: no client in the mesh implements it (Envoy's HedgePolicy marks it "
    "not implemented); hedging happens on per-try timeout only"
)


def _hedge(fields: Fields) -> HedgePolicy | None:
    before = fields.ctx.count
    fields.reject_unknown(
        ("hedgeOnPerTryTimeout",),
        what="hedge",
        refused={
            "initialRequests": f"initialRequests {_HEDGE_NOT_IMPLEMENTED}",
            "additionalRequestChance": f"additionalRequestChance {_HEDGE_NOT_IMPLEMENTED}",
        },
    )
    on_timeout = fields.boolean("hedgeOnPerTryTimeout")
    if fields.ctx.count != before:
        return None
    return HedgePolicy(hedge_on_per_try_timeout=True if on_timeout is None else on_timeout)


def _local_rate_limit(fields: Fields) -> LocalRateLimit | None:
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(
        ("maxTokens", "tokensPerFill", "fillInterval", "status"), what="local-rate-limit"
    )
    max_tokens = fields.integer("maxTokens", minimum=1, maximum=MAX_UINT32, required=True)
    per_fill = fields.integer("tokensPerFill", minimum=1, maximum=MAX_UINT32)
    interval: float | None = None
    if fields.present("fillInterval"):
        interval = as_duration(
            ctx,
            fields.at("fillInterval"),
            fields.data["fillInterval"],
            minimum_ms=MIN_FILL_INTERVAL_MS,
        )
    else:
        ctx.error(fields.at("fillInterval"), "is required")
    status = fields.integer("status", minimum=400, maximum=599)
    if status is not None and status not in _ENVOY_STATUS_CODES:
        ctx.error(
            fields.at("status"),
            f"{status} is not a status code Envoy's HttpStatus knows (e.g. 429 or 503)",
        )
    if ctx.count != before or max_tokens is None or interval is None:
        return None
    return LocalRateLimit(
        max_tokens=max_tokens,
        tokens_per_fill=1 if per_fill is None else per_fill,
        fill_interval_s=interval,
        status=429 if status is None else status,
    )


def _fault_headers(fields: Fields) -> tuple[bool, int | None] | None:
    before = fields.ctx.count
    fields.reject_unknown(("enabled", "maxActiveFaults"), what="fault-headers")
    enabled = fields.boolean("enabled")
    max_active = fields.integer("maxActiveFaults", minimum=0, maximum=MAX_UINT32)
    if fields.ctx.count != before:
        return None
    return (True if enabled is None else enabled), max_active


def _retry_budget(fields: Fields) -> RetryBudget | None:
    before = fields.ctx.count
    fields.reject_unknown(("budgetPercent", "minRetryConcurrency"), what="retry-budget")
    percent = fields.number("budgetPercent", minimum=0.0, maximum=100.0)
    concurrency = fields.integer("minRetryConcurrency", minimum=0, maximum=MAX_UINT32)
    if fields.ctx.count != before:
        return None
    default = RetryBudget()
    return RetryBudget(
        budget_percent=default.budget_percent if percent is None else percent,
        min_retry_concurrency=default.min_retry_concurrency if concurrency is None else concurrency,
    )


def _success_rate(fields: Fields) -> SuccessRateEjection | None:
    before = fields.ctx.count
    fields.reject_unknown(
        ("minimumHosts", "requestVolume", "stdevFactor", "enforcing"), what="outlier-success-rate"
    )
    default = SuccessRateEjection()
    hosts = fields.integer("minimumHosts", minimum=0, maximum=MAX_UINT32)
    volume = fields.integer("requestVolume", minimum=0, maximum=MAX_UINT32)
    stdev = fields.integer("stdevFactor", minimum=1, maximum=MAX_UINT32)
    enforcing = fields.integer("enforcing", minimum=0, maximum=100)
    if fields.ctx.count != before:
        return None
    return SuccessRateEjection(
        minimum_hosts=default.minimum_hosts if hosts is None else hosts,
        request_volume=default.request_volume if volume is None else volume,
        stdev_factor=default.stdev_factor if stdev is None else stdev,
        enforcing=default.enforcing if enforcing is None else enforcing,
    )


def _failure_percentage(fields: Fields) -> FailurePercentageEjection | None:
    before = fields.ctx.count
    fields.reject_unknown(
        ("threshold", "minimumHosts", "requestVolume", "enforcing"),
        what="outlier-failure-percentage",
    )
    default = FailurePercentageEjection()
    threshold = fields.integer("threshold", minimum=0, maximum=100)
    hosts = fields.integer("minimumHosts", minimum=0, maximum=MAX_UINT32)
    volume = fields.integer("requestVolume", minimum=0, maximum=MAX_UINT32)
    enforcing = fields.integer("enforcing", minimum=0, maximum=100)
    if fields.ctx.count != before:
        return None
    return FailurePercentageEjection(
        threshold=default.threshold if threshold is None else threshold,
        minimum_hosts=default.minimum_hosts if hosts is None else hosts,
        request_volume=default.request_volume if volume is None else volume,
        enforcing=default.enforcing if enforcing is None else enforcing,
    )
