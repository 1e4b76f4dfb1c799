"""``meshlib.dev/*`` annotations: JSON values validated into the typed extensions;
errors name the annotation; annotations with other prefixes are ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.traffic_model import (
    FailurePercentageEjection,
    HedgePolicy,
    LocalRateLimit,
    RetryBudget,
    SuccessRateEjection,
    TrafficPolicyExtensions,
    VirtualServiceExtensions,
)
from tests.controlplane.config_cases import (
    STATIC_SPEC,
    assert_refused,
    destination_rule,
    load_text,
    service_entry,
    virtual_service,
    workload_entry,
)

VS_SPEC = "hosts: [svc]\nhttp: [{route: [{destination: {host: svc}}]}]"


def vs(name: str, value: str) -> str:
    return virtual_service(VS_SPEC, annotations={name: value})


def rule(name: str, value: str) -> str:
    return destination_rule("host: svc", annotations={name: value})


def at(name: str, field: str = "") -> str:
    path = f'metadata.annotations["{name}"]'
    return f"{path}.{field}" if field else path


HEDGE = "meshlib.dev/hedge"
RATE = "meshlib.dev/local-rate-limit"
FAULTS = "meshlib.dev/fault-headers"
BUDGET = "meshlib.dev/retry-budget"
SUCCESS = "meshlib.dev/outlier-success-rate"
FAILURE = "meshlib.dev/outlier-failure-percentage"
DEGRADED = "meshlib.dev/degraded"

# (id, YAML, document, field path, message fragment)
# fmt: off
BAD_ANNOTATIONS: list[tuple[str, str, int, str, str]] = [
    ("not-json", vs(HEDGE, "{initialRequests: 2}"), 1, at(HEDGE), "must be a JSON object"),
    ("json-list", vs(HEDGE, "[1]"), 1, at(HEDGE), "must be a mapping, got a list"),
    ("unknown-vs-annotation", vs("meshlib.dev/retry-budget", "{}"), 1,
     at(BUDGET), "unknown annotation for VirtualService (meshlib.dev annotations: "
     "meshlib.dev/hedge, meshlib.dev/local-rate-limit, meshlib.dev/fault-headers)"),
    ("unknown-dr-annotation", rule("meshlib.dev/hedging", "{}"), 1,
     at("meshlib.dev/hedging"), "unknown annotation for DestinationRule"),
    ("we-annotation", workload_entry("address: 10.0.0.1").replace(
        "metadata: {name: wl, namespace: conference}",
        "metadata: {name: wl, annotations: {meshlib.dev/degraded: 'true'}}"), 1,
     at(DEGRADED), "unknown annotation for WorkloadEntry (meshlib.dev annotations: none)"),
    ("value-not-string", virtual_service(VS_SPEC).replace(
        "  namespace: conference\n",
        "  namespace: conference\n  annotations: {meshlib.dev/hedge: 1}\n"), 1,
     at(HEDGE), "must be a string, got integer 1 (quote it)"),
    ("hedge-initial-requests", vs(HEDGE, '{"initialRequests": 2}'), 1,
     at(HEDGE, "initialRequests"), "initialRequests is not supported: no client in the mesh"),
    ("hedge-chance", vs(HEDGE, '{"additionalRequestChance": 12.5}'), 1,
     at(HEDGE, "additionalRequestChance"), "additionalRequestChance is not supported"),
    ("hedge-flag-string", vs(HEDGE, '{"hedgeOnPerTryTimeout": "yes"}'), 1,
     at(HEDGE, "hedgeOnPerTryTimeout"), 'must be true or false, got string "yes"'),
    ("hedge-unknown", vs(HEDGE, '{"hedgeOnPerTryTimout": true}'), 1,
     at(HEDGE, "hedgeOnPerTryTimout"), "unknown field; did you mean 'hedgeOnPerTryTimeout'?"),
    ("rate-max-tokens-zero", vs(RATE, '{"maxTokens": 0, "fillInterval": "1s"}'), 1,
     at(RATE, "maxTokens"), "must be between 1 and 4294967295, got 0"),
    ("rate-max-tokens-missing", vs(RATE, '{"fillInterval": "1s"}'), 1,
     at(RATE, "maxTokens"), "is required"),
    ("rate-fill-missing", vs(RATE, '{"maxTokens": 10}'), 1,
     at(RATE, "fillInterval"), "is required"),
    ("rate-fill-short", vs(RATE, '{"maxTokens": 10, "fillInterval": "10ms"}'), 1,
     at(RATE, "fillInterval"), "must be at least 50ms, got '10ms'"),
    ("rate-tokens-per-fill",
     vs(RATE, '{"maxTokens": 10, "fillInterval": "1s", "tokensPerFill": 0}'), 1,
     at(RATE, "tokensPerFill"), "must be between 1 and 4294967295, got 0"),
    ("rate-status", vs(RATE, '{"maxTokens": 10, "fillInterval": "1s", "status": 200}'), 1,
     at(RATE, "status"), "must be between 400 and 599, got 200"),
    ("rate-status-unnamed", vs(RATE, '{"maxTokens": 10, "fillInterval": "1s", "status": 418}'),
     1, at(RATE, "status"),
     "418 is not a status code Envoy's HttpStatus knows (e.g. 429 or 503)"),
    ("faults-max-negative", vs(FAULTS, '{"maxActiveFaults": -1}'), 1,
     at(FAULTS, "maxActiveFaults"), "must be between 0 and 4294967295, got -1"),
    ("faults-enabled-number", vs(FAULTS, '{"enabled": 1}'), 1,
     at(FAULTS, "enabled"), "must be true or false, got integer 1"),
    ("budget-percent-over", rule(BUDGET, '{"budgetPercent": 100.5}'), 1,
     at(BUDGET, "budgetPercent"), "must be between 0 and 100, got 100.5"),
    ("budget-percent-string", rule(BUDGET, '{"budgetPercent": "20%"}'), 1,
     at(BUDGET, "budgetPercent"), 'must be a number, got string "20%"'),
    ("budget-concurrency-negative", rule(BUDGET, '{"minRetryConcurrency": -1}'), 1,
     at(BUDGET, "minRetryConcurrency"), "must be between 0 and 4294967295, got -1"),
    ("success-enforcing", rule(SUCCESS, '{"enforcing": 101}'), 1,
     at(SUCCESS, "enforcing"), "must be between 0 and 100, got 101"),
    ("success-stdev-zero", rule(SUCCESS, '{"stdevFactor": 0}'), 1,
     at(SUCCESS, "stdevFactor"), "must be between 1 and 4294967295, got 0"),
    ("success-unknown", rule(SUCCESS, '{"minHosts": 3}'), 1,
     at(SUCCESS, "minHosts"), "unknown field; did you mean 'minimumHosts'?"),
    ("failure-threshold", rule(FAILURE, '{"threshold": 120}'), 1,
     at(FAILURE, "threshold"), "must be between 0 and 100, got 120"),
    ("failure-volume-float", rule(FAILURE, '{"requestVolume": 1.5}'), 1,
     at(FAILURE, "requestVolume"), "must be an integer, got number 1.5"),
    ("degraded-yes", service_entry(STATIC_SPEC).replace(
        "metadata: {name: svc, namespace: conference}",
        "metadata: {name: svc, annotations: {meshlib.dev/degraded: 'yes'}}"), 1,
     at(DEGRADED), "must be \"true\" or \"false\", got 'yes'"),
    ("degraded-on-vs", vs(DEGRADED, "true"), 1,
     at(DEGRADED), "unknown annotation for VirtualService"),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "document", "path", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_ANNOTATIONS],
)
def test_bad_annotation_is_refused_naming_it(
    tmp_path: Path, text: str, document: int, path: str, message: str
) -> None:
    assert_refused(tmp_path / "mesh.yaml", text, document, path, message)


def test_table_is_big_enough() -> None:
    assert len(BAD_ANNOTATIONS) >= 25
    assert len({case[0] for case in BAD_ANNOTATIONS}) == len(BAD_ANNOTATIONS)


def test_virtual_service_annotations(tmp_path: Path) -> None:
    text = virtual_service(
        VS_SPEC,
        annotations={
            HEDGE: '{"hedgeOnPerTryTimeout": true}',
            RATE: '{"maxTokens": 100, "tokensPerFill": 10, "fillInterval": "500ms", "status": 503}',
            FAULTS: '{"enabled": true, "maxActiveFaults": 5}',
            "kubectl.kubernetes.io/last-applied-configuration": "{not json, ignored}",
        },
    )
    [service] = load_text(tmp_path / "mesh.yaml", text).virtual_services
    assert service.extensions == VirtualServiceExtensions(
        hedge=HedgePolicy(hedge_on_per_try_timeout=True),
        local_rate_limit=LocalRateLimit(
            max_tokens=100, tokens_per_fill=10, fill_interval_s=0.5, status=503
        ),
        fault_headers_enabled=True,
        max_active_faults=5,
    )


def test_virtual_service_annotation_defaults(tmp_path: Path) -> None:
    text = virtual_service(
        VS_SPEC,
        annotations={HEDGE: "{}", RATE: '{"maxTokens": 5, "fillInterval": "1s"}', FAULTS: "{}"},
    )
    [service] = load_text(tmp_path / "mesh.yaml", text).virtual_services
    assert service.extensions == VirtualServiceExtensions(
        hedge=HedgePolicy(),
        local_rate_limit=LocalRateLimit(max_tokens=5, tokens_per_fill=1, fill_interval_s=1.0),
        fault_headers_enabled=True,
        max_active_faults=None,
    )
    plain = load_text(tmp_path / "mesh.yaml", virtual_service(VS_SPEC)).virtual_services[0]
    assert plain.extensions == VirtualServiceExtensions()


def test_destination_rule_annotations(tmp_path: Path) -> None:
    text = destination_rule(
        "host: svc",
        annotations={
            BUDGET: '{"budgetPercent": 25.5, "minRetryConcurrency": 2}',
            SUCCESS: '{"minimumHosts": 3, "requestVolume": 20, "stdevFactor": 1500,'
            ' "enforcing": 50}',
            FAILURE: '{"threshold": 50, "minimumHosts": 2, "requestVolume": 10, "enforcing": 90}',
        },
    )
    [rule_] = load_text(tmp_path / "mesh.yaml", text).destination_rules
    assert rule_.extensions == TrafficPolicyExtensions(
        retry_budget=RetryBudget(budget_percent=25.5, min_retry_concurrency=2),
        success_rate_ejection=SuccessRateEjection(
            minimum_hosts=3, request_volume=20, stdev_factor=1500, enforcing=50
        ),
        failure_percentage_ejection=FailurePercentageEjection(
            threshold=50, minimum_hosts=2, request_volume=10, enforcing=90
        ),
    )
    defaults = destination_rule(
        "host: svc", annotations={BUDGET: "{}", SUCCESS: "{}", FAILURE: "{}"}
    )
    [rule_] = load_text(tmp_path / "mesh.yaml", defaults).destination_rules
    assert rule_.extensions == TrafficPolicyExtensions(
        RetryBudget(), SuccessRateEjection(), FailurePercentageEjection()
    )


@pytest.mark.parametrize(
    ("value", "degraded"), [("'true'", True), ("'false'", False), (None, False)]
)
def test_service_entry_degraded(tmp_path: Path, value: str | None, degraded: bool) -> None:
    text = service_entry(STATIC_SPEC)
    if value is not None:
        text = text.replace(
            "metadata: {name: svc, namespace: conference}",
            f"metadata: {{name: svc, namespace: conference, annotations: {{{DEGRADED}: {value},"
            " other.io/x: '1'}}",
        )
    [entry] = load_text(tmp_path / "mesh.yaml", text).service_entries
    assert entry.degraded is degraded
