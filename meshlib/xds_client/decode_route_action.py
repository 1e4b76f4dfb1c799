"""RouteAction -> RouteAction model: clusters (single or weighted), mirrors,
rewrites, timeouts, hash policies, and the route's retry / hedge policies.

Validation follows gRPC (gRFC A28, A31, A42, A44) and Envoy: weights sum to
more than 0 and fit in 32 bits (and equal ``total_weight`` when it is set);
regexes compile under RE2; ``prefix_rewrite`` and ``regex_rewrite`` exclude
each other. Features that would change traffic and that meshlib does not
implement (metadata_match, rate_limits, host rewrites from headers...) are
refused rather than ignored.
"""

from __future__ import annotations

from typing import Any

from meshlib.observability.logging import get_logger
from meshlib.xds_client._decode_util import (
    DecodeContext,
    check_regex,
    duration_s,
    optional_duration_s,
    per_million,
    reject_if_set,
)
from meshlib.xds_client.decode_filters import filter_overrides
from meshlib.xds_client.decode_headers import header_mutations
from meshlib.xds_client.decode_retry import hedge_policy, retry_policy
from meshlib.xds_client.resources import (
    ClusterWeight,
    HashPolicy,
    HedgePolicy,
    MaxStreamDuration,
    RegexRewrite,
    RequestMirrorPolicy,
    RetryPolicy,
    RouteAction,
)

log = get_logger(__name__)

_MAX_TOTAL_WEIGHT = 2**32 - 1
_UNSUPPORTED_ACTION_FIELDS = (
    "metadata_match",
    "path_rewrite_policy",
    "host_rewrite_header",
    "host_rewrite_path_regex",
    "rate_limits",
    "retry_policy_typed_config",
)


class RouteDefaults:
    """What a route inherits from its virtual host / route config when it sets nothing."""

    def __init__(
        self,
        retry: RetryPolicy | None = None,
        hedge: HedgePolicy | None = None,
        mirrors: tuple[RequestMirrorPolicy, ...] = (),
    ) -> None:
        self.retry, self.hedge, self.mirrors = retry, hedge, mirrors


def route_action(
    ctx: DecodeContext, action: Any, where: str, defaults: RouteDefaults
) -> RouteAction | None:
    """Validate one ``envoy.config.route.v3.RouteAction``; None: skip the route (as gRPC)."""
    spec = action.WhichOneof("cluster_specifier")
    cluster: str | None = None
    weighted: tuple[ClusterWeight, ...] = ()
    total_weight: int | None = None
    if spec == "cluster":
        if not action.cluster:
            raise ctx.error(f"{where}.cluster: must not be empty")
        cluster = action.cluster
    elif spec == "weighted_clusters":
        weighted, total_weight = _weighted_clusters(
            ctx, action.weighted_clusters, f"{where}.weighted_clusters"
        )
    elif spec is None:
        raise ctx.error(f"{where}: cluster specifier required (cluster or weighted_clusters)")
    else:
        log.warning("xds_route_skipped", where=where, reason=f"cluster specifier {spec}")
        return None
    reject_if_set(ctx, action, _UNSUPPORTED_ACTION_FIELDS, where)
    if action.HasField("auto_host_rewrite") and action.auto_host_rewrite.value:
        raise ctx.error(f"{where}.auto_host_rewrite: not supported")
    regex_rewrite = None
    if action.HasField("regex_rewrite"):
        if action.prefix_rewrite:
            raise ctx.error(f"{where}: prefix_rewrite and regex_rewrite are both set")
        regex_rewrite = regex_rewrite_of(ctx, action.regex_rewrite, f"{where}.regex_rewrite")
    host_rewrite = None
    if action.WhichOneof("host_rewrite_specifier") == "host_rewrite_literal":
        host_rewrite = action.host_rewrite_literal or None
    mirrors = mirror_policies(
        ctx, action.request_mirror_policies, f"{where}.request_mirror_policies"
    )
    own_retry = (
        retry_policy(ctx, action.retry_policy, f"{where}.retry_policy")
        if action.HasField("retry_policy")
        else None
    )
    own_hedge = (
        hedge_policy(ctx, action.hedge_policy, f"{where}.hedge_policy")
        if action.HasField("hedge_policy")
        else None
    )
    request_timeout = optional_duration_s(ctx, action, "timeout", where)
    return RouteAction(
        cluster=cluster,
        weighted_clusters=weighted,
        timeout_s=_grpc_timeout_s(action),
        hash_policies=tuple(
            p
            for i, h in enumerate(action.hash_policy)
            if (p := _hash_policy(ctx, h, f"{where}.hash_policy[{i}]")) is not None
        ),
        prefix_rewrite=action.prefix_rewrite or None,
        host_rewrite=host_rewrite,
        total_weight=total_weight,
        request_mirror_policies=mirrors or defaults.mirrors,
        regex_rewrite=regex_rewrite,
        request_timeout_s=request_timeout,
        idle_timeout_s=optional_duration_s(ctx, action, "idle_timeout", where),
        max_stream_duration=_max_stream_duration(ctx, action, where),
        retry_policy=own_retry if own_retry is not None else defaults.retry,
        hedge_policy=own_hedge if own_hedge is not None else defaults.hedge,
    )


def regex_rewrite_of(ctx: DecodeContext, rewrite: Any, where: str) -> RegexRewrite:
    """An ``envoy.type.matcher.v3.RegexMatchAndSubstitute``."""
    if not rewrite.HasField("pattern"):
        raise ctx.error(f"{where}.pattern: required")
    pattern = check_regex(ctx, rewrite.pattern.regex, where)
    return RegexRewrite(pattern=pattern, substitution=rewrite.substitution)


def mirror_policies(
    ctx: DecodeContext, policies: Any, where: str
) -> tuple[RequestMirrorPolicy, ...]:
    """A repeated RequestMirrorPolicy field (route, virtual host or route config level)."""
    return tuple(_mirror_policy(ctx, m, f"{where}[{i}]") for i, m in enumerate(policies))


def _mirror_policy(ctx: DecodeContext, policy: Any, where: str) -> RequestMirrorPolicy:
    reject_if_set(
        ctx, policy, ("cluster_header", "request_headers_mutations", "host_rewrite_literal"), where
    )
    if not policy.cluster:
        raise ctx.error(f"{where}.cluster: required")
    fraction = 1_000_000
    if policy.HasField("runtime_fraction"):
        fraction = per_million(
            ctx, policy.runtime_fraction.default_value, f"{where}.runtime_fraction.default_value"
        )
    return RequestMirrorPolicy(
        cluster=policy.cluster,
        fraction_per_million=fraction,
        disable_shadow_host_suffix_append=policy.disable_shadow_host_suffix_append,
        trace_sampled=policy.trace_sampled.value if policy.HasField("trace_sampled") else None,
    )


def _weighted_clusters(
    ctx: DecodeContext, wc: Any, where: str
) -> tuple[tuple[ClusterWeight, ...], int | None]:
    reject_if_set(ctx, wc, ("header_name", "use_hash_policy"), where)
    out: list[ClusterWeight] = []
    total = 0
    for i, entry in enumerate(wc.clusters):
        at = f"{where}.clusters[{i}]"
        if not entry.name:
            raise ctx.error(f"{at}.name: required")
        reject_if_set(ctx, entry, ("cluster_header", "metadata_match"), at)
        weight = entry.weight.value
        total += weight
        if weight == 0:
            continue  # as gRPC: a zero-weight cluster is never picked
        out.append(
            ClusterWeight(
                name=entry.name,
                weight=weight,
                headers=header_mutations(ctx, entry, at),
                typed_per_filter_config=filter_overrides(
                    ctx, entry.typed_per_filter_config, f"{at}.typed_per_filter_config"
                ),
                host_rewrite=entry.host_rewrite_literal or None,
            )
        )
    if total == 0:
        raise ctx.error(f"{where}: cluster weights must sum to more than 0")
    if total > _MAX_TOTAL_WEIGHT:
        raise ctx.error(f"{where}: cluster weights sum to {total}, more than {_MAX_TOTAL_WEIGHT}")
    total_weight: int | None = None
    if wc.HasField("total_weight") and wc.total_weight.value > 0:
        total_weight = wc.total_weight.value
        if total_weight != total:
            raise ctx.error(
                f"{where}.total_weight: {total_weight} but the cluster weights sum to {total}"
            )
    return tuple(out), total_weight


def _grpc_timeout_s(action: Any) -> float | None:
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


def _max_stream_duration(ctx: DecodeContext, action: Any, where: str) -> MaxStreamDuration | None:
    if not action.HasField("max_stream_duration"):
        return None
    msd = action.max_stream_duration
    at = f"{where}.max_stream_duration"
    return MaxStreamDuration(
        max_stream_duration_s=optional_duration_s(ctx, msd, "max_stream_duration", at),
        grpc_timeout_header_max_s=optional_duration_s(ctx, msd, "grpc_timeout_header_max", at),
        grpc_timeout_header_offset_s=optional_duration_s(
            ctx, msd, "grpc_timeout_header_offset", at
        ),
    )


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
            rewrite = regex_rewrite_of(ctx, header.regex_rewrite, f"{where}.header.regex_rewrite")
            regex, substitution = rewrite.pattern, rewrite.substitution
        return HashPolicy(
            "header", header.header_name, terminal, regex=regex, substitution=substitution
        )
    if spec == "cookie":
        cookie = policy.cookie
        if not cookie.name:
            raise ctx.error(f"{where}.cookie.name: required")
        reject_if_set(ctx, cookie, ("attributes",), f"{where}.cookie")
        return HashPolicy(
            "cookie",
            cookie.name,
            terminal,
            cookie_ttl_s=optional_duration_s(ctx, cookie, "ttl", f"{where}.cookie"),
            cookie_path=cookie.path,
        )
    if spec == "connection_properties":
        if not policy.connection_properties.source_ip:
            return None
        return HashPolicy("source_ip", "", terminal)
    if spec == "query_parameter":
        if not policy.query_parameter.name:
            raise ctx.error(f"{where}.query_parameter.name: required")
        return HashPolicy("query_parameter", policy.query_parameter.name, terminal)
    if spec == "filter_state":
        if not policy.filter_state.key:
            raise ctx.error(f"{where}.filter_state.key: required")
        return HashPolicy("filter_state", policy.filter_state.key, terminal)
    log.info("xds_hash_policy_ignored", where=where, reason="no policy specifier")
    return None
