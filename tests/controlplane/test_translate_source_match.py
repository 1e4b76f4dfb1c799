"""sourceLabels / sourceNamespace: each caller gets the routes its labels select, as
Istio builds them per proxy; look-alike callers translate once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc

from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.traffic_model import (
    DestinationRule,
    HTTPMatchRequest,
    HTTPRoute,
    LoadBalancerSettings,
    LocalityLbSetting,
    MatchKind,
    StringMatch,
    TrafficPolicy,
)
from controlplane.translate import Resources, TranslationError, check_node, translate
from controlplane.translate.source_match import Caller, routing_view, selector_nodes
from controlplane.translate.typeurls import ROUTE_CONFIG_TYPE_URL
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.updater import SnapshotUpdater
from tests.controlplane.route_cases import config, resources, sidecar, to, vs

CANARY = HTTPMatchRequest(source_labels={"version": "canary"})
WEB_BETA = HTTPMatchRequest(
    name="beta",
    source_labels={"app": "web"},
    headers={"x-beta": StringMatch(MatchKind.PRESENT)},
)
ANYONE_B = HTTPMatchRequest(name="b", uri=StringMatch(MatchKind.PREFIX, "/b"))
SHOP = HTTPMatchRequest(source_namespace="shop")

MESH = config(
    vs(
        HTTPRoute(name="canary", match=(CANARY,), route=(to("sessions", port=8080),)),
        HTTPRoute(name="web", match=(WEB_BETA, ANYONE_B), route=(to("sessions", port=80),)),
        HTTPRoute(name="shop", match=(SHOP,), route=(to("sessions", port=80),)),
        HTTPRoute(name="rest", route=(to("attendees"),)),
    )
)


def node(
    labels: dict[str, object] | None = None, namespace: object = None, **extra: object
) -> NodeInfo:
    metadata: dict[str, object] = dict(extra)
    if labels is not None:
        metadata["LABELS"] = labels
    if namespace is not None:
        metadata["NAMESPACE"] = namespace
    return NodeInfo(id="n", metadata=metadata)


def route_names(mesh: MeshConfig, caller: NodeInfo, table: str = "attendees:8080") -> list[str]:
    _, tables = resources(mesh, caller)
    vhost = next(v for v in tables[table].virtual_hosts if v.name.startswith("attendees"))
    return [route.name for route in vhost.routes]


@pytest.mark.parametrize(
    ("labels", "namespace", "expected"),
    [
        (None, None, ["web.b", "rest"]),  # no labels: only blocks without a source condition
        ({"version": "canary"}, None, ["canary", "web.b", "rest"]),
        ({"app": "web"}, None, ["web.beta", "web.b", "rest"]),
        (
            {"app": "web", "version": "canary", "x": "y"},
            "shop",
            ["canary", "web.beta", "web.b", "shop", "rest"],
        ),
        ({"version": "canary-2"}, "shop-2", ["web.b", "rest"]),  # values and namespace are exact
    ],
)
def test_each_caller_gets_the_routes_its_labels_select(
    labels: dict[str, object] | None, namespace: str | None, expected: list[str]
) -> None:
    assert route_names(MESH, node(labels, namespace)) == expected


def test_a_source_only_block_is_a_catch_all_route_to_its_destination() -> None:
    _, tables = resources(MESH, node({"version": "canary"}))
    first = tables["attendees:8080"].virtual_hosts[0].routes[0]
    assert first.match == rc.RouteMatch(prefix="/")
    assert first.route.cluster == "outbound|8080||sessions"


def test_the_sidecar_table_follows_the_same_labels() -> None:
    canary = sidecar()
    canary = NodeInfo(id="s", metadata={**canary.metadata, "LABELS": {"version": "canary"}})
    assert route_names(MESH, canary, "mesh_outbound")[0] == "canary"
    assert route_names(MESH, sidecar(), "mesh_outbound") == ["web.b", "rest"]


def test_a_virtual_service_with_no_rule_for_the_caller_leaves_the_default_route() -> None:
    mesh = config(vs(HTTPRoute(name="canary", match=(CANARY,), route=(to("sessions", port=80),))))
    assert route_names(mesh, node()) == ["default"]
    assert route_names(mesh, node({"version": "canary"})) == ["canary"]


def test_locality_topology_labels_are_source_labels_too() -> None:
    zone = HTTPMatchRequest(source_labels={"topology.kubernetes.io/zone": "z1"})
    mesh = config(vs(HTTPRoute(name="z1", match=(zone,), route=(to("sessions", port=80),))))
    in_zone = NodeInfo(id="n", locality="r1/z1")
    assert route_names(mesh, in_zone) == ["z1"]
    assert route_names(mesh, NodeInfo(id="n", locality="r1/z2")) == ["default"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (node(["app"]), "node metadata 'LABELS': must be a map of label name to string value"),
        (
            node({"version": 2.0}),
            "node metadata 'LABELS': label 'version' must be a string, got 2.0",
        ),
        (node(namespace=["shop"]), "node metadata 'NAMESPACE': must be a string, got ['shop']"),
    ],
)
def test_bad_labels_or_namespace_are_named(bad: NodeInfo, message: str) -> None:
    with pytest.raises(TranslationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_node(bad)
    with pytest.raises(TranslationError):
        translate(MESH, (), bad)


def test_routing_view_keeps_only_the_labels_some_rule_reads() -> None:
    a = routing_view(MESH, node({"app": "web", "pod": "a-1"}, "shop", **{"mesh.x": 1}))
    b = routing_view(MESH, node({"app": "web", "pod": "b-2"}, "shop", **{"mesh.x": 1}))
    assert a == b
    assert a.metadata == {"LABELS": {"app": "web"}, "NAMESPACE": "shop", "mesh.x": 1}
    assert routing_view(MESH, node({"pod": "a"})) == routing_view(MESH, node())
    assert routing_view(MESH, node({"app": "api"})) != routing_view(MESH, node({"app": "web"}))
    plain = config()  # nothing reads labels or namespace
    assert routing_view(plain, node({"app": "web"}, "shop")).metadata == {}


def test_routing_view_keeps_every_label_when_failover_priority_reads_them() -> None:
    lb = LoadBalancerSettings(locality_lb_setting=LocalityLbSetting(failover_priority=("pod",)))
    rule = DestinationRule("r", "default", "attendees", TrafficPolicy(load_balancer=lb))
    mesh = MeshConfig(service_entries=MESH.service_entries, destination_rules=(rule,))
    assert routing_view(mesh, node({"pod": "a", "x": "y"})).metadata == {
        "LABELS": {"pod": "a", "x": "y"}
    }


def test_the_view_translates_like_the_node() -> None:
    full = node({"app": "web", "version": "canary", "pod": "p"}, "shop")
    assert translate(MESH, (), routing_view(MESH, full)) == translate(MESH, (), full)


def test_selector_nodes_give_each_trial_shape_every_selector() -> None:
    trials = selector_nodes(MESH, [NodeInfo(id="t")])
    assert [(t.id, t.metadata) for t in trials] == [
        ("t+source-0", {"LABELS": {}, "NAMESPACE": "shop"}),
        ("t+source-1", {"LABELS": {"app": "web"}}),
        ("t+source-2", {"LABELS": {"version": "canary"}}),
    ]


def test_look_alike_callers_share_one_translation_and_others_get_their_own() -> None:
    translated: list[NodeInfo] = []

    def counting(
        mesh: MeshConfig, workloads: Sequence[RegisteredWorkload], n: NodeInfo
    ) -> Resources:
        translated.append(n)
        return translate(mesh, workloads, n)

    cache = SnapshotCache()
    updater = SnapshotUpdater(cache, translate_fn=counting)
    updater.set_inputs(config=MESH)
    for node_id, labels in (("a", {"app": "web", "pod": "a"}), ("b", {"app": "web", "pod": "b"})):
        updater.connect(NodeInfo(id=node_id, metadata={"LABELS": labels}))
    updater.connect(NodeInfo(id="c", metadata={"LABELS": {"version": "canary"}}))
    expected = [{"LABELS": {"app": "web"}}, {"LABELS": {"version": "canary"}}]
    assert [n.metadata for n in translated] == expected  # b reused a's translation
    translated.clear()
    updater.set_inputs(config=MESH)
    assert updater.rebuild()
    assert [n.metadata for n in translated] == expected
    a, b, c = cache.get("a"), cache.get("b"), cache.get("c")
    assert a is not None and b is not None and c is not None
    assert a.versions() == b.versions()
    assert a.version(ROUTE_CONFIG_TYPE_URL) != c.version(ROUTE_CONFIG_TYPE_URL)


def test_a_change_is_checked_for_the_callers_each_selector_admits() -> None:
    """A config whose routes for labelled callers cannot be translated is refused
    before any such caller connects."""

    def fails_for_canaries(
        mesh: MeshConfig, loads: Sequence[RegisteredWorkload], n: NodeInfo
    ) -> Resources:
        if Caller.of(n).admits(CANARY):
            raise TranslationError("no routes for canaries")
        return translate(mesh, loads, n)

    updater = SnapshotUpdater(SnapshotCache(), translate_fn=fails_for_canaries)
    updater.check(config=config())
    with pytest.raises(TranslationError, match="no routes for canaries"):
        updater.check(config=MESH)
