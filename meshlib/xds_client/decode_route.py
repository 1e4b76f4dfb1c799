"""RouteConfiguration (RDS, or inline in a Listener) -> RouteConfigResource.

Validation follows gRPC's xDS client (gRFC A28 and follow-ups):

- a route whose path specifier or cluster specifier gRPC does not know
  (``connect_matcher``, ``cluster_header``, cluster specifier plugins) is
  skipped, not fatal;
- a route whose action is not ``route``  (``redirect``, ``direct_response``,
  ``non_forwarding_action``) is kept with no action, so matching requests fail;
- bad regexes, unknown header matchers and weighted clusters whose weights sum
  to 0 reject the whole resource.
"""

from __future__ import annotations

from typing import Any

import structlog

from meshlib.xds_client._decode_util import DecodeContext, check_regex, duration_s
from meshlib.xds_client.resources import (
    ClusterWeight,
    HashPolicy,
    HeaderMatcher,
    HeaderMatchKind,
    PathMatchKind,
    QueryParameterMatcher,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)

log = structlog.get_logger(__name__)

_MAX_TOTAL_WEIGHT = 2**32 - 1
# FractionalPercent denominators -> multiplier to "per million".
_PER_MILLION = {0: 10_000, 1: 100, 2: 1}  # HUNDRED, TEN_THOUSAND, MILLION

_STRING_KINDS = {
    "exact": HeaderMatchKind.EXACT,
    "prefix": HeaderMatchKind.PREFIX,
    "suffix": HeaderMatchKind.SUFFIX,
    "contains": HeaderMatchKind.CONTAINS,
    "safe_regex": HeaderMatchKind.SAFE_REGEX,
}
_LEGACY_HEADER_KINDS = {
    "exact_match": HeaderMatchKind.EXACT,
    "prefix_match": HeaderMatchKind.PREFIX,
    "suffix_match": HeaderMatchKind.SUFFIX,
    "contains_match": HeaderMatchKind.CONTAINS,
}


def decode_route_configuration(msg: Any) -> RouteConfigResource:
    """Validate one ``envoy.config.route.v3.RouteConfiguration``."""
    ctx = DecodeContext("RouteConfiguration", msg.name)
    if not msg.name:
        raise ctx.error("name: required")
    if msg.HasField("vhds"):
        raise ctx.error("vhds: not supported")
    hosts = tuple(_virtual_host(ctx, vh, i) for i, vh in enumerate(msg.virtual_hosts))
    return RouteConfigResource(name=msg.name, virtual_hosts=hosts)


def _virtual_host(ctx: DecodeContext, vh: Any, index: int) -> VirtualHost:
    where = f"virtual_hosts[{index}]" + (f' "{vh.name}"' if vh.name else "")
    if not vh.domains:
        raise ctx.error(f"{where}.domains: must not be empty")
    routes: list[Route] = []
    for j, route in enumerate(vh.routes):
        decoded = _route(ctx, route, f"{where}.routes[{j}]")
        if decoded is not None:
            routes.append(decoded)
    return VirtualHost(name=vh.name, domains=tuple(vh.domains), routes=tuple(routes))


def _route(ctx: DecodeContext, route: Any, where: str) -> Route | None:
    if not route.HasField("match"):
        raise ctx.error(f"{where}.match: required")
    match = _route_match(ctx, route.match, f"{where}.match")
    if match is None:
        return None
    kind = route.WhichOneof("action")
    if kind != "route":
        # gRPC keeps the route: requests it matches fail (non-forwarding / unsupported).
        return Route(name=route.name, match=match, action=None)
    action = _route_action(ctx, route.route, f"{where}.route")
    if action is None:
        return None
    return Route(name=route.name, match=match, action=action)


def _route_match(ctx: DecodeContext, match: Any, where: str) -> RouteMatch | None:
    spec = match.WhichOneof("path_specifier")
    if spec == "prefix":
        kind, path = PathMatchKind.PREFIX, match.prefix
    elif spec == "path":
        kind, path = PathMatchKind.PATH, match.path
    elif spec == "safe_regex":
        kind = PathMatchKind.SAFE_REGEX
        path = check_regex(ctx, match.safe_regex.regex, f"{where}.safe_regex")
    elif spec == "path_separated_prefix":
        kind, path = PathMatchKind.PATH_SEPARATED_PREFIX, match.path_separated_prefix
    elif spec is None:
        raise ctx.error(f"{where}: path specifier required (prefix, path or safe_regex)")
    else:
        log.warning("xds_route_skipped", where=where, reason=f"path specifier {spec}")
        return None
    fraction: int | None = None
    if match.HasField("runtime_fraction"):
        value = match.runtime_fraction.default_value
        fraction = min(1_000_000, value.numerator * _PER_MILLION.get(value.denominator, 1))
    return RouteMatch(
        path_kind=kind,
        path=path,
        case_sensitive=match.case_sensitive.value if match.HasField("case_sensitive") else True,
        headers=tuple(
            _header_matcher(ctx, h, f"{where}.headers[{i}]") for i, h in enumerate(match.headers)
        ),
        query_parameters=tuple(
            _query_matcher(ctx, q, f"{where}.query_parameters[{i}]")
            for i, q in enumerate(match.query_parameters)
        ),
        fraction_per_million=fraction,
    )


def _header_matcher(ctx: DecodeContext, header: Any, where: str) -> HeaderMatcher:
    if not header.name:
        raise ctx.error(f"{where}.name: required")
    spec = header.WhichOneof("header_match_specifier")
    common: dict[str, Any] = {"name": header.name, "invert": header.invert_match}
    if spec in _LEGACY_HEADER_KINDS:
        return HeaderMatcher(kind=_LEGACY_HEADER_KINDS[spec], value=getattr(header, spec), **common)
    if spec == "safe_regex_match":
        pattern = check_regex(ctx, header.safe_regex_match.regex, f"{where}.safe_regex_match")
        return HeaderMatcher(kind=HeaderMatchKind.SAFE_REGEX, value=pattern, **common)
    if spec == "range_match":
        rng = header.range_match
        return HeaderMatcher(
            kind=HeaderMatchKind.RANGE, range_start=rng.start, range_end=rng.end, **common
        )
    if spec == "present_match":
        return HeaderMatcher(kind=HeaderMatchKind.PRESENT, present=header.present_match, **common)
    if spec == "string_match":
        kind, value = _string_matcher(ctx, header.string_match, f"{where}.string_match")
        return HeaderMatcher(
            kind=kind, value=value, ignore_case=header.string_match.ignore_case, **common
        )
    raise ctx.error(f"{where}: header match specifier required")


def _query_matcher(ctx: DecodeContext, query: Any, where: str) -> QueryParameterMatcher:
    if not query.name:
        raise ctx.error(f"{where}.name: required")
    spec = query.WhichOneof("query_parameter_match_specifier")
    if spec == "string_match":
        kind, value = _string_matcher(ctx, query.string_match, f"{where}.string_match")
        return QueryParameterMatcher(
            name=query.name, kind=kind, value=value, ignore_case=query.string_match.ignore_case
        )
    if spec == "present_match" and not query.present_match:
        raise ctx.error(f"{where}.present_match: false is not supported")
    return QueryParameterMatcher(name=query.name, kind=HeaderMatchKind.PRESENT)


def _string_matcher(ctx: DecodeContext, matcher: Any, where: str) -> tuple[HeaderMatchKind, str]:
    spec = matcher.WhichOneof("match_pattern")
    if spec == "safe_regex":
        return HeaderMatchKind.SAFE_REGEX, check_regex(
            ctx, matcher.safe_regex.regex, f"{where}.safe_regex"
        )
    if spec in _STRING_KINDS:
        return _STRING_KINDS[spec], getattr(matcher, spec)
    if spec is None:
        raise ctx.error(f"{where}: match pattern required")
    raise ctx.error(f"{where}.{spec}: not supported")


def _route_action(ctx: DecodeContext, action: Any, where: str) -> RouteAction | None:
    spec = action.WhichOneof("cluster_specifier")
    cluster: str | None = None
    weighted: tuple[ClusterWeight, ...] = ()
    if spec == "cluster":
        if not action.cluster:
            raise ctx.error(f"{where}.cluster: must not be empty")
        cluster = action.cluster
    elif spec == "weighted_clusters":
        weighted = _weighted_clusters(ctx, action.weighted_clusters, f"{where}.weighted_clusters")
    elif spec is None:
        raise ctx.error(f"{where}: cluster specifier required (cluster or weighted_clusters)")
    else:
        log.warning("xds_route_skipped", where=where, reason=f"cluster specifier {spec}")
        return None
    host_rewrite = None
    if action.WhichOneof("host_rewrite_specifier") == "host_rewrite_literal":
        host_rewrite = action.host_rewrite_literal
    return RouteAction(
        cluster=cluster,
        weighted_clusters=weighted,
        timeout_s=_timeout_s(action),
        hash_policies=tuple(
            p
            for i, h in enumerate(action.hash_policy)
            if (p := _hash_policy(ctx, h, f"{where}.hash_policy[{i}]")) is not None
        ),
        prefix_rewrite=action.prefix_rewrite or None,
        host_rewrite=host_rewrite,
    )


def _weighted_clusters(ctx: DecodeContext, wc: Any, where: str) -> tuple[ClusterWeight, ...]:
    out: list[ClusterWeight] = []
    total = 0
    for i, entry in enumerate(wc.clusters):
        if not entry.name:
            raise ctx.error(f"{where}.clusters[{i}].name: required")
        weight = entry.weight.value
        if weight == 0:
            continue  # as gRPC: a zero-weight cluster is never picked
        total += weight
        out.append(ClusterWeight(name=entry.name, weight=weight))
    if total == 0:
        raise ctx.error(f"{where}: cluster weights must sum to more than 0")
    if total > _MAX_TOTAL_WEIGHT:
        raise ctx.error(f"{where}: cluster weights sum to {total}, more than {_MAX_TOTAL_WEIGHT}")
    return tuple(out)


def _timeout_s(action: Any) -> float | None:
    """gRPC's order: max_stream_duration.grpc_timeout_header_max, then max_stream_duration;
    Envoy's ``timeout`` last. A zero duration disables the timeout."""
    candidates = []
    if action.HasField("max_stream_duration"):
        msd = action.max_stream_duration
        if msd.HasField("grpc_timeout_header_max"):
            candidates.append(msd.grpc_timeout_header_max)
        if msd.HasField("max_stream_duration"):
            candidates.append(msd.max_stream_duration)
    if action.HasField("timeout"):
        candidates.append(action.timeout)
    if not candidates:
        return None
    seconds = duration_s(candidates[0])
    return seconds if seconds > 0 else None


def _hash_policy(ctx: DecodeContext, policy: Any, where: str) -> HashPolicy | None:
    spec = policy.WhichOneof("policy_specifier")
    terminal = policy.terminal
    if spec == "header":
        header = policy.header
        if not header.header_name:
            raise ctx.error(f"{where}.header.header_name: required")
        regex: str | None = None
        substitution = ""
        if header.HasField("regex_rewrite"):
            regex = check_regex(
                ctx, header.regex_rewrite.pattern.regex, f"{where}.header.regex_rewrite"
            )
            substitution = header.regex_rewrite.substitution
        return HashPolicy(
            "header", header.header_name, terminal, regex=regex, substitution=substitution
        )
    if spec == "cookie":
        return HashPolicy("cookie", policy.cookie.name, terminal)
    if spec == "connection_properties":
        if not policy.connection_properties.source_ip:
            return None
        return HashPolicy("source_ip", "", terminal)
    if spec == "query_parameter":
        return HashPolicy("query_parameter", policy.query_parameter.name, terminal)
    if spec == "filter_state":
        return HashPolicy("filter_state", policy.filter_state.key, terminal)
    log.info("xds_hash_policy_ignored", where=where, reason="no policy specifier")
    return None
