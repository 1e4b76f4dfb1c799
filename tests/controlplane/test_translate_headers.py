"""Rule-level vs destination-level ``headers``: the chosen destination's edits win,
with one destination (edits on the route) and with several (edits on the weighted
cluster, which Envoy applies before the route's), so both shapes mean the same.

The effective headers are computed with meshlib's own header chain (Envoy's order:
weighted cluster, then route; removals before additions within a level).
"""

from __future__ import annotations

from dataclasses import replace

from controlplane.traffic_model import HeaderOperations, Headers, HTTPRoute, HTTPRouteDestination
from meshlib.routing._header_mutation import CompiledMutation, ordered_chain
from meshlib.xds_client.decode_route import decode_route_configuration
from meshlib.xds_client.resources import Route
from tests.controlplane.route_cases import config, resources, to, vs

NO_MUTATION = CompiledMutation((), (), "none")


def request(set_: dict[str, str] | None = None, remove: tuple[str, ...] = ()) -> Headers:
    return Headers(request=HeaderOperations(set=set_ or {}, remove=remove))


def effective(rule: HTTPRoute) -> dict[str, list[tuple[str, str]]]:
    """Cluster name -> the request headers a request starting with x-in: 1 leaves with."""
    _, tables = resources(config(vs(rule)))
    (route,) = decode_route_configuration(tables["attendees:8080"]).virtual_hosts[0].routes
    assert isinstance(route, Route) and route.action is not None
    own = CompiledMutation(
        route.headers.request_headers_to_add, route.headers.request_headers_to_remove, "route"
    )
    levels: dict[str, CompiledMutation | None] = {}
    if route.action.cluster:
        levels[route.action.cluster] = None
    for weighted in route.action.weighted_clusters:
        levels[weighted.name] = CompiledMutation(
            weighted.headers.request_headers_to_add,
            weighted.headers.request_headers_to_remove,
            "cluster",
        )
    seen = {}
    for cluster, level in levels.items():
        headers = [("x-in", "1")]
        ordered_chain(level, own, NO_MUTATION, NO_MUTATION, False).apply(headers)
        seen[cluster] = sorted(headers)
    return seen


RULE_HEADERS = request({"x-tier": "rule", "x-rule": "r", "x-in": "rule"})
ATTENDEES = "outbound|8080||attendees"
SESSIONS = "outbound|8080||sessions"


def _with(dest: HTTPRouteDestination, headers: Headers) -> HTTPRouteDestination:
    return replace(dest, headers=headers)


def test_a_destination_set_wins_alone_and_in_a_split() -> None:
    mine = request({"x-tier": "destination"}, remove=("x-in",))
    alone = effective(HTTPRoute(route=(_with(to("attendees"), mine),), headers=RULE_HEADERS))
    split = effective(
        HTTPRoute(
            route=(_with(to("attendees", weight=50), mine), to("sessions", port=8080, weight=50)),
            headers=RULE_HEADERS,
        )
    )
    chosen = [("x-rule", "r"), ("x-tier", "destination")]
    assert alone == {ATTENDEES: chosen}
    assert split[ATTENDEES] == chosen
    # The other destination gets the rule's edits only.
    assert split[SESSIONS] == [("x-in", "rule"), ("x-rule", "r"), ("x-tier", "rule")]


def test_split_without_destination_headers_keeps_the_rule_edits_on_the_route() -> None:
    rule = HTTPRoute(
        route=(to("attendees", weight=50), to("sessions", port=8080, weight=50)),
        headers=RULE_HEADERS,
    )
    _, tables = resources(config(vs(rule)))
    (route,) = tables["attendees:8080"].virtual_hosts[0].routes
    assert {o.header.key for o in route.request_headers_to_add} == {"x-tier", "x-rule", "x-in"}
    assert all(not c.request_headers_to_add for c in route.route.weighted_clusters.clusters)
    expected = [("x-in", "rule"), ("x-rule", "r"), ("x-tier", "rule")]
    assert effective(rule) == {ATTENDEES: expected, SESSIONS: expected}
