"""DestinationRule ``consistentHash`` keys as route hash policies.

The hash key lives on the route in Envoy (``RouteAction.hash_policy``), the
ring hash / maglev settings on the cluster (:mod:`.lb_policy`). Istio's
mapping: httpHeaderName → header, httpCookie → cookie (name, path, ttl),
useSourceIp → connection_properties.source_ip, httpQueryParameterName →
query_parameter. The policy in force for a destination is the one of its
cluster (rule, port and subset levels, see :mod:`.policy`).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.route.v3 import route_components_pb2 as rc

from controlplane.destination_policy import destination_rule_for, effective_policy, rule_origin
from controlplane.traffic_model import ConsistentHash, DestinationRule
from controlplane.translate.common import duration
from controlplane.translate.errors import TranslationError

_Policy = rc.RouteAction.HashPolicy


def hash_policy_for(
    rules: Sequence[DestinationRule], host: str, port: int, subset: str
) -> rc.RouteAction.HashPolicy | None:
    """The hash policy of cluster ``outbound|port|subset|host``, if it hashes.

    A subset the rule does not define has no policy here (its cluster does not
    exist; the cluster side reports that).
    """
    rule = destination_rule_for(rules, host)
    if rule is None or (subset and all(s.name != subset for s in rule.subsets)):
        return None
    settings = effective_policy(rule, port, subset).load_balancer
    if settings is None or settings.consistent_hash is None:
        return None
    return _hash_policy(settings.consistent_hash, rule_origin(rule))


def single_policy(
    policies: Sequence[rc.RouteAction.HashPolicy | None], where: str
) -> rc.RouteAction.HashPolicy | None:
    """The one hash policy a route's destinations share (Envoy hashes per route)."""
    distinct = {p.SerializeToString(deterministic=True): p for p in policies if p is not None}
    if len(distinct) > 1:
        raise TranslationError(
            f"{where}: the destinations use different consistentHash keys; "
            "one route hashes one way (use the same key in their DestinationRules)"
        )
    return next(iter(distinct.values()), None)


def _hash_policy(hashing: ConsistentHash, where: str) -> rc.RouteAction.HashPolicy:
    if hashing.http_header_name:
        return _Policy(header=_Policy.Header(header_name=hashing.http_header_name))
    if hashing.http_cookie is not None:
        cookie = _Policy.Cookie(name=hashing.http_cookie.name, path=hashing.http_cookie.path)
        if hashing.http_cookie.ttl_s is not None:
            cookie.ttl.CopyFrom(duration(hashing.http_cookie.ttl_s))
        return _Policy(cookie=cookie)
    if hashing.use_source_ip:
        return _Policy(connection_properties=_Policy.ConnectionProperties(source_ip=True))
    if hashing.http_query_parameter_name:
        name = hashing.http_query_parameter_name
        return _Policy(query_parameter=_Policy.QueryParameter(name=name))
    raise TranslationError(f"{where}: consistentHash needs a hash key")
