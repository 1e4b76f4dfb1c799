"""DestinationRule -> Cluster / ClusterLoadAssignment: subsets, precedence, LB,
outlier detection, circuit breakers, protocol options, degraded, hash policies."""

from __future__ import annotations

from dataclasses import replace

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.maglev.v3 import maglev_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as options_pb2

from controlplane.model import (
    MeshConfig,
    NodeInfo,
    RegisteredWorkload,
    Resolution,
    ServicePort,
    WorkloadEntry,
    WorkloadSpec,
)
from controlplane.traffic_model import (
    ConnectionPoolSettings,
    ConsistentHash,
    DestinationRule,
    FailurePercentageEjection,
    HashAlgorithm,
    HashCookie,
    HTTPSettings,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    RetryBudget,
    SimpleLB,
    Subset,
    SuccessRateEjection,
    TCPSettings,
    TrafficPolicy,
    TrafficPolicyExtensions,
)
from controlplane.translate import Resources, TranslationError, translate
from controlplane.translate.circuit_breakers import UNLIMITED
from controlplane.translate.hash_policy import hash_policy_for
from controlplane.translate.typeurls import CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
from tests.controlplane.cluster_cases import (
    FULL_OUTLIER,
    FULL_POOL,
    endpoint,
    rule,
    service,
)

NODE = NodeInfo(id="n1")
Cluster = cluster_pb2.Cluster
HTTP = ServicePort(8080, "http", "HTTP")
ADMIN = ServicePort(9090, "admin", "HTTP")


def run(config: MeshConfig, workloads: tuple[RegisteredWorkload, ...] = ()) -> Resources:
    return translate(config, workloads, NODE)


def cluster(resources: Resources, name: str) -> cluster_pb2.Cluster:
    message = resources[CLUSTER_TYPE_URL][name]
    assert isinstance(message, cluster_pb2.Cluster)
    return message


def addresses(resources: Resources, name: str) -> list[str]:
    message = resources[ENDPOINTS_TYPE_URL][name]
    assert isinstance(message, endpoint_pb2.ClusterLoadAssignment)
    return sorted(
        e.endpoint.address.socket_address.address for g in message.endpoints for e in g.lb_endpoints
    )


def one(host: str, policy: TrafficPolicy | None, **kwargs: object) -> Resources:
    """A one-endpoint service ``host`` with a rule holding ``policy``."""
    ext = kwargs.pop("extensions", None)
    assert ext is None or isinstance(ext, TrafficPolicyExtensions)
    config = MeshConfig(
        service_entries=(service(host, endpoint("10.0.0.1")),),
        destination_rules=(rule(host, policy, extensions=ext),),
    )
    return run(config)


def lb(**kwargs: object) -> TrafficPolicy:
    return TrafficPolicy(load_balancer=LoadBalancerSettings(**kwargs))  # type: ignore[arg-type]


# --- subsets -----------------------------------------------------------------


def subset_mesh() -> tuple[MeshConfig, tuple[RegisteredWorkload, ...]]:
    inline = service(
        "reviews",
        endpoint("10.0.0.1", labels={"version": "v1", "track": "stable"}),
        endpoint("10.0.0.2", labels={"version": "v2"}),
    )
    selected = replace(inline, workload_selector={"app": "reviews"})
    entry = WorkloadEntry(
        "we-3",
        "default",
        WorkloadSpec("10.0.0.3", labels={"app": "reviews", "version": "v2", "track": "canary"}),
    )
    registered = RegisteredWorkload(
        id="r4",
        service="reviews",
        address="10.0.0.4",
        ports={50051: 7000},
        labels={"version": "v1"},
    )
    dr = rule(
        "reviews",
        None,
        Subset("v1", {"version": "v1"}),
        Subset("v2", {"version": "v2"}),
        Subset("canary", {"version": "v2", "track": "canary"}),
        Subset("all"),
    )
    config = MeshConfig(
        service_entries=(selected,), workload_entries=(entry,), destination_rules=(dr,)
    )
    return config, (registered,)


def test_each_subset_is_an_eds_cluster_with_its_own_name() -> None:
    config, workloads = subset_mesh()
    resources = run(config, workloads)
    names = sorted(resources[CLUSTER_TYPE_URL])
    assert names == [
        "outbound|50051|all|reviews",
        "outbound|50051|canary|reviews",
        "outbound|50051|v1|reviews",
        "outbound|50051|v2|reviews",
        "outbound|50051||reviews",
    ]
    assert sorted(resources[ENDPOINTS_TYPE_URL]) == names
    for name in names:
        built = cluster(resources, name)
        assert built.type == Cluster.EDS
        assert built.eds_cluster_config.service_name == name
        assert built.eds_cluster_config.eds_config.HasField("ads")


def test_subset_endpoints_are_those_whose_labels_include_the_subsets() -> None:
    config, workloads = subset_mesh()
    resources = run(config, workloads)
    everyone = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert addresses(resources, "outbound|50051||reviews") == everyone
    assert addresses(resources, "outbound|50051|all|reviews") == everyone
    assert addresses(resources, "outbound|50051|v1|reviews") == ["10.0.0.1", "10.0.0.4"]
    assert addresses(resources, "outbound|50051|v2|reviews") == ["10.0.0.2", "10.0.0.3"]
    assert addresses(resources, "outbound|50051|canary|reviews") == ["10.0.0.3"]


def test_subset_endpoints_keep_their_labels_in_envoy_lb_metadata() -> None:
    config, workloads = subset_mesh()
    assignment = run(config, workloads)[ENDPOINTS_TYPE_URL]["outbound|50051|canary|reviews"]
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    (lb_endpoint,) = assignment.endpoints[0].lb_endpoints
    labels = dict(lb_endpoint.metadata.filter_metadata["envoy.lb"])
    assert labels == {"app": "reviews", "version": "v2", "track": "canary"}


def test_subset_selecting_nothing_is_an_empty_assignment() -> None:
    config = MeshConfig(
        service_entries=(service("svc", endpoint("10.0.0.1")),),
        destination_rules=(rule("svc", None, Subset("none", {"version": "v9"})),),
    )
    assignment = run(config)[ENDPOINTS_TYPE_URL]["outbound|50051|none|svc"]
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    assert list(assignment.endpoints) == []


def test_dns_service_subsets_are_logical_dns_clusters_of_the_selected_endpoint() -> None:
    dns = service(
        "api.example.com",
        endpoint("eu.example.com", labels={"region": "eu"}),
        resolution=Resolution.DNS,
    )
    ok = rule("api.example.com", None, Subset("eu", {"region": "eu"}))
    resources = run(MeshConfig(service_entries=(dns,), destination_rules=(ok,)))
    built = cluster(resources, "outbound|50051|eu|api.example.com")
    assert built.type == Cluster.LOGICAL_DNS
    address = built.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert address.socket_address.address == "eu.example.com"
    bad = rule("api.example.com", None, Subset("us", {"region": "us"}))
    with pytest.raises(TranslationError, match="subset 'us' selects no endpoint of DNS service"):
        run(MeshConfig(service_entries=(dns,), destination_rules=(bad,)))


# --- which rule, and precedence ---------------------------------------------------


def _ring(size: int) -> LoadBalancerSettings:
    return LoadBalancerSettings(
        consistent_hash=ConsistentHash(http_header_name="x", minimum_ring_size=size)
    )


def test_precedence_top_then_port_then_subset_then_subset_port() -> None:
    dr = rule(
        "svc",
        TrafficPolicy(
            load_balancer=_ring(1000),
            outlier_detection=OutlierDetection(consecutive_5xx_errors=7),
            connection_pool=ConnectionPoolSettings(http=HTTPSettings(http2_max_requests=11)),
            port_level_settings=(PortTrafficPolicy(port=9090, load_balancer=_ring(2000)),),
        ),
        Subset(
            "s",
            {"v": "1"},
            TrafficPolicy(
                load_balancer=_ring(3000),
                port_level_settings=(
                    PortTrafficPolicy(
                        port=9090,
                        load_balancer=_ring(4000),
                        outlier_detection=OutlierDetection(consecutive_5xx_errors=9),
                    ),
                ),
            ),
        ),
    )
    entry = service("svc", endpoint("10.0.0.1", labels={"v": "1"}), ports=(HTTP, ADMIN))
    resources = run(MeshConfig(service_entries=(entry,), destination_rules=(dr,)))

    def ring(name: str) -> int:
        return int(cluster(resources, name).ring_hash_lb_config.minimum_ring_size.value)

    def errors(name: str) -> int:
        return int(cluster(resources, name).outlier_detection.consecutive_5xx.value)

    def max_requests(name: str) -> int:
        return int(cluster(resources, name).circuit_breakers.thresholds[0].max_requests.value)

    assert ring("outbound|8080||svc") == 1000  # top level
    assert ring("outbound|9090||svc") == 2000  # top level, port 9090
    assert ring("outbound|8080|s|svc") == 3000  # subset beats top-level port settings
    assert ring("outbound|9090|s|svc") == 4000  # subset's port settings beat the subset
    # blocks the lower levels do not set are inherited whole
    assert errors("outbound|8080|s|svc") == 7
    assert errors("outbound|9090|s|svc") == 9
    for name in resources[CLUSTER_TYPE_URL]:
        assert max_requests(name) == 11


# --- load balancer -------------------------------------------------------------


def _typed_names(built: cluster_pb2.Cluster) -> list[str]:
    return [p.typed_extension_config.name for p in built.load_balancing_policy.policies]


def test_default_is_round_robin_without_extra_config() -> None:
    built = cluster(one("svc", None), "outbound|50051||svc")
    assert built.lb_policy == Cluster.ROUND_ROBIN
    assert not built.HasField("round_robin_lb_config")
    assert not built.HasField("load_balancing_policy")


def test_round_robin_warmup_is_slow_start() -> None:
    built = cluster(one("svc", lb(warmup_duration_s=45)), "outbound|50051||svc")
    assert built.lb_policy == Cluster.ROUND_ROBIN
    assert built.round_robin_lb_config.slow_start_config.slow_start_window.seconds == 45


def test_least_request_is_typed_with_round_robin_fallback_for_grpc() -> None:
    policy = lb(simple=SimpleLB.LEAST_REQUEST, warmup_duration_s=2.5)
    built = cluster(one("svc", policy), "outbound|50051||svc")
    assert _typed_names(built) == [
        "envoy.load_balancing_policies.least_request",
        "envoy.load_balancing_policies.round_robin",
    ]
    config = least_request_pb2.LeastRequest()
    built.load_balancing_policy.policies[0].typed_extension_config.typed_config.Unpack(config)
    assert config.choice_count.value == 2
    window = config.slow_start_config.slow_start_window
    assert (window.seconds, window.nanos) == (2, 500_000_000)


def test_random_is_typed_with_round_robin_fallback() -> None:
    built = cluster(one("svc", lb(simple=SimpleLB.RANDOM)), "outbound|50051||svc")
    assert _typed_names(built) == [
        "envoy.load_balancing_policies.random",
        "envoy.load_balancing_policies.round_robin",
    ]


def test_ring_hash_uses_xx_hash_and_the_minimum_ring_size() -> None:
    policy = lb(consistent_hash=ConsistentHash(http_header_name="x-user"))
    built = cluster(one("svc", policy), "outbound|50051||svc")
    assert built.lb_policy == Cluster.RING_HASH
    assert built.ring_hash_lb_config.hash_function == Cluster.RingHashLbConfig.XX_HASH
    assert built.ring_hash_lb_config.minimum_ring_size.value == 1024


def test_maglev_is_typed_with_ring_hash_fallback_and_table_size() -> None:
    policy = lb(
        consistent_hash=ConsistentHash(
            use_source_ip=True, algorithm=HashAlgorithm.MAGLEV, maglev_table_size=65537
        )
    )
    built = cluster(one("svc", policy), "outbound|50051||svc")
    assert _typed_names(built) == [
        "envoy.load_balancing_policies.maglev",
        "envoy.load_balancing_policies.ring_hash",
    ]
    maglev = maglev_pb2.Maglev()
    built.load_balancing_policy.policies[0].typed_extension_config.typed_config.Unpack(maglev)
    assert maglev.table_size.value == 65537


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (lb(simple=SimpleLB.PASSTHROUGH), "PASSTHROUGH is not supported"),
        (lb(simple=SimpleLB.RANDOM, warmup_duration_s=5), "warmupDurationSecs"),
        (
            lb(consistent_hash=ConsistentHash(http_header_name="x"), warmup_duration_s=5),
            "warmupDurationSecs",
        ),
        (
            lb(consistent_hash=ConsistentHash(http_header_name="x", minimum_ring_size=2**24)),
            "minimumRingSize",
        ),
        (
            lb(
                consistent_hash=ConsistentHash(
                    http_header_name="x", algorithm=HashAlgorithm.MAGLEV, maglev_table_size=65536
                )
            ),
            "must be a prime",
        ),
        (
            TrafficPolicy(outlier_detection=OutlierDetection(consecutive_local_origin_failures=3)),
            "splitExternalLocalOriginErrors",
        ),
        (
            TrafficPolicy(outlier_detection=OutlierDetection(max_ejection_percent=150)),
            "maxEjectionPercent",
        ),
    ],
)
def test_unsupported_settings_refuse_the_config_naming_the_rule(
    policy: TrafficPolicy, message: str
) -> None:
    with pytest.raises(
        TranslationError, match=rf"DestinationRule default/svc-rule \(rules.yaml#2\).*{message}"
    ):
        one("svc", policy)


# --- outlier detection -----------------------------------------------------------


def test_outlier_detection_maps_every_field_as_istio() -> None:
    built = cluster(
        one("svc", TrafficPolicy(outlier_detection=FULL_OUTLIER)), "outbound|50051||svc"
    )
    od = built.outlier_detection
    assert (od.consecutive_5xx.value, od.enforcing_consecutive_5xx.value) == (3, 100)
    assert (
        od.consecutive_gateway_failure.value,
        od.enforcing_consecutive_gateway_failure.value,
    ) == (2, 100)
    assert od.split_external_local_origin_errors
    assert (
        od.consecutive_local_origin_failure.value,
        od.enforcing_consecutive_local_origin_failure.value,
    ) == (4, 100)
    assert (
        od.HasField("enforcing_local_origin_success_rate")
        and od.enforcing_local_origin_success_rate.value == 0
    )
    assert (od.interval.seconds, od.interval.nanos) == (2, 500_000_000)
    assert od.base_ejection_time.seconds == 15
    assert od.max_ejection_percent.value == 50
    assert od.HasField("enforcing_success_rate") and od.enforcing_success_rate.value == 0
    assert not od.HasField("enforcing_failure_percentage")
    assert built.common_lb_config.healthy_panic_threshold.value == 30


def test_outlier_detection_defaults_to_five_5xx_and_no_panic_mode() -> None:
    built = cluster(
        one("svc", TrafficPolicy(outlier_detection=OutlierDetection())), "outbound|50051||svc"
    )
    od = built.outlier_detection
    assert (od.consecutive_5xx.value, od.enforcing_consecutive_5xx.value) == (5, 100)
    assert not od.HasField("consecutive_gateway_failure")
    assert (od.interval.seconds, od.base_ejection_time.seconds, od.max_ejection_percent.value) == (
        10,
        30,
        10,
    )
    assert built.common_lb_config.HasField("healthy_panic_threshold")
    assert built.common_lb_config.healthy_panic_threshold.value == 0


def test_zero_consecutive_5xx_disables_it() -> None:
    policy = TrafficPolicy(outlier_detection=OutlierDetection(consecutive_5xx_errors=0))
    od = cluster(one("svc", policy), "outbound|50051||svc").outlier_detection
    assert od.HasField("enforcing_consecutive_5xx") and od.enforcing_consecutive_5xx.value == 0


def test_success_rate_and_failure_percentage_come_from_extensions() -> None:
    extensions = TrafficPolicyExtensions(
        success_rate_ejection=SuccessRateEjection(
            minimum_hosts=3, request_volume=20, stdev_factor=1500, enforcing=90
        ),
        failure_percentage_ejection=FailurePercentageEjection(
            threshold=60, minimum_hosts=2, request_volume=10, enforcing=80
        ),
    )
    od = cluster(
        one("svc", TrafficPolicy(outlier_detection=OutlierDetection()), extensions=extensions),
        "outbound|50051||svc",
    ).outlier_detection
    assert od.enforcing_success_rate.value == 90
    assert (
        od.success_rate_minimum_hosts.value,
        od.success_rate_request_volume.value,
        od.success_rate_stdev_factor.value,
    ) == (3, 20, 1500)
    assert od.failure_percentage_threshold.value == 60
    assert od.enforcing_failure_percentage.value == 80
    assert (
        od.failure_percentage_minimum_hosts.value,
        od.failure_percentage_request_volume.value,
    ) == (2, 10)


def test_failure_percentage_alone_turns_detection_on_without_consecutive_errors() -> None:
    extensions = TrafficPolicyExtensions(failure_percentage_ejection=FailurePercentageEjection())
    built = cluster(one("svc", None, extensions=extensions), "outbound|50051||svc")
    od = built.outlier_detection
    assert built.HasField("outlier_detection")
    assert od.HasField("enforcing_consecutive_5xx") and od.enforcing_consecutive_5xx.value == 0
    assert od.enforcing_success_rate.value == 0
    assert (od.failure_percentage_threshold.value, od.enforcing_failure_percentage.value) == (
        85,
        100,
    )


def test_no_outlier_block_means_no_outlier_detection_or_panic_threshold() -> None:
    built = cluster(one("svc", lb(simple=SimpleLB.ROUND_ROBIN)), "outbound|50051||svc")
    assert not built.HasField("outlier_detection")
    assert not built.common_lb_config.HasField("healthy_panic_threshold")


# --- connection pool ----------------------------------------------------------------


def test_connection_pool_maps_to_thresholds_timeout_and_protocol_options() -> None:
    built = cluster(one("svc", TrafficPolicy(connection_pool=FULL_POOL)), "outbound|50051||svc")
    (thresholds,) = built.circuit_breakers.thresholds
    assert thresholds.priority == 0  # DEFAULT
    assert thresholds.max_connections.value == 10
    assert thresholds.max_pending_requests.value == 5
    assert thresholds.max_requests.value == 20
    assert thresholds.max_retries.value == 3
    assert thresholds.track_remaining
    assert not thresholds.HasField("retry_budget")
    assert (built.connect_timeout.seconds, built.connect_timeout.nanos) == (0, 250_000_000)
    common = _protocol_options(built).common_http_protocol_options
    assert common.max_requests_per_connection.value == 100
    assert common.idle_timeout.seconds == 30
    assert common.max_connection_duration.seconds == 60


def test_unset_limits_are_unlimited_as_in_istio() -> None:
    pool = ConnectionPoolSettings(tcp=TCPSettings(max_connections=4))
    (thresholds,) = cluster(
        one("svc", TrafficPolicy(connection_pool=pool)), "outbound|50051||svc"
    ).circuit_breakers.thresholds
    assert thresholds.max_connections.value == 4
    assert thresholds.max_pending_requests.value == UNLIMITED
    assert thresholds.max_requests.value == UNLIMITED
    assert thresholds.max_retries.value == UNLIMITED


def test_retry_budget_extension_is_set_on_the_default_thresholds() -> None:
    extensions = TrafficPolicyExtensions(
        retry_budget=RetryBudget(budget_percent=12.5, min_retry_concurrency=4)
    )
    built = cluster(one("svc", None, extensions=extensions), "outbound|50051||svc")
    (thresholds,) = built.circuit_breakers.thresholds
    assert thresholds.retry_budget.budget_percent.value == 12.5
    assert thresholds.retry_budget.min_retry_concurrency.value == 4
    assert thresholds.max_requests.value == UNLIMITED


def test_without_pool_or_budget_there_are_no_circuit_breakers() -> None:
    built = cluster(one("svc", None), "outbound|50051||svc")
    assert not built.HasField("circuit_breakers")
    assert built.connect_timeout.seconds == 5


def _protocol_options(built: cluster_pb2.Cluster) -> options_pb2.HttpProtocolOptions:
    options = options_pb2.HttpProtocolOptions()
    built.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(options)
    return options


@pytest.mark.parametrize(
    ("protocol", "explicit"),
    [
        ("GRPC", "http2_protocol_options"),
        ("HTTP2", "http2_protocol_options"),
        ("HTTP", "http_protocol_options"),
        ("TCP", None),
        ("", None),
    ],
)
def test_upstream_protocol_follows_the_port_protocol(protocol: str, explicit: str | None) -> None:
    entry = service("svc", endpoint("10.0.0.1"), ports=(ServicePort(7000, "p", protocol),))
    options = _protocol_options(
        cluster(run(MeshConfig(service_entries=(entry,))), "outbound|7000||svc")
    )
    if explicit is None:
        assert options.HasField("use_downstream_protocol_config")
    else:
        assert options.explicit_http_config.WhichOneof("protocol_config") == explicit


# --- degraded, hash policies, determinism --------------------------------------------


def test_degraded_service_marks_every_cluster_including_subsets() -> None:
    entry = service("svc", endpoint("10.0.0.1", labels={"v": "1"}), degraded=True)
    other = service("fine", endpoint("10.0.0.2"))
    config = MeshConfig(
        service_entries=(entry, other),
        destination_rules=(rule("svc", None, Subset("v1", {"v": "1"})),),
    )
    resources = run(config)
    for name in ("outbound|50051||svc", "outbound|50051|v1|svc"):
        assert dict(cluster(resources, name).metadata.filter_metadata["meshlib"]) == {
            "degraded": True
        }
    assert not cluster(resources, "outbound|50051||fine").HasField("metadata")


def _hash_config(hashing: ConsistentHash) -> MeshConfig:
    dr = rule(
        "svc",
        lb(consistent_hash=hashing),
        Subset("v2", {"v": "2"}, lb(consistent_hash=ConsistentHash(http_header_name="x-v2"))),
    )
    return MeshConfig(
        service_entries=(service("svc", endpoint("10.0.0.1")),), destination_rules=(dr,)
    )


def test_hash_policies_for_each_hash_key() -> None:
    header = hash_policy_for(
        _hash_config(ConsistentHash(http_header_name="x-user")).destination_rules,
        "svc",
        50051,
        "",
    )
    assert header is not None and header.header.header_name == "x-user"
    cookie_key = ConsistentHash(http_cookie=HashCookie(name="sid", path="/", ttl_s=60))
    cookie = hash_policy_for(_hash_config(cookie_key).destination_rules, "svc", 50051, "")
    assert cookie is not None
    assert (cookie.cookie.name, cookie.cookie.path, cookie.cookie.ttl.seconds) == ("sid", "/", 60)
    source = hash_policy_for(
        _hash_config(ConsistentHash(use_source_ip=True)).destination_rules,
        "svc",
        50051,
        "",
    )
    assert source is not None and source.connection_properties.source_ip
    query = hash_policy_for(
        _hash_config(ConsistentHash(http_query_parameter_name="u")).destination_rules,
        "svc",
        50051,
        "",
    )
    assert query is not None and query.query_parameter.name == "u"


def test_hash_policy_follows_the_subset_and_is_none_without_consistent_hash() -> None:
    rules = _hash_config(ConsistentHash(http_header_name="x-user")).destination_rules
    subset = hash_policy_for(rules, "svc", 50051, "v2")
    assert subset is not None and subset.header.header_name == "x-v2"
    assert hash_policy_for(rules, "other", 50051, "") is None
    assert hash_policy_for((), "svc", 50051, "") is None


def test_translation_is_deterministic() -> None:
    config, workloads = subset_mesh()
    dr = replace(
        config.destination_rules[0],
        traffic_policy=TrafficPolicy(connection_pool=FULL_POOL, outlier_detection=FULL_OUTLIER),
    )
    config = replace(config, destination_rules=(dr,))

    def serialized() -> dict[str, dict[str, bytes]]:
        resources = translate(config, workloads, NodeInfo(id="n", locality="r1/z1"))
        return {
            url: {name: m.SerializeToString(deterministic=True) for name, m in by_name.items()}
            for url, by_name in resources.items()
        }

    assert serialized() == serialized()


def test_rule_for_an_unknown_host_changes_nothing() -> None:
    config = MeshConfig(
        service_entries=(service("svc", endpoint("10.0.0.1")),),
        destination_rules=(DestinationRule(name="x", namespace="default", host="elsewhere"),),
    )
    assert sorted(run(config)[CLUSTER_TYPE_URL]) == ["outbound|50051||svc"]
