"""translate: the mesh model to Envoy v3 protos, as a pure function."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from controlplane.model import (
    MeshConfig,
    NodeInfo,
    RegisteredWorkload,
    Resolution,
    ServiceEntry,
    ServicePort,
    Source,
    WorkloadEntry,
    WorkloadSpec,
)
from controlplane.translate import Resources, TranslationError, translate
from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    LISTENER_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)

NODE = NodeInfo(id="node-1")


def entry(
    host: str = "attendees",
    ports: tuple[ServicePort, ...] = (ServicePort(8080, "http", "HTTP"),),
    endpoints: tuple[WorkloadSpec, ...] = (),
    *,
    resolution: Resolution = Resolution.STATIC,
    selector: Mapping[str, str] | None = None,
    namespace: str = "default",
    name: str = "",
) -> ServiceEntry:
    return ServiceEntry(
        name=name or host,
        namespace=namespace,
        hosts=(host,),
        ports=ports,
        resolution=resolution,
        endpoints=endpoints,
        workload_selector=selector,
        source=Source("mesh.yaml", 1),
    )


def run(
    *entries: ServiceEntry,
    workloads: tuple[RegisteredWorkload, ...] = (),
    workload_entries: tuple[WorkloadEntry, ...] = (),
) -> Resources:
    config = MeshConfig(service_entries=entries, workload_entries=workload_entries)
    return translate(config, workloads, NODE)


def cluster_of(resources: Resources, name: str) -> cluster_pb2.Cluster:
    cluster = resources[CLUSTER_TYPE_URL][name]
    assert isinstance(cluster, cluster_pb2.Cluster)
    return cluster


def addresses(resources: Resources, cluster: str) -> list[tuple[str, int]]:
    assignment = resources[ENDPOINTS_TYPE_URL][cluster]
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    return [
        (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
        for group in assignment.endpoints
        for e in group.lb_endpoints
    ]


def test_names_follow_istio() -> None:
    resources = run(
        entry(ports=(ServicePort(8080, "http", "HTTP"), ServicePort(80, "web", "HTTP")))
    )
    assert sorted(resources[LISTENER_TYPE_URL]) == ["attendees:80", "attendees:8080"]
    assert sorted(resources[ROUTE_CONFIG_TYPE_URL]) == ["attendees:80", "attendees:8080"]
    assert sorted(resources[CLUSTER_TYPE_URL]) == [
        "outbound|8080||attendees",
        "outbound|80||attendees",
    ]
    assert sorted(resources[ENDPOINTS_TYPE_URL]) == sorted(resources[CLUSTER_TYPE_URL])

    route_80: route_pb2.RouteConfiguration = resources[ROUTE_CONFIG_TYPE_URL]["attendees:80"]
    (vhost,) = route_80.virtual_hosts
    assert vhost.name == "attendees:80"
    assert list(vhost.domains) == ["attendees:80", "attendees"]
    (route,) = vhost.routes
    assert route.match.prefix == "/"
    assert route.route.cluster == "outbound|80||attendees"
    route_8080: route_pb2.RouteConfiguration = resources[ROUTE_CONFIG_TYPE_URL]["attendees:8080"]
    assert list(route_8080.virtual_hosts[0].domains) == ["attendees:8080"]


def test_listener_is_an_api_listener_with_rds_over_ads() -> None:
    listener = run(entry())[LISTENER_TYPE_URL]["attendees:8080"]
    assert isinstance(listener, listener_pb2.Listener)
    assert listener.name == "attendees:8080"
    manager = hcm_pb2.HttpConnectionManager()
    assert listener.api_listener.api_listener.Unpack(manager)
    assert manager.stat_prefix
    assert manager.rds.route_config_name == "attendees:8080"
    assert manager.rds.config_source.HasField("ads")
    assert manager.rds.config_source.resource_api_version == config_source_pb2.ApiVersion.V3
    (router,) = manager.http_filters
    assert router.name == "envoy.filters.http.router"
    assert router.typed_config.Is(router_pb2.Router.DESCRIPTOR)


def test_cluster_is_eds_over_ads() -> None:
    cluster = run(entry())[CLUSTER_TYPE_URL]["outbound|8080||attendees"]
    assert isinstance(cluster, cluster_pb2.Cluster)
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.eds_cluster_config.service_name == "outbound|8080||attendees"
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert cluster.connect_timeout.seconds == 5


def test_endpoint_port_rule() -> None:
    port = ServicePort(80, "http", "HTTP", target_port=9090)
    no_target = ServicePort(81, "grpc", "GRPC")
    endpoints = (
        WorkloadSpec("10.0.0.1", ports={"http": 7001}),  # by port name
        WorkloadSpec("10.0.0.2"),  # target_port, else the port number
    )
    resources = run(entry("svc", ports=(port, no_target), endpoints=endpoints))
    assert addresses(resources, "outbound|80||svc") == [("10.0.0.1", 7001), ("10.0.0.2", 9090)]
    assert addresses(resources, "outbound|81||svc") == [("10.0.0.1", 81), ("10.0.0.2", 81)]


def test_workload_selector_matches_labels_in_same_namespace() -> None:
    def workload(
        name: str, address: str, labels: dict[str, str], ns: str = "default"
    ) -> WorkloadEntry:
        spec = WorkloadSpec(address, ports={"http": 9000}, labels=labels)
        return WorkloadEntry(name=name, namespace=ns, spec=spec)

    workload_entries = (
        workload("match", "10.0.0.1", {"app": "att", "version": "v1"}),
        workload("other-app", "10.0.0.2", {"app": "other"}),
        workload("other-ns", "10.0.0.3", {"app": "att"}, ns="prod"),
        workload("match-too", "10.0.0.4", {"app": "att"}),
    )
    resources = run(entry(selector={"app": "att"}), workload_entries=workload_entries)
    assert addresses(resources, "outbound|8080||attendees") == [
        ("10.0.0.1", 9000),
        ("10.0.0.4", 9000),
    ]


def test_registered_workloads_join_declared_service() -> None:
    workloads = (
        RegisteredWorkload(id="w1", service="attendees", address="10.0.1.1", ports={8080: 18080}),
        RegisteredWorkload(id="w2", service="attendees", address="10.0.1.2", ports={9999: 1}),
    )
    resources = run(entry(endpoints=(WorkloadSpec("10.0.0.1"),)), workloads=workloads)
    assert addresses(resources, "outbound|8080||attendees") == [
        ("10.0.0.1", 8080),
        ("10.0.1.1", 18080),
    ]
    # w2 serves no declared port: it makes no service of its own either.
    assert sorted(resources[CLUSTER_TYPE_URL]) == ["outbound|8080||attendees"]


def test_implicit_service_from_registrations() -> None:
    workloads = (
        RegisteredWorkload(id="b", service="sessions", address="10.0.2.2", ports={50051: 6002}),
        RegisteredWorkload(
            id="a", service="sessions", address="10.0.2.1", ports={50051: 6001, 80: 8000}
        ),
    )
    resources = translate(MeshConfig(), workloads, NODE)
    assert sorted(resources[LISTENER_TYPE_URL]) == [
        "sessions:50051",
        "sessions:80",
        # each serving address gets its inbound listener (asked for by name only)
        "xds.istio.io/grpc/lds/inbound/10.0.2.1:6001",
        "xds.istio.io/grpc/lds/inbound/10.0.2.1:8000",
        "xds.istio.io/grpc/lds/inbound/10.0.2.2:6002",
    ]
    assert addresses(resources, "outbound|50051||sessions") == [
        ("10.0.2.1", 6001),
        ("10.0.2.2", 6002),
    ]
    assert addresses(resources, "outbound|80||sessions") == [("10.0.2.1", 8000)]


def test_localities_weights_and_labels() -> None:
    endpoints = (
        WorkloadSpec("10.0.0.3", locality="us/east/b", weight=2, labels={"v": "2"}),
        WorkloadSpec("10.0.0.1", locality="us/east/a", weight=3),
        WorkloadSpec("10.0.0.2", locality="us/east/a", weight=0),  # 0 means the default 1
    )
    assignment = run(entry(endpoints=endpoints))[ENDPOINTS_TYPE_URL]["outbound|8080||attendees"]
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    groups = list(assignment.endpoints)
    assert [(g.locality.region, g.locality.zone, g.locality.sub_zone) for g in groups] == [
        ("us", "east", "a"),
        ("us", "east", "b"),
    ]
    assert [g.load_balancing_weight.value for g in groups] == [4, 2]
    assert {g.priority for g in groups} == {0}
    weights = [
        (e.endpoint.address.socket_address.address, e.load_balancing_weight.value)
        for e in groups[0].lb_endpoints
    ]
    assert weights == [("10.0.0.1", 3), ("10.0.0.2", 1)]
    labelled = groups[1].lb_endpoints[0]
    assert labelled.health_status == health_check_pb2.HealthStatus.HEALTHY
    assert labelled.metadata.filter_metadata["envoy.lb"].fields["v"].string_value == "2"


def test_dns_service_is_a_logical_dns_cluster() -> None:
    resources = run(
        entry(
            "api.example.com", ports=(ServicePort(443, "https", "TLS"),), resolution=Resolution.DNS
        ),
        entry(
            "db",
            endpoints=(WorkloadSpec("db.internal", ports={"http": 5432}),),
            resolution=Resolution.DNS,
        ),
    )
    assert sorted(resources[ENDPOINTS_TYPE_URL]) == []  # only STATIC clusters get a CLA
    cluster = cluster_of(resources, "outbound|443||api.example.com")
    assert cluster.type == cluster_pb2.Cluster.LOGICAL_DNS
    assert cluster.dns_lookup_family == cluster_pb2.Cluster.V4_PREFERRED
    (group,) = cluster.load_assignment.endpoints
    (only,) = group.lb_endpoints
    socket = only.endpoint.address.socket_address
    assert (socket.address, socket.port_value) == ("api.example.com", 443)
    db = cluster_of(resources, "outbound|8080||db").load_assignment
    socket = db.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (socket.address, socket.port_value) == ("db.internal", 5432)


def test_output_is_deterministic() -> None:
    workloads = tuple(
        RegisteredWorkload(
            id=f"w{i}",
            service="svc",
            address=f"10.0.3.{i}",
            ports={80: 80},
            labels={"b": "1", "a": "2"},
        )
        for i in range(1, 6)
    )
    entries = (
        entry("x", endpoints=(WorkloadSpec("10.0.0.9"), WorkloadSpec("10.0.0.8"))),
        entry("svc"),
    )

    def serialized(resources: Resources) -> dict[str, dict[str, bytes]]:
        return {
            url: {name: m.SerializeToString(deterministic=True) for name, m in by_name.items()}
            for url, by_name in resources.items()
        }

    one = serialized(run(*entries, workloads=workloads))
    two = serialized(run(*reversed(entries), workloads=tuple(reversed(workloads))))
    assert one == two
    assert list(one[CLUSTER_TYPE_URL]) == sorted(one[CLUSTER_TYPE_URL])


@pytest.mark.parametrize(
    ("entries", "workloads", "message"),
    [
        (
            (entry("a"), entry("a", name="again")),
            (),
            "service a:8080 is declared twice: by ServiceEntry default/a (mesh.yaml#1)"
            " and by ServiceEntry default/again",
        ),
        (
            (
                entry(
                    "d",
                    endpoints=(WorkloadSpec("h1"), WorkloadSpec("h2")),
                    resolution=Resolution.DNS,
                ),
            ),
            (),
            "resolution DNS supports at most one endpoint per port",
        ),
        (
            (entry("s", endpoints=(WorkloadSpec("not-an-ip"),)),),
            (),
            "ServiceEntry default/s (mesh.yaml#1) endpoints[0]: endpoint address 'not-an-ip'"
            " of STATIC service s:8080 must be an IP",
        ),
        (
            (),
            (
                RegisteredWorkload(
                    id="w9", service="s", address="10.0.0.1", ports={80: 80}, weight=-1
                ),
            ),
            "registered workload 'w9': weight must be >= 0",
        ),
    ],
)
def test_untranslatable_model_names_what_and_where(
    entries: tuple[ServiceEntry, ...], workloads: tuple[RegisteredWorkload, ...], message: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        run(*entries, workloads=workloads)
    assert message in str(caught.value)


def test_type_urls_match_the_client_library() -> None:
    """The control plane derives type URLs from the protos; meshlib spells them out."""
    from controlplane.translate import typeurls
    from meshlib.xds_client import resources

    for name in ("LISTENER", "ROUTE_CONFIG", "CLUSTER", "ENDPOINTS"):
        attr = f"{name}_TYPE_URL"
        assert getattr(typeurls, attr) == getattr(resources, attr)
