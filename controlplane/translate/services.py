"""The service catalog: every ``HOST:PORT`` the mesh serves, with its endpoints.

This is the one place that reads the mesh model; the per-type builders only
read the catalog. Everything is sorted so translate stays deterministic.

Rules (Istio's ServiceEntry semantics):

* every (host, port) of every ServiceEntry is a service;
* a RegisteredWorkload whose ``service`` no ServiceEntry declares creates an
  implicit STATIC service for each of its service ports;
* endpoints of a ServiceEntry port come from its inline ``endpoints``, or the
  WorkloadEntries its ``workload_selector`` matches (same namespace, labels
  include the selector), plus RegisteredWorkloads of one of its hosts that
  serve that port. An endpoint listens on ``ports[port.name]``, else the
  port's ``target_port``, else the port's number;
* DNS services resolve a hostname: their endpoints come from config only
  (a run-time registration carries an IP, which belongs to a STATIC service).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controlplane.model import (
    MeshConfig,
    RegisteredWorkload,
    Resolution,
    ServiceEntry,
    ServicePort,
    WorkloadEntry,
    WorkloadSpec,
)
from controlplane.translate.errors import TranslationError


@dataclass(frozen=True, slots=True)
class MeshEndpoint:
    """One address serving one service port."""

    address: str
    port: int
    weight: int
    locality: str  # "region/zone/subzone", "" when unknown
    labels: Mapping[str, str]
    origin: str  # where it came from, for error messages
    # Who serves it (for mTLS and policy): its namespace, and its identity as a
    # service account (config) or a full SPIFFE ID (a registration's certificate).
    namespace: str = ""
    service_account: str = ""
    spiffe_id: str = ""


@dataclass(frozen=True, slots=True)
class MeshService:
    """One ``HOST:PORT`` and everything that serves it."""

    host: str
    port: ServicePort
    resolution: Resolution
    namespace: str
    endpoints: tuple[MeshEndpoint, ...]
    origin: str
    degraded: bool = False  # ServiceEntry.degraded: callers' fallbacks fire

    @property
    def number(self) -> int:
        return self.port.number


def collect_services(
    config: MeshConfig, workloads: Sequence[RegisteredWorkload], *, reuse: bool = True
) -> tuple[MeshService, ...]:
    """Every service of the mesh, sorted by (host, port).

    With ``reuse``, a ServiceEntry's services are the ones the last call made when its
    inputs are the same objects (the entry, the WorkloadEntries it selects and the
    registrations of its hosts): a config change collects what it changed only.
    """
    global _declared
    by_key: dict[tuple[str, int], MeshService] = {}
    registered = _by_service(workloads)
    kept, made = (_declared if reuse else {}), {}
    for entry in config.service_entries:
        selected = tuple(_selected(entry, config.workload_entries))
        mine = (
            tuple(tuple(registered.get(host, ())) for host in entry.hosts)
            if entry.resolution is Resolution.STATIC
            else ()
        )
        known = kept.get(id(entry))
        if (
            known is not None
            and known[0] is entry
            and _same(known[1], selected)
            and known[2] == mine
        ):
            services = known[3]
        else:
            services = tuple(
                _declared_service(entry, host, port, selected, registered)
                for host in entry.hosts
                for port in entry.ports
            )
        made[id(entry)] = (entry, selected, mine, services)
        for service in services:
            _add(by_key, service)
    if reuse:
        _declared = made
    declared_hosts = {host for entry in config.service_entries for host in entry.hosts}
    for service in _implicit_services(registered, declared_hosts):
        _add(by_key, service)
    return tuple(by_key[key] for key in sorted(by_key))


def _add(by_key: dict[tuple[str, int], MeshService], service: MeshService) -> None:
    key = (service.host, service.number)
    previous = by_key.get(key)
    if previous is not None:
        raise TranslationError(
            f"service {service.host}:{service.number} is declared twice: "
            f"by {previous.origin} and by {service.origin}"
        )
    by_key[key] = service


def _entry_origin(entry: ServiceEntry) -> str:
    where = f" ({entry.source})" if entry.source is not None else ""
    return f"ServiceEntry {entry.namespace}/{entry.name}{where}"


def _workload_entry_origin(workload: WorkloadEntry) -> str:
    where = f" ({workload.source})" if workload.source is not None else ""
    return f"WorkloadEntry {workload.namespace}/{workload.name}{where}"


def _by_service(
    workloads: Iterable[RegisteredWorkload],
) -> dict[str, list[RegisteredWorkload]]:
    """The workloads of each service host (one pass, so a catalog costs no more than
    its services plus its workloads)."""
    found: dict[str, list[RegisteredWorkload]] = {}
    for workload in workloads:
        found.setdefault(workload.service, []).append(workload)
    return found


# id(ServiceEntry) -> (it, the WorkloadEntries it selected, the registrations of its
# hosts, its services), as the last collect_services made them.
_Declared = tuple[
    ServiceEntry,
    tuple[WorkloadEntry, ...],
    tuple[tuple[RegisteredWorkload, ...], ...],
    tuple["MeshService", ...],
]
_declared: dict[int, _Declared] = {}


def _same(before: Sequence[object], after: Sequence[object]) -> bool:
    return len(before) == len(after) and all(a is b for a, b in zip(before, after, strict=True))


def _declared_service(
    entry: ServiceEntry,
    host: str,
    port: ServicePort,
    selected: Sequence[WorkloadEntry],
    registered: Mapping[str, Sequence[RegisteredWorkload]],
) -> MeshService:
    origin = _entry_origin(entry)
    found: list[MeshEndpoint] = [
        _spec_endpoint(spec, port, f"{origin} endpoints[{index}]", entry.namespace)
        for index, spec in enumerate(entry.endpoints)
    ]
    if entry.workload_selector is not None:
        found.extend(
            _spec_endpoint(we.spec, port, _workload_entry_origin(we), we.namespace)
            for we in selected
        )
    if entry.resolution is Resolution.STATIC:
        found.extend(_registered_endpoints(registered, entry.hosts, port.number))
    endpoints = _dedupe_and_sort(found)
    if entry.resolution is Resolution.STATIC:
        for endpoint in endpoints:
            _require_ip(endpoint, f"{host}:{port.number}")
    elif len(endpoints) > 1:
        raise TranslationError(
            f"{origin}: resolution DNS supports at most one endpoint per port "
            f"(a LOGICAL_DNS cluster); {host}:{port.number} has {len(endpoints)}"
        )
    return MeshService(
        host=host,
        port=port,
        resolution=entry.resolution,
        namespace=entry.namespace,
        endpoints=endpoints,
        origin=origin,
        degraded=entry.degraded,
    )


def _selected(entry: ServiceEntry, candidates: Iterable[WorkloadEntry]) -> list[WorkloadEntry]:
    if entry.workload_selector is None:
        return []
    selector = entry.workload_selector
    chosen = [
        we
        for we in candidates
        if we.namespace == entry.namespace
        and all(we.spec.labels.get(k) == v for k, v in selector.items())
    ]
    return sorted(chosen, key=lambda we: (we.namespace, we.name))


def _spec_endpoint(
    spec: WorkloadSpec, port: ServicePort, origin: str, namespace: str
) -> MeshEndpoint:
    if port.name in spec.ports:
        number = spec.ports[port.name]
    elif port.target_port is not None:
        number = port.target_port
    else:
        number = port.number
    return MeshEndpoint(
        address=spec.address,
        port=number,
        weight=_weight(spec.weight, origin),
        locality=spec.locality,
        labels=spec.labels,
        origin=origin,
        namespace=namespace,
        service_account=spec.service_account,
    )


def _registered_endpoints(
    registered: Mapping[str, Sequence[RegisteredWorkload]],
    hosts: Iterable[str],
    service_port: int,
) -> list[MeshEndpoint]:
    chosen = sorted(
        (w for host in set(hosts) for w in registered.get(host, ()) if service_port in w.ports),
        key=lambda w: w.id,
    )
    return [_workload_endpoint(w, service_port) for w in chosen]


def _workload_endpoint(workload: RegisteredWorkload, service_port: int) -> MeshEndpoint:
    origin = f"registered workload {workload.id!r}"
    return MeshEndpoint(
        address=workload.address,
        port=workload.ports[service_port],
        weight=_weight(workload.weight, origin),
        locality=workload.locality.path,
        labels=workload.labels,
        origin=origin,
        namespace=workload.namespace,
        spiffe_id=workload.identity or "",  # its certificate's, when it proved one
    )


def _implicit_services(
    registered: Mapping[str, Sequence[RegisteredWorkload]], declared_hosts: set[str]
) -> list[MeshService]:
    ports_by_host: dict[str, set[int]] = {}
    namespaces: dict[str, set[str]] = {}
    for host, workloads in registered.items():
        if host in declared_hosts:
            continue
        for workload in workloads:
            ports_by_host.setdefault(host, set()).update(workload.ports)
            namespaces.setdefault(host, set()).add(workload.namespace)
    services: list[MeshService] = []
    for host in sorted(ports_by_host):
        for number in sorted(ports_by_host[host]):
            endpoints = _dedupe_and_sort(_registered_endpoints(registered, (host,), number))
            for endpoint in endpoints:
                _require_ip(endpoint, f"{host}:{number}")
            services.append(
                MeshService(
                    host=host,
                    port=ServicePort(number=number, name=f"port-{number}", protocol=""),
                    resolution=Resolution.STATIC,
                    namespace=min(namespaces[host]),
                    endpoints=endpoints,
                    origin=f"registered workloads of {host!r} (no ServiceEntry declares it)",
                )
            )
    return services


def _weight(weight: int, origin: str) -> int:
    """Istio treats weight 0 as the default weight 1; negative is an error."""
    if weight < 0:
        raise TranslationError(f"{origin}: weight must be >= 0, got {weight}")
    return weight or 1


def _require_ip(endpoint: MeshEndpoint, service: str) -> None:
    if not _is_ip(endpoint.address):
        raise TranslationError(
            f"{endpoint.origin}: endpoint address {endpoint.address!r} of STATIC service "
            f"{service} must be an IP address (use resolution DNS for hostnames)"
        )


@functools.lru_cache(maxsize=65_536)
def _is_ip(address: str) -> bool:
    """Remembered: every translation asks again for every endpoint of the mesh."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _dedupe_and_sort(endpoints: Iterable[MeshEndpoint]) -> tuple[MeshEndpoint, ...]:
    """One endpoint per address:port (gRPC rejects duplicates); config wins over
    registrations because it is listed first. Sorted for determinism."""
    unique: dict[tuple[str, int], MeshEndpoint] = {}
    for endpoint in endpoints:
        unique.setdefault((endpoint.address, endpoint.port), endpoint)
    return tuple(sorted(unique.values(), key=lambda e: (e.locality, e.address, e.port)))
