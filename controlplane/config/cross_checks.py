"""Checks that need every resource at once: unique names, unique HOST:PORT,
and WorkloadEntries a STATIC ServiceEntry selects having IP addresses.

Each issue is reported at the later resource (in load order) and names the
earlier one, so the message points at both places.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.config.errors import ConfigIssue
from controlplane.config.names import is_ip
from controlplane.config.resource import Header
from controlplane.model import Resolution, ServiceEntry, Source, WorkloadEntry


def issue_at(source: Source | None, path: str, message: str) -> ConfigIssue:
    if source is None:  # resources built by the loader always carry their source
        return ConfigIssue("<unknown>", None, path, message)
    return ConfigIssue(source.file, source.document, path, message)


def check_unique_names(headers: Sequence[Header]) -> list[ConfigIssue]:
    """kind/namespace/name must be unique across every file."""
    issues: list[ConfigIssue] = []
    first: dict[tuple[str, str, str], Header] = {}
    for header in headers:
        earlier = first.setdefault(header.key, header)
        if earlier is not header:
            issues.append(
                issue_at(
                    header.source,
                    "metadata.name",
                    f"duplicate {header}: already defined at {earlier.source}",
                )
            )
    return issues


def check_unique_host_ports(entries: Sequence[ServiceEntry]) -> list[ConfigIssue]:
    """A ``HOST:PORT`` names one listener on the wire, so one ServiceEntry may declare it."""
    issues: list[ConfigIssue] = []
    owners: dict[tuple[str, int], ServiceEntry] = {}
    for entry in entries:
        for host_index, host in enumerate(entry.hosts):
            for port_index, port in enumerate(entry.ports):
                owner = owners.setdefault((host, port.number), entry)
                if owner is entry:
                    continue
                issues.append(
                    issue_at(
                        entry.source,
                        f"spec.hosts[{host_index}]",
                        f"{host}:{port.number} (spec.ports[{port_index}]) is already declared by "
                        f"ServiceEntry {owner.namespace}/{owner.name} at {owner.source}",
                    )
                )
    return issues


def check_selected_addresses(
    entries: Sequence[ServiceEntry], workloads: Sequence[WorkloadEntry]
) -> list[ConfigIssue]:
    """A STATIC ServiceEntry's endpoints are IPs, also those it selects by labels."""
    issues: list[ConfigIssue] = []
    for workload in workloads:
        if is_ip(workload.spec.address):
            continue
        for entry in entries:
            if entry.resolution is Resolution.STATIC and selects(entry, workload):
                issues.append(
                    issue_at(
                        workload.source,
                        "spec.address",
                        f"{workload.spec.address!r} must be an IP address: ServiceEntry "
                        f"{entry.namespace}/{entry.name} at {entry.source} selects this "
                        "workload with resolution STATIC",
                    )
                )
    return issues


def selects(entry: ServiceEntry, workload: WorkloadEntry) -> bool:
    """Istio's rule: same namespace, and the workload has every selector label."""
    selector = entry.workload_selector
    if selector is None or entry.namespace != workload.namespace:
        return False
    labels = workload.spec.labels
    return all(labels.get(key) == value for key, value in selector.items())
