"""One MeshConfig that uses every VirtualService field translate supports.

web:80 is routed by a VirtualService using every field; web-a:80 and web-b:80
are served by the two backends given; web-a hashes on ``x-user`` (a
DestinationRule consistentHash), so its routes carry a hash policy.
"""

from __future__ import annotations

from controlplane.model import MeshConfig, Resolution, ServiceEntry, ServicePort, WorkloadSpec
from controlplane.traffic_model import (
    ConsistentHash,
    Destination,
    DestinationRule,
    FaultAbort,
    FaultDelay,
    HeaderOperations,
    Headers,
    HedgePolicy,
    HTTPDirectResponse,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPMirror,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    HTTPRouteDestination,
    LoadBalancerSettings,
    LocalRateLimit,
    MatchKind,
    RegexRewrite,
    StringMatch,
    TrafficPolicy,
    VirtualService,
    VirtualServiceExtensions,
)
from tests.support.backends import Backend

EXACT, PREFIX, REGEX, PRESENT = (
    MatchKind.EXACT,
    MatchKind.PREFIX,
    MatchKind.REGEX,
    MatchKind.PRESENT,
)


def _entry(host: str, backend: Backend) -> ServiceEntry:
    return ServiceEntry(
        name=host,
        namespace="default",
        hosts=(host,),
        ports=(ServicePort(80, "http", "HTTP"),),
        resolution=Resolution.STATIC,
        endpoints=(WorkloadSpec("127.0.0.1", ports={"http": backend.port}),),
    )


def _to(host: str, weight: int = 0) -> HTTPRouteDestination:
    return HTTPRouteDestination(Destination(host), weight=weight)


def every_feature(a: Backend, b: Backend) -> MeshConfig:
    """web:80 routed by a VirtualService using every field; web-a -> a, web-b -> b."""
    header = HTTPMatchRequest(
        name="by-header",
        headers={"x-version": StringMatch(EXACT, "b")},
        without_headers={"x-skip": StringMatch(PRESENT)},
        method=StringMatch(REGEX, "GET|HEAD"),
        authority=StringMatch(PREFIX, "web"),
        scheme=StringMatch(EXACT, "http"),
    )
    rules = (
        HTTPRoute(
            name="to-b",
            match=(header,),
            route=(
                HTTPRouteDestination(
                    Destination("web-b"),
                    headers=Headers(response=HeaderOperations(set={"x-route": "b"})),
                ),
            ),
            timeout_s=5.0,
            retries=HTTPRetry(
                attempts=3,
                per_try_timeout_s=1.0,
                retry_on=("5xx", "unavailable", "429"),
                retry_remote_localities=True,
            ),
            mirrors=(HTTPMirror(Destination("web-a"), percentage=12.5),),
            headers=Headers(
                request=HeaderOperations(set={"x-a": "1"}, add={"x-b": "2"}, remove=("x-c",)),
                response=HeaderOperations(add={"x-d": "4"}, remove=("x-e",)),
            ),
        ),
        HTTPRoute(
            name="old",
            match=(HTTPMatchRequest(uri=StringMatch(EXACT, "/old")),),
            redirect=HTTPRedirect(uri="/new", authority="web-b", redirect_code=302),
        ),
        HTTPRoute(
            name="health",
            match=(HTTPMatchRequest(uri=StringMatch(PREFIX, "/HEALTH"), ignore_uri_case=True),),
            direct_response=HTTPDirectResponse(200, b"ok"),
        ),
        HTTPRoute(
            name="v1",
            match=(HTTPMatchRequest(uri=StringMatch(PREFIX, "/v1/")),),
            route=(_to("web-a"),),
            rewrite=HTTPRewrite(uri="/v2/", authority="rewritten"),
        ),
        HTTPRoute(
            name="sessions",
            match=(HTTPMatchRequest(uri=StringMatch(REGEX, "/s/[0-9]+")),),
            route=(_to("web-a"),),
            rewrite=HTTPRewrite(uri_regex_rewrite=RegexRewrite("^/s/([0-9]+)$", "/sessions/\\1")),
        ),
        HTTPRoute(
            name="exact-rewrite",
            match=(HTTPMatchRequest(uri=StringMatch(EXACT, "/exact")),),
            route=(_to("web-a"),),
            rewrite=HTTPRewrite(uri="/whole"),
        ),
        HTTPRoute(
            name="faulty",
            match=(HTTPMatchRequest(headers={"x-testing": StringMatch(EXACT, "true")}),),
            route=(_to("web-a"),),
            fault=HTTPFaultInjection(
                delay=FaultDelay(fixed_delay_s=0.001, percentage=100.0),
                abort=FaultAbort(http_status=503, percentage=100.0),
            ),
        ),
        HTTPRoute(
            name="grpc-faulty",
            match=(HTTPMatchRequest(query_params={"grpc-fault": StringMatch(PRESENT)}),),
            route=(_to("web-a"),),
            fault=HTTPFaultInjection(abort=FaultAbort(grpc_status="UNAVAILABLE", percentage=50)),
        ),
        HTTPRoute(
            name="split",
            match=(HTTPMatchRequest(query_params={"split": StringMatch(EXACT, "1")}),),
            route=(_to("web-a", 1), _to("web-b", 99)),
        ),
        HTTPRoute(name="rest", route=(_to("web-a"),), retries=HTTPRetry(attempts=0)),
    )
    extensions = VirtualServiceExtensions(
        hedge=HedgePolicy(hedge_on_per_try_timeout=True),
        local_rate_limit=LocalRateLimit(max_tokens=1000, tokens_per_fill=1000, fill_interval_s=1),
        fault_headers_enabled=True,
        max_active_faults=100,
    )
    virtual_service = VirtualService(
        name="web", namespace="default", hosts=("web",), http=rules, extensions=extensions
    )
    hashing = LoadBalancerSettings(consistent_hash=ConsistentHash(http_header_name="x-user"))
    destination_rule = DestinationRule(
        name="web-a",
        namespace="default",
        host="web-a",
        traffic_policy=TrafficPolicy(load_balancer=hashing),
    )
    return MeshConfig(
        service_entries=(_entry("web", a), _entry("web-a", a), _entry("web-b", b)),
        virtual_services=(virtual_service,),
        destination_rules=(destination_rule,),
    )
