"""VirtualService: every supported field lands in the model; everything else is refused
with file#document, field path and a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.model import Source
from controlplane.traffic_model import (
    Destination,
    FaultAbort,
    FaultDelay,
    HeaderOperations,
    Headers,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPMirror,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    MatchKind,
    RedirectPortPolicy,
    RegexRewrite,
    StringMatch,
    VirtualService,
)
from tests.controlplane.config_cases import (
    SERVICES,
    assert_refused,
    destination_rule,
    documents,
    load_text,
    virtual_service,
)

TO_SVC = "route: [{destination: {host: svc}}]"
SUBSETS_DR = destination_rule(
    "host: svc\nsubsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]"
)


def rule(body: str) -> str:
    """A VirtualService for `svc` with one HTTP rule written in flow style."""
    return virtual_service(f"hosts: [svc]\nhttp: [{{{body}}}]")


def routed(extra: str) -> str:
    """One rule that routes to `svc`, plus ``extra`` fields."""
    return rule(f"{TO_SVC}, {extra}")


def match(block: str) -> str:
    return routed(f"match: [{block}]")


def with_services(vs: str) -> str:
    """SERVICES (documents 1 and 2) and the subsets rule (3), then ``vs`` (document 4)."""
    return documents(SERVICES, SUBSETS_DR, vs)


H0 = "spec.http[0]"
SPLIT = rule(
    "route: [{destination: {host: svc}, weight: 50},"
    " {destination: {host: multi, port: {number: 8080}}, weight: 50}]"
)
HASH_SVC = destination_rule(
    "host: svc\ntrafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}"
)
HASH_MULTI = destination_rule(
    "host: multi\ntrafficPolicy: {portLevelSettings: [{port: {number: 8080},"
    " loadBalancer: {consistentHash: {httpCookie: {name: sid}}}}]}",
    name="multi-dr",
)
HASH_MULTI_9090 = HASH_MULTI.replace("8080", "9090")
# (id, YAML, document, field path, message fragment)
# fmt: off
BAD_VIRTUAL_SERVICES: list[tuple[str, str, int, str, str]] = [
    # --- destinations against DestinationRules
    ("split-hash-keys-differ", documents(SERVICES, HASH_SVC, HASH_MULTI, SPLIT), 5,
     f"{H0}.route",
     "the destinations hash on different consistentHash keys: route[0] hashes on "
     "httpHeaderName 'x-user' (DestinationRule conference/dr); route[1] hashes on httpCookie "
     "'sid' (DestinationRule conference/multi-dr); one route hashes one way, so give their "
     "DestinationRules the same key"),
    # --- spec
    ("hosts-missing", virtual_service(f"http: [{{{TO_SVC}}}]"), 1, "spec.hosts", "is required"),
    ("hosts-empty", virtual_service(f"hosts: []\nhttp: [{{{TO_SVC}}}]"), 1,
     "spec.hosts", "must not be empty"),
    ("host-wildcard", virtual_service(f"hosts: ['*.svc']\nhttp: [{{{TO_SVC}}}]"), 1,
     "spec.hosts[0]", "wildcard host '*.svc' is not supported yet"),
    ("host-duplicate", virtual_service(f"hosts: [svc, svc]\nhttp: [{{{TO_SVC}}}]"), 1,
     "spec.hosts[1]", "duplicate host 'svc'"),
    ("http-missing", virtual_service("hosts: [svc]"), 1, "spec.http", "is required"),
    ("gateway-other", virtual_service(f"hosts: [svc]\ngateways: [mesh, ingress]\n"
                                      f"http: [{{{TO_SVC}}}]"), 1,
     "spec.gateways[1]", "gateway 'ingress' is not supported yet (only \"mesh\")"),
    ("tls-routes", virtual_service(f"hosts: [svc]\ntls: []\nhttp: [{{{TO_SVC}}}]"), 1,
     "spec.tls", "field is not supported yet"),
    ("tcp-routes", virtual_service(f"hosts: [svc]\ntcp: []\nhttp: [{{{TO_SVC}}}]"), 1,
     "spec.tcp", "field is not supported yet"),
    ("export-to", virtual_service(f"hosts: [svc]\nexportTo: ['.']\nhttp: [{{{TO_SVC}}}]"), 1,
     "spec.exportTo", "field is not supported yet"),
    ("spec-unknown", virtual_service(f"hosts: [svc]\nhttps: []\nhttp: [{{{TO_SVC}}}]"), 1,
     "spec.https", "unknown field; did you mean 'http'?"),
    # --- rule shape
    ("no-action", rule("name: a"), 1, H0, "must set one of route, redirect, directResponse"),
    ("route-and-redirect", routed("redirect: {uri: /b}"), 1,
     f"{H0}.redirect", "cannot be combined with route"),
    ("redirect-and-direct", rule("redirect: {uri: /b}, directResponse: {status: 200}"), 1,
     f"{H0}.directResponse", "cannot be combined with redirect"),
    ("redirect-with-rewrite", rule("redirect: {uri: /b}, rewrite: {uri: /c}"), 1,
     f"{H0}.rewrite", "needs route (a rule with redirect forwards nothing)"),
    ("direct-with-retries", rule("directResponse: {status: 200}, retries: {attempts: 1}"), 1,
     f"{H0}.retries", "needs route (a rule with directResponse forwards nothing)"),
    ("redirect-with-fault", rule("redirect: {uri: /b}, fault: {abort: {httpStatus: 500}}"), 1,
     f"{H0}.fault", "cannot be combined with redirect"),
    ("delegate", rule("delegate: {name: a}"), 1, f"{H0}.delegate", "field is not supported yet"),
    ("cors", routed("corsPolicy: {allowOrigins: []}"), 1,
     f"{H0}.corsPolicy", "field is not supported yet"),
    ("mirror-percent", routed("mirror: {host: svc}, mirrorPercent: 5"), 1,
     f"{H0}.mirrorPercent", "deprecated field; use mirrorPercentage"),
    ("rule-unknown", routed("retry: {attempts: 1}"), 1,
     f"{H0}.retry", "unknown field; did you mean 'retries'?"),
    # --- destinations and weights
    ("route-empty", rule("route: []"), 1, f"{H0}.route", "must not be empty"),
    ("destination-missing", rule("route: [{weight: 100}]"), 1,
     f"{H0}.route[0].destination", "is required"),
    ("destination-host-missing", rule("route: [{destination: {subset: v1}}]"), 1,
     f"{H0}.route[0].destination.host", "is required"),
    ("destination-host-upper", rule("route: [{destination: {host: Svc}}]"), 1,
     f"{H0}.route[0].destination.host", "host 'Svc' must be lower case"),
    ("destination-port-bare", rule("route: [{destination: {host: svc, port: 80}}]"), 1,
     f"{H0}.route[0].destination.port", "must be a mapping, got integer 80"),
    ("destination-subset-invalid", rule("route: [{destination: {host: svc, subset: V1}}]"), 1,
     f"{H0}.route[0].destination.subset", "must be a DNS-1123 label"),
    ("weight-over-100", rule("route: [{destination: {host: svc}, weight: 101}]"), 1,
     f"{H0}.route[0].weight", "must be between 0 and 100, got 101"),
    ("weight-negative", rule("route: [{destination: {host: svc}, weight: -1}]"), 1,
     f"{H0}.route[0].weight", "must be between 0 and 100, got -1"),
    ("weights-sum", rule("route: [{destination: {host: svc}, weight: 60},"
                         " {destination: {host: other}, weight: 30}]"), 1,
     f"{H0}.route", "weights must sum to 100, got 90"),
    ("weight-missing-of-two", rule("route: [{destination: {host: svc}, weight: 100},"
                                   " {destination: {host: other}}]"), 1,
     f"{H0}.route[1].weight", "is required when a rule has several destinations"),
    ("route-destination-unknown-field", rule("route: [{destination: {host: svc}, wieght: 1}]"), 1,
     f"{H0}.route[0].wieght", "unknown field; did you mean 'weight'?"),
    # --- match
    ("source-labels-list", match("{sourceLabels: [app]}"), 1,
     f"{H0}.match[0].sourceLabels", "must be a mapping, got a list"),
    ("source-labels-number", match("{sourceLabels: {version: 2}}"), 1,
     f"{H0}.match[0].sourceLabels.version", "must be a string, got integer 2"),
    ("source-labels-null", match("{sourceLabels: {app: null}}"), 1,
     f"{H0}.match[0].sourceLabels.app", "must be a string, got null"),
    ("source-labels-bad-key", match("{sourceLabels: {'a b': x}}"), 1,
     f'{H0}.match[0].sourceLabels["a b"]', "label key 'a b' is invalid"),
    ("source-labels-bad-value", match("{sourceLabels: {app: 'a b'}}"), 1,
     f"{H0}.match[0].sourceLabels.app", "label value 'a b' is invalid"),
    ("source-namespace-number", match("{sourceNamespace: 7}"), 1,
     f"{H0}.match[0].sourceNamespace", "must be a string, got integer 7"),
    ("source-namespace-bad", match("{sourceNamespace: Prod_1}"), 1,
     f"{H0}.match[0].sourceNamespace", "'Prod_1' must be a DNS-1123 label"),
    ("match-gateways", match("{gateways: [mesh]}"), 1,
     f"{H0}.match[0].gateways", "field is not supported yet"),
    ("match-stat-prefix", match("{statPrefix: a}"), 1,
     f"{H0}.match[0].statPrefix", "field is not supported yet"),
    ("uri-two-kinds", match("{uri: {exact: /a, prefix: /a}}"), 1,
     f"{H0}.match[0].uri.prefix", "cannot be combined with exact"),
    ("uri-empty-match", match("{uri: {}}"), 1,
     f"{H0}.match[0].uri", "must set one of exact, prefix, regex"),
    ("uri-bad-regex", match("{uri: {regex: '/a(b'}}"), 1,
     f"{H0}.match[0].uri.regex", "invalid RE2 regex '/a(b': missing )"),
    ("uri-perl-lookahead", match("{uri: {regex: '/a(?=b)'}}"), 1,
     f"{H0}.match[0].uri.regex", "invalid RE2 regex"),
    ("uri-unknown-kind", match("{uri: {suffix: .png}}"), 1,
     f"{H0}.match[0].uri.suffix", "unknown field"),
    ("header-bad-name", match("{headers: {'x user': {exact: a}}}"), 1,
     f'{H0}.match[0].headers["x user"]', "is not a valid HTTP header name"),
    ("header-duplicate-case", match("{headers: {X-A: {exact: a}, x-a: {exact: b}}}"), 1,
     f"{H0}.match[0].headers.x-a", "duplicate header 'x-a'"),
    ("header-null", match("{headers: {x-a: null}}"), 1,
     f"{H0}.match[0].headers.x-a", "must be a string match"),
    ("query-prefix", match("{queryParams: {q: {prefix: a}}}"), 1,
     f"{H0}.match[0].queryParams.q.prefix", "prefix match is not supported here"),
    ("method-present", match("{method: {}}"), 1,
     f"{H0}.match[0].method", "must set one of exact, prefix, regex"),
    ("ignore-case-string", match("{ignoreUriCase: 'yes'}"), 1,
     f"{H0}.match[0].ignoreUriCase", 'must be true or false, got string "yes"'),
    ("ignore-case-regex", match("{uri: {regex: '/a.*'}, ignoreUriCase: true}"), 1,
     f"{H0}.match[0].ignoreUriCase", "has no effect on a regex uri match"),
    ("match-port", match("{port: 0}"), 1,
     f"{H0}.match[0].port", "must be between 1 and 65535, got 0"),
    # --- redirect, direct response, rewrite
    ("redirect-code", rule("redirect: {uri: /b, redirectCode: 304}"), 1,
     f"{H0}.redirect.redirectCode", "must be one of 301, 302, 303, 307, 308, got 304"),
    ("redirect-port-and-derive", rule("redirect: {port: 8443, derivePort: FROM_REQUEST_PORT}"), 1,
     f"{H0}.redirect.derivePort", "cannot be combined with port"),
    ("redirect-derive-unknown", rule("redirect: {derivePort: SAME}"), 1,
     f"{H0}.redirect.derivePort", "unknown derivePort 'SAME'"),
    ("redirect-empty", rule("redirect: {redirectCode: 302}"), 1,
     f"{H0}.redirect", "must set at least one of uri, authority, port, derivePort, scheme"),
    ("direct-status-low", rule("directResponse: {status: 100}"), 1,
     f"{H0}.directResponse.status", "must be between 200 and 599, got 100"),
    ("direct-status-missing", rule("directResponse: {body: {string: hi}}"), 1,
     f"{H0}.directResponse.status", "is required"),
    ("direct-body-both", rule("directResponse: {status: 200, body: {string: a, bytes: YQ==}}"),
     1, f"{H0}.directResponse.body.bytes", "cannot be combined with string"),
    ("direct-body-base64", rule("directResponse: {status: 200, body: {bytes: '!!'}}"), 1,
     f"{H0}.directResponse.body.bytes", "must be base64"),
    ("rewrite-uri-and-regex",
     routed("rewrite: {uri: /a, uriRegexRewrite: {match: '^/b', rewrite: /c}}"), 1,
     f"{H0}.rewrite.uriRegexRewrite", "cannot be combined with uri"),
    ("rewrite-regex-bad", routed("rewrite: {uriRegexRewrite: {match: '(', rewrite: /c}}"), 1,
     f"{H0}.rewrite.uriRegexRewrite.match", "invalid RE2 regex"),
    ("rewrite-empty", routed("rewrite: {}"), 1,
     f"{H0}.rewrite", "must set at least one of uri, authority, uriRegexRewrite"),
    # --- timeout, retries, fault
    ("timeout-number", routed("timeout: 5"), 1,
     f"{H0}.timeout", 'must be a duration string like "1s"'),
    ("timeout-bad-unit", routed("timeout: 5 seconds"), 1,
     f"{H0}.timeout", "invalid duration '5 seconds'"),
    ("timeout-negative", routed("timeout: -1s"), 1,
     f"{H0}.timeout", "duration '-1s' must not be negative"),
    ("timeout-sub-ms", routed("timeout: 1500us"), 1,
     f"{H0}.timeout", "must be a whole number of milliseconds"),
    ("retries-attempts-missing", routed("retries: {perTryTimeout: 1s}"), 1,
     f"{H0}.retries.attempts", "is required"),
    ("retries-attempts-negative", routed("retries: {attempts: -1}"), 1,
     f"{H0}.retries.attempts", "must be between 0 and 2147483647, got -1"),
    ("retries-per-try-zero", routed("retries: {attempts: 2, perTryTimeout: 0s}"), 1,
     f"{H0}.retries.perTryTimeout", "must be at least 1ms, got '0s'"),
    ("retry-on-unknown", routed("retries: {attempts: 2, retryOn: '5xx,timeout'}"), 1,
     f"{H0}.retries.retryOn", "unknown retry condition 'timeout'"),
    ("retry-on-empty-part", routed("retries: {attempts: 2, retryOn: '5xx,,reset'}"), 1,
     f"{H0}.retries.retryOn", "empty condition in '5xx,,reset'"),
    ("retry-backoff", routed("retries: {attempts: 2, backoff: 1s}"), 1,
     f"{H0}.retries.backoff", "field is not supported yet"),
    ("fault-empty", routed("fault: {}"), 1, f"{H0}.fault", "must set delay, abort or both"),
    ("fault-delay-missing-fixed", routed("fault: {delay: {percentage: {value: 5}}}"), 1,
     f"{H0}.fault.delay.fixedDelay", "is required"),
    ("fault-delay-exponential", routed("fault: {delay: {exponentialDelay: 1s}}"), 1,
     f"{H0}.fault.delay.exponentialDelay", "field is not supported yet"),
    ("fault-delay-percent", routed("fault: {delay: {fixedDelay: 1s, percent: 5}}"), 1,
     f"{H0}.fault.delay.percent", "deprecated field; use percentage"),
    ("fault-percentage-over", routed("fault: {delay: {fixedDelay: 1s, percentage: {value: 101}}}"),
     1, f"{H0}.fault.delay.percentage.value", "must be between 0 and 100, got 101"),
    ("fault-abort-none", routed("fault: {abort: {percentage: {value: 5}}}"), 1,
     f"{H0}.fault.abort", "must set one of httpStatus, grpcStatus"),
    ("fault-abort-both", routed("fault: {abort: {httpStatus: 503, grpcStatus: UNAVAILABLE}}"), 1,
     f"{H0}.fault.abort.grpcStatus", "cannot be combined with httpStatus"),
    ("fault-abort-grpc-number", routed("fault: {abort: {grpcStatus: '14'}}"), 1,
     f"{H0}.fault.abort.grpcStatus", "unknown gRPC status '14' (use a code name"),
    ("fault-abort-http-range", routed("fault: {abort: {httpStatus: 600}}"), 1,
     f"{H0}.fault.abort.httpStatus", "must be between 200 and 599, got 600"),
    ("fault-abort-http2", routed("fault: {abort: {http2Error: REFUSED_STREAM}}"), 1,
     f"{H0}.fault.abort.http2Error", "field is not supported yet"),
    # --- mirrors and headers
    ("mirror-and-mirrors", routed("mirror: {host: a}, mirrors: [{destination: {host: b}}]"), 1,
     f"{H0}.mirrors", "cannot be combined with mirror"),
    ("mirror-percentage-alone", routed("mirrorPercentage: {value: 5}"), 1,
     f"{H0}.mirrorPercentage", "needs mirror"),
    ("mirror-percentage-plain", routed("mirror: {host: a}, mirrorPercentage: 5"), 1,
     f"{H0}.mirrorPercentage", "must be a mapping, got integer 5"),
    ("mirrors-no-destination", routed("mirrors: [{percentage: {value: 5}}]"), 1,
     f"{H0}.mirrors[0].destination", "is required"),
    ("headers-pseudo", routed("headers: {request: {set: {':path': /x}}}"), 1,
     f'{H0}.headers.request.set[":path"]', "cannot be changed here"),
    ("headers-unknown-op", routed("headers: {response: {append: {a: b}}}"), 1,
     f"{H0}.headers.response.append", "unknown field; header operations has set, add, remove"),
    ("headers-remove-not-list", routed("headers: {request: {remove: x-a}}"), 1,
     f"{H0}.headers.request.remove", 'must be a list, got string "x-a"'),
    # --- checks against the rest of the config (the VirtualService is document 4)
    ("subset-without-rule", documents(SERVICES, virtual_service(
        "hosts: [svc]\nhttp: [{route: [{destination: {host: svc, subset: v1}}]}]")), 3,
     f"{H0}.route[0].destination.subset",
     "subset 'v1' is not defined: no DestinationRule for host 'svc'"),
    ("subset-undefined", with_services(rule("route: [{destination: {host: svc, subset: v3}}]")),
     4, f"{H0}.route[0].destination.subset", "subset 'v3' is not defined by DestinationRule "
     "conference/dr at "),
    ("mirror-subset-undefined", with_services(routed("mirror: {host: svc, subset: v9}")), 4,
     f"{H0}.mirror.subset", "subset 'v9' is not defined by DestinationRule"),
    ("port-needed", with_services(rule("route: [{destination: {host: multi}}]")), 4,
     f"{H0}.route[0].destination.port", "is required: host 'multi' has several ports (8080, 9090)"),
    ("port-undeclared", with_services(rule(
        "route: [{destination: {host: svc, port: {number: 9999}}}]")), 4,
     f"{H0}.route[0].destination.port.number",
     "port 9999 is not declared for host 'svc' (ServiceEntry ports: 8080)"),
    ("mirrors-port-needed", with_services(routed("mirrors: [{destination: {host: multi}}]")), 4,
     f"{H0}.mirrors[0].destination.port", "is required"),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "document", "path", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_VIRTUAL_SERVICES],
)
def test_bad_virtual_service_is_refused_with_place_and_reason(
    tmp_path: Path, text: str, document: int, path: str, message: str
) -> None:
    assert_refused(tmp_path / "mesh.yaml", text, document, path, message)


def test_table_is_big_enough() -> None:
    assert len(BAD_VIRTUAL_SERVICES) >= 60
    assert len({case[0] for case in BAD_VIRTUAL_SERVICES}) == len(BAD_VIRTUAL_SERVICES)


def test_two_virtual_services_for_one_host_name_both(tmp_path: Path) -> None:
    file = tmp_path / "mesh.yaml"
    first = virtual_service(f"hosts: [svc]\nhttp: [{{{TO_SVC}}}]", name="one")
    second = virtual_service(f"hosts: [other, svc]\nhttp: [{{{TO_SVC}}}]", name="two")
    assert_refused(
        file,
        documents(first, second),
        2,
        "spec.hosts[1]",
        f"host 'svc' is already routed by VirtualService conference/one at {file}#1 "
        "(one VirtualService per host)",
    )


def load_virtual_service(tmp_path: Path, vs: str) -> VirtualService:
    config = load_text(tmp_path / "mesh.yaml", with_services(vs))
    [service] = config.virtual_services
    return service


def only_rule(tmp_path: Path, body: str) -> HTTPRoute:
    [route] = load_virtual_service(tmp_path, rule(body)).http
    return route


def to(
    host: str, subset: str = "", port: int | None = None, weight: int = 0
) -> HTTPRouteDestination:
    return HTTPRouteDestination(Destination(host, subset, port), weight)


def test_canary_split(tmp_path: Path) -> None:
    service = load_virtual_service(
        tmp_path,
        virtual_service(
            """
            hosts: [svc]
            gateways: [mesh]
            http:
            - name: canary
              route:
              - destination: {host: svc, subset: v1}
                weight: 99
              - destination: {host: svc, subset: v2}
                weight: 1
            """,
            name="svc-routes",
        ),
    )
    assert service == VirtualService(
        name="svc-routes",
        namespace="conference",
        hosts=("svc",),
        http=(
            HTTPRoute(name="canary", route=(to("svc", "v1", weight=99), to("svc", "v2", weight=1))),
        ),
        source=Source(str(tmp_path / "mesh.yaml"), 4),
    )


def test_header_routing_with_every_matcher(tmp_path: Path) -> None:
    route = only_rule(
        tmp_path,
        "match: [{name: bob, uri: {regex: '(?i)/sessions/[0-9]+'},"
        " headers: {X-User: {exact: bob}, x-beta: {}, x-tier: {prefix: gold}},"
        " queryParams: {debug: {exact: '1'}, q: {regex: 'a.*'}, flag: {}},"
        " withoutHeaders: {x-test: {}}, method: {exact: GET}, scheme: {exact: http},"
        " authority: {prefix: svc}, port: 8080}, {uri: {prefix: /V2}, ignoreUriCase: true}],"
        " route: [{destination: {host: svc, subset: v2}}]",
    )
    present = StringMatch(MatchKind.PRESENT)
    assert route.match == (
        HTTPMatchRequest(
            name="bob",
            uri=StringMatch(MatchKind.REGEX, "(?i)/sessions/[0-9]+"),
            scheme=StringMatch(MatchKind.EXACT, "http"),
            method=StringMatch(MatchKind.EXACT, "GET"),
            authority=StringMatch(MatchKind.PREFIX, "svc"),
            headers={
                "x-user": StringMatch(MatchKind.EXACT, "bob"),
                "x-beta": present,
                "x-tier": StringMatch(MatchKind.PREFIX, "gold"),
            },
            query_params={
                "debug": StringMatch(MatchKind.EXACT, "1"),
                "q": StringMatch(MatchKind.REGEX, "a.*"),
                "flag": present,
            },
            without_headers={"x-test": present},
            port=8080,
        ),
        HTTPMatchRequest(uri=StringMatch(MatchKind.PREFIX, "/V2"), ignore_uri_case=True),
    )
    assert route.route == (to("svc", "v2"),)


def test_source_labels_and_namespace(tmp_path: Path) -> None:
    route = only_rule(
        tmp_path,
        "match: [{sourceLabels: {app: web, version: ''}, sourceNamespace: shop},"
        " {sourceLabels: {}, uri: {prefix: /a}}], route: [{destination: {host: svc}}]",
    )
    assert route.match == (
        HTTPMatchRequest(source_labels={"app": "web", "version": ""}, source_namespace="shop"),
        HTTPMatchRequest(uri=StringMatch(MatchKind.PREFIX, "/a")),
    )


def test_mirror_and_mirrors(tmp_path: Path) -> None:
    single = only_rule(
        tmp_path,
        f"{TO_SVC}, mirror: {{host: multi, port: {{number: 9090}}}},"
        " mirrorPercentage: {value: 12.5}",
    )
    assert single.mirrors == (HTTPMirror(Destination("multi", port=9090), 12.5),)
    several = only_rule(
        tmp_path,
        f"{TO_SVC}, mirrors: [{{destination: {{host: shadow}}}},"
        " {destination: {host: svc, subset: v2}, percentage: {value: 0.5}}]",
    )
    assert several.mirrors == (
        HTTPMirror(Destination("shadow"), 100.0),
        HTTPMirror(Destination("svc", "v2"), 0.5),
    )
    default = only_rule(tmp_path, f"{TO_SVC}, mirror: {{host: shadow}}")
    assert default.mirrors == (HTTPMirror(Destination("shadow"), 100.0),)


def test_rewrite_and_header_operations(tmp_path: Path) -> None:
    route = only_rule(
        tmp_path,
        "route: [{destination: {host: svc}, headers: {response: {set: {x-from: svc}}}}],"
        " rewrite: {uri: /v1/, authority: svc.internal},"
        " headers: {request: {set: {X-Mesh: 'on'}, add: {x-trace: ''}, remove: [cookie]},"
        " response: {remove: [server]}}",
    )
    assert route.rewrite == HTTPRewrite(uri="/v1/", authority="svc.internal")
    assert route.headers == Headers(
        request=HeaderOperations(set={"X-Mesh": "on"}, add={"x-trace": ""}, remove=("cookie",)),
        response=HeaderOperations(remove=("server",)),
    )
    assert route.route == (
        HTTPRouteDestination(
            Destination("svc"),
            0,
            Headers(response=HeaderOperations(set={"x-from": "svc"})),
        ),
    )
    regex = only_rule(
        tmp_path,
        f"{TO_SVC}, rewrite: {{uriRegexRewrite: {{match: '^/old/(.*)', rewrite: '/new/\\1'}}}}",
    )
    assert regex.rewrite == HTTPRewrite(uri_regex_rewrite=RegexRewrite("^/old/(.*)", "/new/\\1"))


def test_redirect(tmp_path: Path) -> None:
    route = only_rule(
        tmp_path,
        "redirect: {uri: /new, authority: other, scheme: https, derivePort: FROM_PROTOCOL_DEFAULT,"
        " redirectCode: 308}",
    )
    assert route == HTTPRoute(
        redirect=HTTPRedirect(
            uri="/new",
            authority="other",
            derive_port=RedirectPortPolicy.FROM_PROTOCOL_DEFAULT,
            scheme="https",
            redirect_code=308,
        )
    )
    assert only_rule(tmp_path, "redirect: {port: 8443}").redirect == HTTPRedirect(port=8443)


def test_direct_response(tmp_path: Path) -> None:
    text = only_rule(tmp_path, "directResponse: {status: 503, body: {string: 'try later'}}")
    assert text == HTTPRoute(direct_response=HTTPDirectResponse(503, b"try later"))
    raw = only_rule(tmp_path, "directResponse: {status: 200, body: {bytes: AAEC}}")
    assert raw.direct_response == HTTPDirectResponse(200, b"\x00\x01\x02")
    empty = only_rule(tmp_path, "directResponse: {status: 204}")
    assert empty.direct_response == HTTPDirectResponse(204)


def test_timeout_and_retries(tmp_path: Path) -> None:
    route = only_rule(
        tmp_path,
        f"{TO_SVC}, timeout: 1.5s, retries: {{attempts: 3, perTryTimeout: 250ms,"
        " retryOn: 'gateway-error, connect-failure,refused-stream,unavailable,503',"
        " retryRemoteLocalities: true}",
    )
    assert route.timeout_s == 1.5
    assert route.retries == HTTPRetry(
        attempts=3,
        per_try_timeout_s=0.25,
        retry_on=("gateway-error", "connect-failure", "refused-stream", "unavailable", "503"),
        retry_remote_localities=True,
    )
    assert only_rule(tmp_path, f"{TO_SVC}, timeout: 1h2m").timeout_s == 3720.0
    assert only_rule(tmp_path, f"{TO_SVC}, timeout: 0s").timeout_s == 0.0
    assert only_rule(tmp_path, f"{TO_SVC}, retries: {{attempts: 0}}").retries == HTTPRetry(0)


def test_fault_delay_and_abort(tmp_path: Path) -> None:
    [delay_rule, abort_rule] = load_virtual_service(
        tmp_path,
        virtual_service(
            """
            hosts: [svc]
            http:
            - match: [{headers: {x-testing: {exact: 'true'}}}]
              fault:
                delay: {fixedDelay: 2s}
                abort: {grpcStatus: UNAVAILABLE, percentage: {value: 25}}
              route: [{destination: {host: svc}}]
            - fault:
                abort: {httpStatus: 503, percentage: {value: 0.1}}
              directResponse: {status: 200}
            """
        ),
    ).http
    assert delay_rule.fault == HTTPFaultInjection(
        delay=FaultDelay(2.0, 100.0), abort=FaultAbort(25.0, grpc_status="UNAVAILABLE")
    )
    assert abort_rule.fault == HTTPFaultInjection(abort=FaultAbort(0.1, http_status=503))


def test_rules_keep_their_order_and_route_to_any_host(tmp_path: Path) -> None:
    service = load_virtual_service(
        tmp_path,
        virtual_service(
            """
            hosts: [svc, svc.conference.example]
            http:
            - match: [{uri: {prefix: /a}}]
              route: [{destination: {host: registered-only}}]
            - route:
              - {destination: {host: multi, port: {number: 8080}}, weight: 70}
              - {destination: {host: multi, port: {number: 9090}}, weight: 30}
            """
        ),
    )
    assert service.hosts == ("svc", "svc.conference.example")
    assert [r.route for r in service.http] == [
        (to("registered-only"),),
        (to("multi", port=8080, weight=70), to("multi", port=9090, weight=30)),
    ]


def test_split_hash_keys_follow_the_port_in_force(tmp_path: Path) -> None:
    """Only the policy in force for the destination's port counts; a destination that
    gets no traffic (weight 0) hashes nothing."""
    config = load_text(
        tmp_path / "mesh.yaml", documents(SERVICES, HASH_SVC, HASH_MULTI_9090, SPLIT)
    )
    assert len(config.virtual_services) == 1
    idle = rule(
        "route: [{destination: {host: svc}, weight: 100},"
        " {destination: {host: multi, port: {number: 8080}}, weight: 0}]"
    )
    config = load_text(tmp_path / "mesh.yaml", documents(SERVICES, HASH_SVC, HASH_MULTI, idle))
    assert len(config.virtual_services) == 1
