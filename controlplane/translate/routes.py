"""RDS: the routes of each service, from its VirtualService or the default.

For a service ``HOST:PORT`` routed by a VirtualService, every rule that applies
to PORT and to the calling node becomes one Envoy route per match block, in
order (first match wins, no catch-all is appended: an unmatched request gets
404, as in Istio). Without a VirtualService (or when none of its rules applies
to the port and caller) the
one route sends everything (prefix "/") to ``outbound|PORT||HOST`` with
Istio's defaults (no timeout, the default retry policy).

:class:`ServiceRouting` is computed once per service and read by both the
route table and the listener (which needs to know which filters the routes use).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2

from controlplane.model import MeshConfig
from controlplane.traffic_model import (
    Destination,
    DestinationRule,
    HTTPMatchRequest,
    LocalRateLimit,
    VirtualService,
    VirtualServiceExtensions,
)
from controlplane.translate import naming
from controlplane.translate.common import pack
from controlplane.translate.destinations import PortDirectory
from controlplane.translate.errors import TranslationError
from controlplane.translate.faults import header_faults, local_rate_limit, rule_fault
from controlplane.translate.header_ops import HeaderEdits, header_edits
from controlplane.translate.http_filters import (
    FAULT_FILTER_NAME,
    LOCAL_RATE_LIMIT_FILTER_NAME,
    optional_filter_config,
)
from controlplane.translate.redirect_action import direct_response_action, redirect_action
from controlplane.translate.route_action import RouteContext, default_action, forwarding
from controlplane.translate.route_match import catch_all, route_match
from controlplane.translate.services import MeshService
from controlplane.translate.source_match import Caller
from controlplane.translate.virtual_services import (
    PortRule,
    rules_for_port,
    virtual_service_for,
    virtual_service_origin,
)


@dataclass(frozen=True, slots=True)
class ServiceRouting:
    """The routes of one service and the HTTP filters they need."""

    service: MeshService
    routes: tuple[rc.Route, ...]
    uses_fault: bool = False  # some route carries a fault filter config
    header_faults: fault_pb2.HTTPFault | None = None  # x-envoy-fault-* headers honoured
    rate_limit: LocalRateLimit | None = None
    origin: str = ""  # the VirtualService, for error messages

    @property
    def needs_fault_filter(self) -> bool:
        return self.uses_fault or self.header_faults is not None


def plan_routing(
    services: Iterable[MeshService], config: MeshConfig, caller: Caller
) -> tuple[ServiceRouting, ...]:
    """The routing of every service as ``caller`` gets it (same order as ``services``)."""
    services = tuple(services)
    ports = PortDirectory.of(services)
    rules = tuple(config.destination_rules)
    return tuple(
        service_routing(
            s, virtual_service_for(config.virtual_services, s.host), ports, rules, caller
        )
        for s in services
    )


def service_routing(
    service: MeshService,
    vs: VirtualService | None,
    ports: PortDirectory,
    destination_rules: tuple[DestinationRule, ...] = (),
    caller: Caller | None = None,
) -> ServiceRouting:
    """The routes ``caller`` gets (None: a caller without labels or namespace)."""
    own = Destination(service.host)
    ctx = RouteContext(service.host, service.number, ports, None, destination_rules)
    hashing = ctx.hash_for(own)
    default = ServiceRouting(service, default_routes(_own_cluster(service), hashing))
    if vs is None:
        return default
    rules = rules_for_port(vs, service.number, caller or Caller())
    if not rules:
        return default
    where = virtual_service_origin(vs)
    ctx = replace(ctx, hedge=vs.extensions.hedge)
    routes = [route for rule in rules for route in _rule_routes(rule, ctx, vs.extensions, where)]
    return ServiceRouting(
        service=service,
        routes=tuple(routes),
        uses_fault=any(FAULT_FILTER_NAME in r.typed_per_filter_config for r in routes),
        header_faults=header_faults(vs.extensions),
        rate_limit=vs.extensions.local_rate_limit,
        origin=where,
    )


def build_route_configuration(
    service: MeshService, routing: ServiceRouting | None = None
) -> route_pb2.RouteConfiguration:
    """A proxyless client's route table ``HOST:PORT``: one virtual host."""
    routing = routing or ServiceRouting(service, default_routes(_own_cluster(service)))
    host, port = service.host, service.number
    return route_pb2.RouteConfiguration(
        name=naming.route_config_name(host, port),
        virtual_hosts=[virtual_host(routing, host_filter_configs=False)],
    )


def virtual_host(routing: ServiceRouting, *, host_filter_configs: bool) -> rc.VirtualHost:
    """The service's virtual host. With ``host_filter_configs`` (a listener shared by
    many services), fault headers and the rate limit bucket ride on the virtual host
    instead of the listener's filter configs."""
    host, port = routing.service.host, routing.service.number
    vhost = rc.VirtualHost(
        name=naming.virtual_host_name(host, port),
        domains=list(naming.virtual_host_domains(host, port)),
        routes=list(routing.routes),
    )
    if host_filter_configs:
        if routing.header_faults is not None:
            vhost.typed_per_filter_config[FAULT_FILTER_NAME].CopyFrom(pack(routing.header_faults))
        if routing.rate_limit is not None:
            bucket = local_rate_limit(
                routing.rate_limit, vhost.name, f"{routing.origin}: local rate limit"
            )
            vhost.typed_per_filter_config[LOCAL_RATE_LIMIT_FILTER_NAME].CopyFrom(
                optional_filter_config(bucket)
            )
    return vhost


def default_routes(
    cluster: str, hashing: rc.RouteAction.HashPolicy | None = None
) -> tuple[rc.Route, ...]:
    """Everything (prefix "/") to the service's own cluster."""
    action = default_action(cluster, hashing)
    return (rc.Route(name="default", match=catch_all(), route=action),)


def _own_cluster(service: MeshService) -> str:
    return naming.cluster_name(service.host, service.number)


def _rule_routes(
    port_rule: PortRule, ctx: RouteContext, extensions: VirtualServiceExtensions, origin: str
) -> list[rc.Route]:
    rule = port_rule.rule
    where = f"{origin}: http[{port_rule.index}]"
    actions = [rule.route != (), rule.redirect is not None, rule.direct_response is not None]
    if sum(actions) != 1:
        raise TranslationError(
            f"{where}: exactly one of route, redirect and directResponse is required"
        )
    rule_edits = header_edits(rule.headers, f"{where}.headers")
    fault = rule_fault(rule.fault, extensions, f"{where}.fault") if rule.fault else None
    return [_route(port_rule, block, ctx, rule_edits, fault, where) for block in port_rule.blocks]


def _route(
    port_rule: PortRule,
    block: HTTPMatchRequest | None,
    ctx: RouteContext,
    rule_edits: HeaderEdits,
    fault: fault_pb2.HTTPFault | None,
    where: str,
) -> rc.Route:
    rule = port_rule.rule
    route = rc.Route(name=_route_name(rule.name, block), match=route_match(block, f"{where}.match"))
    edits = rule_edits
    if rule.redirect is not None:
        route.redirect.CopyFrom(redirect_action(rule.redirect, ctx.port, f"{where}.redirect"))
    elif rule.direct_response is not None:
        route.direct_response.CopyFrom(
            direct_response_action(rule.direct_response, f"{where}.directResponse")
        )
    else:
        forward = forwarding(rule, block, ctx, where, rule_edits)
        route.route.CopyFrom(forward.action)
        edits = forward.edits
    route.request_headers_to_add.extend(edits.request_add)
    route.request_headers_to_remove.extend(edits.request_remove)
    route.response_headers_to_add.extend(edits.response_add)
    route.response_headers_to_remove.extend(edits.response_remove)
    if fault is not None:
        route.typed_per_filter_config[FAULT_FILTER_NAME].CopyFrom(pack(fault))
    return route


def _route_name(rule_name: str, block: HTTPMatchRequest | None) -> str:
    """Istio's: the rule's name, then ``.MATCH`` when the block is named."""
    if block is not None and block.name:
        return f"{rule_name}.{block.name}" if rule_name else block.name
    return rule_name
