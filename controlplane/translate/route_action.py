"""The forwarding part of a route: clusters, rewrites, timeout, retries, mirrors.

Timeout: Istio's default is none (Envoy's ``timeout: 0s``), and the same value
caps gRPC deadlines (0: the caller's deadline is used as is). Two forms, as Istio
writes them: a proxyless client gets ``timeout`` plus
``max_stream_duration.grpc_timeout_header_max``, the field gRPC clients read
(gRFC A31); an Envoy proxy gets ``timeout`` plus ``max_grpc_timeout``
(:func:`proxy_timeout_form`), because Envoy's router ignores ``timeout`` and
``x-envoy-upstream-rq-timeout-ms`` on any route that has ``max_stream_duration``.
Weighted destinations keep the weights as written; a zero weight next to
others is dropped (as Istio does), and one destination left is a plain cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import wrappers_pb2

from controlplane.traffic_model import (
    Destination,
    DestinationRule,
    HedgePolicy,
    HTTPMatchRequest,
    HTTPMirror,
    HTTPRoute,
    HTTPRouteDestination,
    MatchKind,
)
from controlplane.translate.common import duration, per_million
from controlplane.translate.destinations import PortDirectory
from controlplane.translate.errors import TranslationError
from controlplane.translate.hash_policy import hash_policy_for, single_policy
from controlplane.translate.header_ops import HeaderEdits, header_edits, merge
from controlplane.translate.retry_policy import retry_policy

WHOLE_PATH = "^.*$"


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What a rule needs besides itself: the service routed and the mesh's ports."""

    host: str
    port: int
    ports: PortDirectory
    hedge: HedgePolicy | None = None
    destination_rules: tuple[DestinationRule, ...] = ()

    def hash_for(self, destination: Destination) -> rc.RouteAction.HashPolicy | None:
        """The consistent-hash key of the destination's cluster, if it hashes."""
        port = self.ports.port_for(destination, self.port)
        return hash_policy_for(self.destination_rules, destination.host, port, destination.subset)


@dataclass(frozen=True, slots=True)
class Forwarding:
    action: rc.RouteAction
    edits: HeaderEdits  # the header edits that go on the route itself


def forwarding(
    rule: HTTPRoute,
    block: HTTPMatchRequest | None,
    ctx: RouteContext,
    where: str,
    rule_edits: HeaderEdits,
) -> Forwarding:
    """The RouteAction of a rule with ``route`` destinations, for one match block.

    A destination's header edits win over the rule's (:func:`.header_ops.merge`),
    whether it is the only destination or one of several: Envoy applies a weighted
    cluster's edits *before* the route's, so when some destination of a split has
    edits, the rule's edits move into every weighted cluster, ahead of its own.
    """
    action = rc.RouteAction()
    chosen = _chosen_destinations(rule.route, where)
    edits = rule_edits
    if len(chosen) == 1:
        index, only = chosen[0]
        action.cluster = ctx.ports.cluster_for(only.destination, ctx.port)
        edits = merge(rule_edits, header_edits(only.headers, f"{where}.route[{index}].headers"))
    else:
        per_cluster = any(d.headers is not None for _, d in chosen)
        inner = rule_edits if per_cluster else HeaderEdits()
        action.weighted_clusters.CopyFrom(_weighted(chosen, ctx, where, inner))
        edits = HeaderEdits() if per_cluster else rule_edits
    hashing = single_policy([ctx.hash_for(d.destination) for _, d in chosen], where)
    if hashing is not None:
        action.hash_policy.append(hashing)
    _apply_rewrite(action, rule, block, where)
    timeout = duration(_timeout_s(rule, where))
    action.timeout.CopyFrom(timeout)
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(timeout)
    policy = retry_policy(rule.retries, f"{where}.retries")
    if policy is not None:
        action.retry_policy.CopyFrom(policy)
    if ctx.hedge is not None:
        action.hedge_policy.CopyFrom(hedge_policy(ctx.hedge, where))
    action.request_mirror_policies.extend(
        _mirror(m, ctx, f"{where}.mirrors[{i}]") for i, m in enumerate(rule.mirrors)
    )
    return Forwarding(action, edits)


def default_action(
    cluster: str, hashing: rc.RouteAction.HashPolicy | None = None
) -> rc.RouteAction:
    """A route without a VirtualService: Istio's defaults (no timeout, default retries)."""
    action = rc.RouteAction(cluster=cluster, hash_policy=[hashing] if hashing else [])
    action.timeout.CopyFrom(duration(0))
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(duration(0))
    policy = retry_policy(None, "default route")
    assert policy is not None
    action.retry_policy.CopyFrom(policy)
    return action


def proxy_timeout_form(route: rc.Route) -> rc.Route:
    """``route`` with its timeout in the form an Envoy proxy honours.

    A route with ``max_stream_duration`` puts Envoy in its "new timeouts" mode: the
    router then ignores ``timeout`` and ``x-envoy-upstream-rq-timeout-ms``, so an HTTP
    request would run unbounded. Istio's sidecar form keeps the router's timeout and
    caps gRPC deadlines with ``max_grpc_timeout`` (Envoy rewrites ``grpc-timeout`` to
    the cap) instead. Routes that do not forward are returned as they are.
    """
    if not route.HasField("route") or not route.route.HasField("max_stream_duration"):
        return route
    proxied = rc.Route()
    proxied.CopyFrom(route)
    proxied.route.ClearField("max_stream_duration")
    proxied.route.max_grpc_timeout.CopyFrom(proxied.route.timeout)
    return proxied


def hedge_policy(hedge: HedgePolicy, where: str) -> rc.HedgePolicy:
    policy = rc.HedgePolicy(hedge_on_per_try_timeout=hedge.hedge_on_per_try_timeout)
    if hedge.initial_requests < 1:
        raise TranslationError(f"{where}: hedge initial_requests must be >= 1")
    if hedge.initial_requests != 1:
        policy.initial_requests.CopyFrom(wrappers_pb2.UInt32Value(value=hedge.initial_requests))
    if hedge.additional_request_chance:
        policy.additional_request_chance.CopyFrom(
            per_million(hedge.additional_request_chance, f"{where}: hedge chance")
        )
    return policy


def _chosen_destinations(
    destinations: tuple[HTTPRouteDestination, ...], where: str
) -> list[tuple[int, HTTPRouteDestination]]:
    if not destinations:
        raise TranslationError(f"{where}.route: at least one destination is required")
    indexed = list(enumerate(destinations))
    if len(indexed) == 1:
        return indexed
    for index, dest in indexed:
        if dest.weight < 0:
            raise TranslationError(f"{where}.route[{index}].weight: must be >= 0")
    chosen = [(i, d) for i, d in indexed if d.weight > 0]
    if not chosen:
        raise TranslationError(f"{where}.route: the weights sum to 0")
    return chosen


def _weighted(
    chosen: list[tuple[int, HTTPRouteDestination]],
    ctx: RouteContext,
    where: str,
    rule_edits: HeaderEdits,
) -> rc.WeightedCluster:
    clusters = []
    for index, dest in chosen:
        own = header_edits(dest.headers, f"{where}.route[{index}].headers")
        edits = merge(rule_edits, own)
        clusters.append(
            rc.WeightedCluster.ClusterWeight(
                name=ctx.ports.cluster_for(dest.destination, ctx.port),
                weight=wrappers_pb2.UInt32Value(value=dest.weight),
                request_headers_to_add=list(edits.request_add),
                request_headers_to_remove=list(edits.request_remove),
                response_headers_to_add=list(edits.response_add),
                response_headers_to_remove=list(edits.response_remove),
            )
        )
    return rc.WeightedCluster(clusters=clusters)


def _apply_rewrite(
    action: rc.RouteAction, rule: HTTPRoute, block: HTTPMatchRequest | None, where: str
) -> None:
    rewrite = rule.rewrite
    if rewrite is None:
        return
    if rewrite.uri and rewrite.uri_regex_rewrite is not None:
        raise TranslationError(f"{where}.rewrite: uri and uriRegexRewrite exclude each other")
    if rewrite.uri:
        uri = block.uri if block is not None else None
        if uri is not None and uri.kind is MatchKind.PREFIX:
            action.prefix_rewrite = rewrite.uri
        else:
            action.regex_rewrite.CopyFrom(_regex_rewrite(WHOLE_PATH, rewrite.uri))
    elif rewrite.uri_regex_rewrite is not None:
        regex = rewrite.uri_regex_rewrite
        action.regex_rewrite.CopyFrom(_regex_rewrite(regex.match, regex.rewrite))
    if rewrite.authority:
        action.host_rewrite_literal = rewrite.authority


def _regex_rewrite(pattern: str, substitution: str) -> regex_pb2.RegexMatchAndSubstitute:
    return regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_pb2.RegexMatcher(regex=pattern), substitution=substitution
    )


def _timeout_s(rule: HTTPRoute, where: str) -> float:
    if rule.timeout_s is None:
        return 0.0
    if rule.timeout_s < 0:
        raise TranslationError(f"{where}.timeout: must be >= 0, got {rule.timeout_s}s")
    return rule.timeout_s


def _mirror(
    mirror: HTTPMirror, ctx: RouteContext, where: str
) -> rc.RouteAction.RequestMirrorPolicy:
    fraction = per_million(mirror.percentage, f"{where}.percentage")
    return rc.RouteAction.RequestMirrorPolicy(
        cluster=ctx.ports.cluster_for(mirror.destination, ctx.port),
        runtime_fraction=base_pb2.RuntimeFractionalPercent(default_value=fraction),
    )
