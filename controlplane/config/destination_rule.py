"""DestinationRule: what happens to traffic for a host after routing.

``host`` (a service name, as ServiceEntry hosts), ``trafficPolicy``, and
``subsets`` (a unique DNS-1123 name, labels, and their own trafficPolicy, port
level settings included, as Istio allows). ``meshlib.dev/`` annotations add the
retry budget and success-rate / failure-percentage ejection.
"""

from __future__ import annotations

from types import MappingProxyType

from controlplane.config import names
from controlplane.config.annotations import destination_rule_extensions
from controlplane.config.fields import Fields
from controlplane.config.resource import Header
from controlplane.config.traffic_policy import parse_traffic_policy
from controlplane.traffic_model import DestinationRule, Subset, TrafficPolicy

SPEC_FIELDS = ("host", "trafficPolicy", "subsets")
SPEC_NOT_YET = ("exportTo", "workloadSelector")
SUBSET_FIELDS = ("name", "labels", "trafficPolicy")


def parse_destination_rule(header: Header, spec: Fields) -> DestinationRule | None:
    """Validate a DestinationRule spec; None when any issue was reported."""
    ctx = spec.ctx
    before = ctx.count
    spec.reject_unknown(SPEC_FIELDS, SPEC_NOT_YET, "DestinationRule spec")
    host = spec.string("host", required=True, check=names.service_host)
    policy = _policy(spec)
    subsets = _subsets(spec)
    extensions = destination_rule_extensions(ctx, header.annotations)
    if ctx.count != before or host is None:
        return None
    return DestinationRule(
        name=header.name,
        namespace=header.namespace,
        host=host,
        traffic_policy=policy,
        subsets=subsets,
        extensions=extensions,
        source=header.source,
    )


def _policy(fields: Fields) -> TrafficPolicy | None:
    policy = fields.mapping("trafficPolicy")
    return parse_traffic_policy(policy) if policy is not None else None


def _subsets(spec: Fields) -> tuple[Subset, ...]:
    ctx = spec.ctx
    subsets: list[Subset] = []
    for path, value in spec.items("subsets") or ():
        fields = Fields.of(ctx, path, value)
        if fields is None:
            continue
        before = ctx.count
        fields.reject_unknown(SUBSET_FIELDS, what="a subset")
        name = fields.string("name", required=True, check=names.dns_label)
        if name is not None and any(subset.name == name for subset in subsets):
            ctx.error(fields.at("name"), f"duplicate subset {name!r}")
        labels = fields.string_map(
            "labels",
            key_check=names.label_key,
            value_check=names.label_value,
            allow_empty_values=True,
        )
        policy = _policy(fields)
        if ctx.count != before or name is None:
            continue
        subsets.append(
            Subset(
                name=name,
                labels=labels if labels is not None else MappingProxyType({}),
                traffic_policy=policy,
            )
        )
    return tuple(subsets)
