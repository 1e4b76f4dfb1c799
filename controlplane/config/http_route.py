"""One rule of a VirtualService's ``spec.http``: Istio's HTTPRoute.

A rule does exactly one of ``route`` (weighted destinations), ``redirect`` or
``directResponse``. What only a forwarded request can have (rewrite, timeout,
retries, mirrors) needs ``route``; a fault cannot go with a redirect (as Istio
validates). With several destinations every weight is given and they sum to 100.
"""

from __future__ import annotations

from controlplane.config.durations import duration
from controlplane.config.fields import Fields
from controlplane.config.http_actions import (
    parse_destination,
    parse_direct_response,
    parse_headers,
    parse_mirrors,
    parse_redirect,
    parse_rewrite,
)
from controlplane.config.http_match import parse_http_match
from controlplane.config.http_resilience import parse_fault, parse_retries
from controlplane.traffic_model import HTTPMatchRequest, HTTPRoute, HTTPRouteDestination

ROUTE_FIELDS = (
    "name",
    "match",
    "route",
    "redirect",
    "directResponse",
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrorPercentage",
    "mirrors",
    "headers",
)
ROUTE_NOT_YET = ("delegate", "corsPolicy")
ROUTE_REFUSED = {"mirrorPercent": "deprecated field; use mirrorPercentage ({value: N})"}
ACTIONS = ("route", "redirect", "directResponse")
NEEDS_ROUTE = ("rewrite", "timeout", "retries", "mirror", "mirrors")
DESTINATION_FIELDS = ("destination", "weight", "headers")
TOTAL_WEIGHT = 100


def parse_http_route(fields: Fields) -> HTTPRoute | None:
    """Validate one HTTP rule; None when any issue was reported."""
    ctx = fields.ctx
    before = ctx.count
    fields.reject_unknown(ROUTE_FIELDS, ROUTE_NOT_YET, "an HTTP route", ROUTE_REFUSED)
    name = fields.string("name")
    match = _matches(fields)
    _check_action(fields)
    route = _destinations(fields)
    redirect_fields = fields.mapping("redirect")
    redirect = parse_redirect(redirect_fields) if redirect_fields is not None else None
    direct_fields = fields.mapping("directResponse")
    direct = parse_direct_response(direct_fields) if direct_fields is not None else None
    rewrite_fields = fields.mapping("rewrite")
    rewrite = parse_rewrite(rewrite_fields) if rewrite_fields is not None else None
    timeout = duration(fields, "timeout", allow_zero=True)
    retries_fields = fields.mapping("retries")
    retries = parse_retries(retries_fields) if retries_fields is not None else None
    fault_fields = fields.mapping("fault")
    fault = parse_fault(fault_fields) if fault_fields is not None else None
    mirrors = parse_mirrors(fields)
    headers = parse_headers(fields, "headers")
    if ctx.count != before:
        return None
    return HTTPRoute(
        name=name or "",
        match=match,
        route=route,
        redirect=redirect,
        direct_response=direct,
        rewrite=rewrite,
        timeout_s=timeout,
        retries=retries,
        fault=fault,
        mirrors=mirrors,
        headers=headers,
    )


def _matches(fields: Fields) -> tuple[HTTPMatchRequest, ...]:
    matches: list[HTTPMatchRequest] = []
    for path, value in fields.items("match") or ():
        block = Fields.of(fields.ctx, path, value)
        parsed = parse_http_match(block) if block is not None else None
        if parsed is not None:
            matches.append(parsed)
    return tuple(matches)


def _check_action(fields: Fields) -> None:
    if not any(fields.present(key) for key in ACTIONS):
        fields.ctx.error(fields.path, "must set one of route, redirect, directResponse")
        return
    if not fields.exclusive(*ACTIONS) or fields.present("route"):
        return
    action = "redirect" if fields.present("redirect") else "directResponse"
    for key in NEEDS_ROUTE:
        if fields.present(key):
            fields.ctx.error(fields.at(key), f"needs route (a rule with {action} forwards nothing)")
    if action == "redirect" and fields.present("fault"):
        fields.ctx.error(fields.at("fault"), "cannot be combined with redirect")


def _destinations(fields: Fields) -> tuple[HTTPRouteDestination, ...]:
    ctx = fields.ctx
    elements = fields.items("route", non_empty=True)
    if not elements:
        return ()
    several = len(elements) > 1
    result: list[HTTPRouteDestination] = []
    total = 0
    weights_known = True
    for path, value in elements:
        entry = Fields.of(ctx, path, value)
        if entry is None:
            weights_known = False
            continue
        entry.reject_unknown(DESTINATION_FIELDS, what="a route destination")
        destination = None
        if entry.present("destination"):
            destination = parse_destination(ctx, entry.at("destination"), entry.data["destination"])
        else:
            ctx.error(entry.at("destination"), "is required")
        weight = entry.integer("weight", minimum=0, maximum=TOTAL_WEIGHT)
        if weight is None:
            weights_known = False
            if several and not entry.present("weight"):
                ctx.error(entry.at("weight"), "is required when a rule has several destinations")
        total += weight or 0
        headers = parse_headers(entry, "headers")
        if destination is not None:
            result.append(HTTPRouteDestination(destination, weight or 0, headers))
    if several and weights_known and total != TOTAL_WEIGHT:
        ctx.error(fields.at("route"), f"weights must sum to {TOTAL_WEIGHT}, got {total}")
    return tuple(result)
