"""DestinationRule: every supported field lands in the model; everything else is refused
with file#document, field path and a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.model import Source
from controlplane.traffic_model import (
    ConnectionPoolSettings,
    ConsistentHash,
    DestinationRule,
    HashAlgorithm,
    HashCookie,
    HTTPSettings,
    LoadBalancerSettings,
    LocalityDistribute,
    LocalityFailover,
    LocalityLbSetting,
    OutlierDetection,
    PortTrafficPolicy,
    SimpleLB,
    Subset,
    TCPSettings,
    TrafficPolicy,
)
from tests.controlplane.config_cases import (
    SERVICES,
    assert_refused,
    destination_rule,
    documents,
    load_text,
    service_entry,
)

TP = "spec.trafficPolicy"
LB = f"{TP}.loadBalancer"
CH = f"{LB}.consistentHash"
LOC = f"{LB}.localityLbSetting"
POOL = f"{TP}.connectionPool"
OD = f"{TP}.outlierDetection"


def dr(body: str) -> str:
    return destination_rule(f"host: svc\n{body}")


def policy(body: str) -> str:
    return dr(f"trafficPolicy: {{{body}}}")


def lb(body: str) -> str:
    return policy(f"loadBalancer: {{{body}}}")


def hashed(body: str) -> str:
    return lb(f"consistentHash: {{{body}}}")


def locality(body: str) -> str:
    return lb(f"localityLbSetting: {{{body}}}")


def pool(body: str) -> str:
    return policy(f"connectionPool: {{{body}}}")


def outlier(body: str) -> str:
    return policy(f"outlierDetection: {{{body}}}")


DNS_SERVICE = service_entry(
    "hosts: [svc]\nports: [{number: 8080, name: http, protocol: HTTP}]\nresolution: DNS\n"
    "endpoints: [{address: svc.example.com, labels: {region: us}}]",
)

# (id, YAML, document, field path, message fragment; {file} is the file's path)
# fmt: off
BAD_DESTINATION_RULES: list[tuple[str, str, int, str, str]] = [
    # --- spec
    ("host-missing", destination_rule("subsets: []"), 1, "spec.host", "is required"),
    ("host-wildcard", destination_rule("host: '*.svc'"), 1,
     "spec.host", "wildcard host '*.svc' is not supported yet"),
    ("host-list", destination_rule("host: [svc]"), 1, "spec.host", "must be a string, got a list"),
    ("export-to", dr("exportTo: ['.']"), 1, "spec.exportTo", "field is not supported yet"),
    ("workload-selector", dr("workloadSelector: {matchLabels: {app: a}}"), 1,
     "spec.workloadSelector", "field is not supported yet"),
    ("spec-unknown", dr("subset: []"), 1, "spec.subset", "unknown field; did you mean 'subsets'?"),
    # --- trafficPolicy
    ("tls", policy("tls: {mode: ISTIO_MUTUAL, credentialName: x}"), 1, f"{TP}.tls.credentialName",
     "field is not supported yet"),
    ("tunnel", policy("tunnel: {protocol: CONNECT}"), 1, f"{TP}.tunnel", "not supported yet"),
    ("retry-budget-field", policy("retryBudget: {percent: {value: 20}}"), 1,
     f"{TP}.retryBudget", "use the annotation meshlib.dev/retry-budget"),
    ("policy-unknown", policy("loadBalancing: {}"), 1,
     f"{TP}.loadBalancing", "unknown field; did you mean 'loadBalancer'?"),
    # --- loadBalancer
    ("simple-unknown", lb("simple: FASTEST"), 1, f"{LB}.simple", "unknown load balancer 'FASTEST'"),
    ("simple-passthrough", lb("simple: PASSTHROUGH"), 1, f"{LB}.simple",
     "PASSTHROUGH is not supported: proxyless clients have no original destination to pass "
     "through to (use ROUND_ROBIN, LEAST_REQUEST, RANDOM or consistentHash)"),
    ("subset-port-passthrough",
     dr("subsets: [{name: v1, trafficPolicy: {portLevelSettings: [{port: {number: 8080}, "
        "loadBalancer: {simple: PASSTHROUGH}}]}}]"), 1,
     "spec.subsets[0].trafficPolicy.portLevelSettings[0].loadBalancer.simple",
     "PASSTHROUGH is not supported: proxyless clients have no original destination"),
    ("dns-subset-selects-nothing",
     documents(DNS_SERVICE, dr("subsets: [{name: eu, labels: {region: eu}}]")), 2,
     "spec.subsets[0].labels",
     "subset 'eu' selects no endpoint of ServiceEntry conference/svc at {file}#1: with "
     "resolution DNS a subset's cluster resolves one endpoint, so its labels must match one"),
    ("simple-and-hash", lb("simple: RANDOM, consistentHash: {useSourceIp: true}"), 1,
     CH, "cannot be combined with simple"),
    ("warmup-with-random", lb("simple: RANDOM, warmupDurationSecs: 30s"), 1,
     f"{LB}.warmupDurationSecs", "works only with ROUND_ROBIN or LEAST_REQUEST"),
    ("warmup-number", lb("warmupDurationSecs: 30"), 1,
     f"{LB}.warmupDurationSecs", "must be a duration string"),
    ("hash-no-key", hashed("ringHash: {minimumRingSize: 1024}"), 1,
     CH, "must set one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName"),
    ("hash-two-keys", hashed("httpHeaderName: x-user, useSourceIp: true"), 1,
     f"{CH}.useSourceIp", "cannot be combined with httpHeaderName"),
    ("hash-source-ip-false", hashed("useSourceIp: false"), 1,
     f"{CH}.useSourceIp", "must be true when set"),
    ("hash-ring-and-maglev", hashed("useSourceIp: true, ringHash: {}, maglev: {}"), 1,
     f"{CH}.maglev", "cannot be combined with ringHash"),
    ("hash-deprecated-ring-and-maglev",
     hashed("useSourceIp: true, minimumRingSize: 64, maglev: {tableSize: 65537}"), 1,
     f"{CH}.minimumRingSize", "cannot be combined with maglev"),
    ("maglev-not-prime", hashed("useSourceIp: true, maglev: {tableSize: 65536}"), 1,
     f"{CH}.maglev.tableSize", "must be a prime number, got 65536"),
    ("ring-size-zero", hashed("useSourceIp: true, ringHash: {minimumRingSize: 0}"), 1,
     f"{CH}.ringHash.minimumRingSize", "must be between 1 and 8388608, got 0"),
    ("cookie-name-missing", hashed("httpCookie: {ttl: 10s}"), 1,
     f"{CH}.httpCookie.name", "is required"),
    ("cookie-ttl-bad", hashed("httpCookie: {name: s, ttl: forever}"), 1,
     f"{CH}.httpCookie.ttl", "invalid duration 'forever'"),
    ("cookie-attributes", hashed("httpCookie: {name: s, attributes: []}"), 1,
     f"{CH}.httpCookie.attributes", "field is not supported yet"),
    ("lb-warmup-object", lb("warmup: {duration: 10s}"), 1,
     f"{LB}.warmup", "field is not supported yet"),
    # --- localityLbSetting
    ("distribute-and-failover",
     locality("distribute: [{from: a/*, to: {a/*: 100}}], failover: [{from: a, to: b}]"), 1,
     f"{LOC}.failover", "cannot be combined with distribute"),
    ("distribute-sum", locality("distribute: [{from: 'us-east/*', to: {'us-east/*': 80,"
                                " 'us-west/*': 10}}]"), 1,
     f"{LOC}.distribute[0].to", "weights must sum to 100, got 90"),
    ("distribute-weight-zero", locality("distribute: [{from: a, to: {a: 100, b: 0}}]"), 1,
     f"{LOC}.distribute[0].to.b", "must be between 1 and 100, got 0"),
    ("distribute-bad-wildcard", locality("distribute: [{from: '*/zone', to: {a: 100}}]"), 1,
     f"{LOC}.distribute[0].from", "a wildcard '*' may only be the whole last part"),
    ("distribute-too-deep", locality("distribute: [{from: a, to: {a/b/c/d: 100}}]"), 1,
     f'{LOC}.distribute[0].to["a/b/c/d"]', "must be 'region', 'region/zone' or"),
    ("failover-same", locality("failover: [{from: us-east, to: us-east}]"), 1,
     f"{LOC}.failover[0].to", "must differ from 'from'"),
    ("failover-zone", locality("failover: [{from: us-east/a, to: us-west}]"), 1,
     f"{LOC}.failover[0].from", "must be a region"),
    ("failover-priority-number", locality("failoverPriority: [1]"), 1,
     f"{LOC}.failoverPriority[0]", "must be a string, got integer 1"),
    ("locality-enabled-string", locality("enabled: 'yes'"), 1,
     f"{LOC}.enabled", 'must be true or false, got string "yes"'),
    # --- connectionPool
    ("pool-empty", pool(""), 1, POOL, "must set tcp, http or both"),
    ("tcp-keepalive", pool("tcp: {tcpKeepalive: {time: 1s}}"), 1,
     f"{POOL}.tcp.tcpKeepalive", "field is not supported yet"),
    ("tcp-max-negative", pool("tcp: {maxConnections: -1}"), 1,
     f"{POOL}.tcp.maxConnections", "must be between 0 and 2147483647, got -1"),
    ("tcp-connect-timeout-zero", pool("tcp: {connectTimeout: 0ms}"), 1,
     f"{POOL}.tcp.connectTimeout", "must be at least 1ms"),
    ("http-h2-upgrade", pool("http: {h2UpgradePolicy: UPGRADE}"), 1,
     f"{POOL}.http.h2UpgradePolicy", "field is not supported yet"),
    ("http-client-protocol", pool("http: {useClientProtocol: true}"), 1,
     f"{POOL}.http.useClientProtocol", "field is not supported yet"),
    ("http-max-streams", pool("http: {maxConcurrentStreams: 10}"), 1,
     f"{POOL}.http.maxConcurrentStreams", "field is not supported yet"),
    ("http-pending-string", pool("http: {http1MaxPendingRequests: many}"), 1,
     f"{POOL}.http.http1MaxPendingRequests", 'must be an integer, got string "many"'),
    ("http-idle-timeout", pool("http: {idleTimeout: 1d}"), 1,
     f"{POOL}.http.idleTimeout", "invalid duration '1d'"),
    # --- outlierDetection
    ("consecutive-errors", outlier("consecutiveErrors: 5"), 1,
     f"{OD}.consecutiveErrors", "deprecated field; use consecutive5xxErrors"),
    ("max-ejection-over", outlier("maxEjectionPercent: 101"), 1,
     f"{OD}.maxEjectionPercent", "must be between 0 and 100, got 101"),
    ("min-health-negative", outlier("minHealthPercent: -5"), 1,
     f"{OD}.minHealthPercent", "must be between 0 and 100, got -5"),
    ("interval-zero", outlier("interval: 0s"), 1, f"{OD}.interval", "must be at least 1ms"),
    ("base-ejection-number", outlier("baseEjectionTime: 30"), 1,
     f"{OD}.baseEjectionTime", "must be a duration string"),
    ("local-origin-without-split", outlier("consecutiveLocalOriginFailures: 3"), 1,
     f"{OD}.consecutiveLocalOriginFailures", "needs splitExternalLocalOriginErrors: true"),
    ("outlier-unknown", outlier("consecutive5xx: 3"), 1,
     f"{OD}.consecutive5xx", "unknown field; did you mean 'consecutive5xxErrors'?"),
    # --- portLevelSettings
    ("port-duplicate", policy("portLevelSettings: [{port: {number: 80}, loadBalancer:"
                              " {simple: RANDOM}}, {port: {number: 80}}]"), 1,
     f"{TP}.portLevelSettings[1].port", "duplicate port 80"),
    ("port-missing", policy("portLevelSettings: [{loadBalancer: {simple: RANDOM}}]"), 1,
     f"{TP}.portLevelSettings[0].port", "is required"),
    ("port-tls", policy("portLevelSettings: [{port: {number: 80}, tls: {mode: SIMPLE}}]"), 1,
     f"{TP}.portLevelSettings[0].tls.caCertificates", "is required with mode SIMPLE"),
    ("port-name", policy("portLevelSettings: [{port: {name: http}}]"), 1,
     f"{TP}.portLevelSettings[0].port.name", "unknown field"),
    ("port-nested-levels",
     policy("portLevelSettings: [{port: {number: 80}, portLevelSettings: []}]"), 1,
     f"{TP}.portLevelSettings[0].portLevelSettings", "unknown field"),
    # --- subsets
    ("subset-name-missing", dr("subsets: [{labels: {version: v1}}]"), 1,
     "spec.subsets[0].name", "is required"),
    ("subset-name-invalid", dr("subsets: [{name: V_1}]"), 1,
     "spec.subsets[0].name", "must be a DNS-1123 label"),
    ("subset-duplicate", dr("subsets: [{name: v1}, {name: v1}]"), 1,
     "spec.subsets[1].name", "duplicate subset 'v1'"),
    ("subset-label-number", dr("subsets: [{name: v1, labels: {version: 1}}]"), 1,
     "spec.subsets[0].labels.version", "must be a string, got integer 1 (quote it)"),
    ("subset-policy-bad", dr("subsets: [{name: v1, trafficPolicy: {loadBalancer:"
                             " {simple: LEAST}}}]"), 1,
     "spec.subsets[0].trafficPolicy.loadBalancer.simple", "unknown load balancer 'LEAST'"),
    ("subset-unknown-field", dr("subsets: [{name: v1, selector: {}}]"), 1,
     "spec.subsets[0].selector", "unknown field"),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "document", "path", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_DESTINATION_RULES],
)
def test_bad_destination_rule_is_refused_with_place_and_reason(
    tmp_path: Path, text: str, document: int, path: str, message: str
) -> None:
    file = tmp_path / "mesh.yaml"
    assert_refused(file, text, document, path, message.replace("{file}", str(file)))


def test_table_is_big_enough() -> None:
    assert len(BAD_DESTINATION_RULES) >= 50
    assert len({case[0] for case in BAD_DESTINATION_RULES}) == len(BAD_DESTINATION_RULES)


def test_two_rules_for_one_host_name_both(tmp_path: Path) -> None:
    file = tmp_path / "mesh.yaml"
    assert_refused(
        file,
        documents(dr("subsets: [{name: v1}]"), destination_rule("host: svc", name="again")),
        2,
        "spec.host",
        f"host 'svc' already has DestinationRule conference/dr at {file}#1 "
        "(one DestinationRule per host)",
    )


def load_rule(tmp_path: Path, text: str) -> DestinationRule:
    config = load_text(tmp_path / "mesh.yaml", documents(SERVICES, text))
    [rule] = config.destination_rules
    return rule


def load_policy(tmp_path: Path, body: str) -> TrafficPolicy | None:
    return load_rule(tmp_path, policy(body)).traffic_policy


def test_subsets_with_per_subset_and_per_port_policies(tmp_path: Path) -> None:
    rule = load_rule(
        tmp_path,
        destination_rule(
            """
            host: multi
            trafficPolicy:
              loadBalancer: {simple: LEAST_CONN}
              portLevelSettings:
              - port: {number: 9090}
                loadBalancer: {simple: RANDOM}
                connectionPool: {http: {http2MaxRequests: 50}}
                outlierDetection: {consecutive5xxErrors: 3}
            subsets:
            - name: v1
              labels: {version: v1}
            - name: v2
              labels: {version: v2, track: canary}
              trafficPolicy:
                loadBalancer: {simple: ROUND_ROBIN, warmupDurationSecs: 60s}
                portLevelSettings:
                - port: {number: 8080}
                  loadBalancer: {simple: RANDOM}
            """,
            name="multi-rule",
        ),
    )
    assert rule == DestinationRule(
        name="multi-rule",
        namespace="conference",
        host="multi",
        traffic_policy=TrafficPolicy(
            load_balancer=LoadBalancerSettings(simple=SimpleLB.LEAST_REQUEST),
            port_level_settings=(
                PortTrafficPolicy(
                    port=9090,
                    load_balancer=LoadBalancerSettings(simple=SimpleLB.RANDOM),
                    connection_pool=ConnectionPoolSettings(
                        http=HTTPSettings(http2_max_requests=50)
                    ),
                    outlier_detection=OutlierDetection(consecutive_5xx_errors=3),
                ),
            ),
        ),
        subsets=(
            Subset("v1", {"version": "v1"}),
            Subset(
                "v2",
                {"version": "v2", "track": "canary"},
                TrafficPolicy(
                    load_balancer=LoadBalancerSettings(
                        simple=SimpleLB.ROUND_ROBIN, warmup_duration_s=60.0
                    ),
                    port_level_settings=(
                        PortTrafficPolicy(
                            8080, load_balancer=LoadBalancerSettings(simple=SimpleLB.RANDOM)
                        ),
                    ),
                ),
            ),
        ),
        source=Source(str(tmp_path / "mesh.yaml"), 3),
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "httpHeaderName: x-user, ringHash: {minimumRingSize: 4096}",
            ConsistentHash(http_header_name="x-user", minimum_ring_size=4096),
            id="header-ring-hash",
        ),
        pytest.param(
            "httpCookie: {name: session, path: /, ttl: 0s}, maglev: {tableSize: 65537}",
            ConsistentHash(
                http_cookie=HashCookie("session", "/", 0.0),
                algorithm=HashAlgorithm.MAGLEV,
                maglev_table_size=65537,
            ),
            id="cookie-maglev",
        ),
        pytest.param(
            "useSourceIp: true, minimumRingSize: 1024",
            ConsistentHash(use_source_ip=True, minimum_ring_size=1024),
            id="source-ip-deprecated-ring-size",
        ),
        pytest.param(
            "httpQueryParameterName: user, maglev: {}",
            ConsistentHash(http_query_parameter_name="user", algorithm=HashAlgorithm.MAGLEV),
            id="query-maglev-default-size",
        ),
        pytest.param(
            "httpCookie: {name: s, ttl: 1h}",
            ConsistentHash(http_cookie=HashCookie("s", "", 3600.0)),
            id="cookie-default-ring",
        ),
    ],
)
def test_consistent_hash(tmp_path: Path, body: str, expected: ConsistentHash) -> None:
    assert load_policy(tmp_path, f"loadBalancer: {{consistentHash: {{{body}}}}}") == TrafficPolicy(
        load_balancer=LoadBalancerSettings(consistent_hash=expected)
    )


def test_locality_settings(tmp_path: Path) -> None:
    distribute = load_policy(
        tmp_path,
        "loadBalancer: {simple: ROUND_ROBIN, localityLbSetting: {distribute: ["
        "{from: 'us-east/zone-a/*', to: {'us-east/zone-a/*': 80, 'us-east/zone-b/*': 20}},"
        "{from: 'us-west/*', to: {'us-west/*': 100}}]}}",
    )
    assert distribute is not None and distribute.load_balancer == LoadBalancerSettings(
        simple=SimpleLB.ROUND_ROBIN,
        locality_lb_setting=LocalityLbSetting(
            distribute=(
                LocalityDistribute(
                    "us-east/zone-a/*", {"us-east/zone-a/*": 80, "us-east/zone-b/*": 20}
                ),
                LocalityDistribute("us-west/*", {"us-west/*": 100}),
            )
        ),
    )
    failover = load_policy(
        tmp_path,
        "loadBalancer: {localityLbSetting: {enabled: true,"
        " failover: [{from: us-east, to: us-west}],"
        " failoverPriority: [topology.istio.io/network, topology.kubernetes.io/zone]}},"
        " outlierDetection: {consecutive5xxErrors: 2}",
    )
    assert failover is not None and failover.load_balancer == LoadBalancerSettings(
        locality_lb_setting=LocalityLbSetting(
            failover=(LocalityFailover("us-east", "us-west"),),
            failover_priority=("topology.istio.io/network", "topology.kubernetes.io/zone"),
        )
    )
    off = load_policy(tmp_path, "loadBalancer: {localityLbSetting: {enabled: false}}")
    assert off is not None and off.load_balancer == LoadBalancerSettings(
        locality_lb_setting=LocalityLbSetting(enabled=False)
    )


def test_connection_pool_and_outlier_detection(tmp_path: Path) -> None:
    result = load_policy(
        tmp_path,
        "connectionPool: {tcp: {maxConnections: 100, connectTimeout: 250ms,"
        " maxConnectionDuration: 1h}, http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000,"
        " maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 90s}},"
        " outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 3,"
        " consecutiveLocalOriginFailures: 2, splitExternalLocalOriginErrors: true,"
        " interval: 5s, baseEjectionTime: 1m, maxEjectionPercent: 50, minHealthPercent: 25}",
    )
    assert result == TrafficPolicy(
        connection_pool=ConnectionPoolSettings(
            tcp=TCPSettings(
                max_connections=100, connect_timeout_s=0.25, max_connection_duration_s=3600.0
            ),
            http=HTTPSettings(
                http1_max_pending_requests=10,
                http2_max_requests=1000,
                max_requests_per_connection=1,
                max_retries=3,
                idle_timeout_s=90.0,
            ),
        ),
        outlier_detection=OutlierDetection(
            consecutive_5xx_errors=0,
            consecutive_gateway_errors=3,
            consecutive_local_origin_failures=2,
            split_external_local_origin_errors=True,
            interval_s=5.0,
            base_ejection_time_s=60.0,
            max_ejection_percent=50,
            min_health_percent=25,
        ),
    )
    defaults = load_policy(tmp_path, "outlierDetection: {}, connectionPool: {tcp: {}}")
    assert defaults == TrafficPolicy(
        connection_pool=ConnectionPoolSettings(tcp=TCPSettings()),
        outlier_detection=OutlierDetection(),
    )


def test_unspecified_simple_means_default(tmp_path: Path) -> None:
    assert load_policy(tmp_path, "loadBalancer: {simple: UNSPECIFIED}") == TrafficPolicy(
        load_balancer=LoadBalancerSettings()
    )
