"""RouteConfiguration (RDS, or inline in a Listener) -> RouteConfigResource.

Validation follows gRPC's xDS client (gRFC A28 and follow-ups) and Envoy:

- a route whose path specifier or cluster specifier gRPC does not know
  (``connect_matcher``, ``cluster_header``, cluster specifier plugins) is
  skipped, not fatal;
- ``redirect`` and ``direct_response`` routes are decoded; other non-forwarding
  actions (``non_forwarding_action``, ``filter_action``) keep the route with no
  action, so matching requests fail;
- bad regexes, unknown header matchers, bad header mutations, unknown required
  per-filter configs and weighted clusters whose weights sum to 0 reject the
  whole resource.

Retry, hedge and mirror policies of a virtual host (mirrors also of the route
configuration) are resolved into each RouteAction that sets none of its own.
"""

from __future__ import annotations

from typing import Any

from meshlib.observability.logging import get_logger
from meshlib.xds_client._decode_util import (
    DecodeContext,
    check_regex,
    per_million,
    reject_if_set,
    wrapped,
)
from meshlib.xds_client.decode_filters import filter_overrides
from meshlib.xds_client.decode_headers import header_mutations
from meshlib.xds_client.decode_matchers import header_matchers, query_matcher
from meshlib.xds_client.decode_retry import hedge_policy, retry_policy
from meshlib.xds_client.decode_route_action import (
    RouteDefaults,
    mirror_policies,
    regex_rewrite_of,
    route_action,
)
from meshlib.xds_client.resources import (
    DirectResponseAction,
    PathMatchKind,
    RedirectAction,
    Route,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)

log = get_logger(__name__)

_DEFAULT_MAX_BODY_BYTES = 4096  # RouteConfiguration.max_direct_response_body_size_bytes
_REDIRECT_CODES = (301, 302, 303, 307, 308)  # RedirectResponseCode enum order


def decode_route_configuration(msg: Any) -> RouteConfigResource:
    """Validate one ``envoy.config.route.v3.RouteConfiguration``."""
    ctx = DecodeContext("RouteConfiguration", msg.name)
    if not msg.name:
        raise ctx.error("name: required")
    if msg.HasField("vhds"):
        raise ctx.error("vhds: not supported")
    max_body = wrapped(msg, "max_direct_response_body_size_bytes", _DEFAULT_MAX_BODY_BYTES)
    mirrors = mirror_policies(ctx, msg.request_mirror_policies, "request_mirror_policies")
    hosts = tuple(
        _virtual_host(ctx, vh, i, max_body, mirrors) for i, vh in enumerate(msg.virtual_hosts)
    )
    return RouteConfigResource(
        name=msg.name,
        virtual_hosts=hosts,
        headers=header_mutations(ctx, msg, ""),
        typed_per_filter_config=filter_overrides(
            ctx, msg.typed_per_filter_config, "typed_per_filter_config"
        ),
        most_specific_header_mutations_wins=msg.most_specific_header_mutations_wins,
    )


def _virtual_host(
    ctx: DecodeContext, vh: Any, index: int, max_body: int, mirrors: Any
) -> VirtualHost:
    where = f"virtual_hosts[{index}]" + (f' "{vh.name}"' if vh.name else "")
    if not vh.domains:
        raise ctx.error(f"{where}.domains: must not be empty")
    reject_if_set(ctx, vh, ("rate_limits", "retry_policy_typed_config"), where)
    retry = (
        retry_policy(ctx, vh.retry_policy, f"{where}.retry_policy")
        if vh.HasField("retry_policy")
        else None
    )
    hedge = (
        hedge_policy(ctx, vh.hedge_policy, f"{where}.hedge_policy")
        if vh.HasField("hedge_policy")
        else None
    )
    own_mirrors = mirror_policies(
        ctx, vh.request_mirror_policies, f"{where}.request_mirror_policies"
    )
    defaults = RouteDefaults(retry=retry, hedge=hedge, mirrors=own_mirrors or mirrors)
    routes: list[Route] = []
    for j, route in enumerate(vh.routes):
        decoded = _route(ctx, route, f"{where}.routes[{j}]", defaults, max_body)
        if decoded is not None:
            routes.append(decoded)
    return VirtualHost(
        name=vh.name,
        domains=tuple(vh.domains),
        routes=tuple(routes),
        headers=header_mutations(ctx, vh, where),
        typed_per_filter_config=filter_overrides(
            ctx, vh.typed_per_filter_config, f"{where}.typed_per_filter_config"
        ),
        retry_policy=retry,
        hedge_policy=hedge,
    )


def _route(
    ctx: DecodeContext, route: Any, where: str, defaults: RouteDefaults, max_body: int
) -> Route | None:
    if not route.HasField("match"):
        raise ctx.error(f"{where}.match: required")
    match = _route_match(ctx, route.match, f"{where}.match")
    if match is None:
        return None
    common: dict[str, Any] = {
        "name": route.name,
        "match": match,
        "headers": header_mutations(ctx, route, where),
        "typed_per_filter_config": filter_overrides(
            ctx, route.typed_per_filter_config, f"{where}.typed_per_filter_config"
        ),
    }
    kind = route.WhichOneof("action")
    if kind == "route":
        action = route_action(ctx, route.route, f"{where}.route", defaults)
        if action is None:
            return None
        return Route(action=action, **common)
    if kind == "redirect":
        redirect = _redirect(ctx, route.redirect, f"{where}.redirect")
        return Route(action=None, redirect=redirect, **common)
    if kind == "direct_response":
        response = _direct_response(
            ctx, route.direct_response, f"{where}.direct_response", max_body
        )
        return Route(action=None, direct_response=response, **common)
    # gRPC keeps the route: requests it matches fail (non-forwarding / unsupported).
    return Route(action=None, **common)


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
        fraction = per_million(
            ctx, match.runtime_fraction.default_value, f"{where}.runtime_fraction.default_value"
        )
    return RouteMatch(
        path_kind=kind,
        path=path,
        case_sensitive=match.case_sensitive.value if match.HasField("case_sensitive") else True,
        headers=header_matchers(ctx, match.headers, f"{where}.headers"),
        query_parameters=tuple(
            query_matcher(ctx, q, f"{where}.query_parameters[{i}]")
            for i, q in enumerate(match.query_parameters)
        ),
        fraction_per_million=fraction,
    )


def _redirect(ctx: DecodeContext, redirect: Any, where: str) -> RedirectAction:
    scheme_spec = redirect.WhichOneof("scheme_rewrite_specifier")
    scheme: str | None = None
    if scheme_spec == "https_redirect" and redirect.https_redirect:
        scheme = "https"
    elif scheme_spec == "scheme_redirect" and redirect.scheme_redirect:
        scheme = redirect.scheme_redirect.lower()
    if redirect.port_redirect > 65535:
        raise ctx.error(f"{where}.port_redirect: {redirect.port_redirect} is out of range")
    path_spec = redirect.WhichOneof("path_rewrite_specifier")
    path_redirect = prefix_rewrite = None
    regex_rewrite = None
    if path_spec == "path_redirect":
        path_redirect = redirect.path_redirect
        if path_redirect and not path_redirect.startswith("/"):
            raise ctx.error(f"{where}.path_redirect: must start with /")
    elif path_spec == "prefix_rewrite":
        prefix_rewrite = redirect.prefix_rewrite
    elif path_spec == "regex_rewrite":
        regex_rewrite = regex_rewrite_of(ctx, redirect.regex_rewrite, f"{where}.regex_rewrite")
    if not 0 <= redirect.response_code < len(_REDIRECT_CODES):
        raise ctx.error(f"{where}.response_code: unknown value {redirect.response_code}")
    return RedirectAction(
        scheme=scheme,
        host=redirect.host_redirect or None,
        port=redirect.port_redirect or None,
        path_redirect=path_redirect,
        prefix_rewrite=prefix_rewrite,
        regex_rewrite=regex_rewrite,
        response_code=_REDIRECT_CODES[redirect.response_code],
        strip_query=redirect.strip_query,
    )


def _direct_response(
    ctx: DecodeContext, response: Any, where: str, max_body: int
) -> DirectResponseAction:
    reject_if_set(ctx, response, ("body_format",), where)
    if not 200 <= response.status < 600:
        raise ctx.error(f"{where}.status: {response.status} is not in 200..599")
    body = b""
    if response.HasField("body"):
        spec = response.body.WhichOneof("specifier")
        if spec == "inline_bytes":
            body = response.body.inline_bytes
        elif spec == "inline_string":
            body = response.body.inline_string.encode("utf-8")
        elif spec is not None:
            raise ctx.error(
                f"{where}.body.{spec}: not supported (use inline_bytes or inline_string)"
            )
    if len(body) > max_body:
        raise ctx.error(
            f"{where}.body: {len(body)} bytes, more than max_direct_response_body_size_bytes "
            f"({max_body})"
        )
    return DirectResponseAction(status=response.status, body=body)
