"""``load_config``: a YAML file or folder in, a validated :class:`MeshConfig` out.

All or nothing: every document of every file is validated, then the resources
are checked against each other; any issue anywhere raises one
:class:`ConfigError` listing them all, in file and document order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from controlplane.config.authorization_policy import parse_authorization_policy
from controlplane.config.cross_checks import (
    check_selected_addresses,
    check_unique_host_ports,
    check_unique_names,
)
from controlplane.config.destination_rule import parse_destination_rule
from controlplane.config.errors import ConfigError, ConfigIssue
from controlplane.config.fields import DocContext, Fields
from controlplane.config.peer_authentication import parse_peer_authentication
from controlplane.config.policy_checks import check_dns_subsets, check_route_hash_keys
from controlplane.config.request_authentication import parse_request_authentication
from controlplane.config.resource import Header, parse_header
from controlplane.config.security_checks import (
    check_one_intentions_per_destination,
    check_one_namespace_peer_authentication,
)
from controlplane.config.service_entry import parse_service_entry
from controlplane.config.service_intentions import parse_service_intentions
from controlplane.config.traffic_checks import (
    check_destinations,
    check_one_destination_rule_per_host,
    check_one_virtual_service_per_host,
)
from controlplane.config.virtual_service import parse_virtual_service
from controlplane.config.workload_entry import parse_workload_entry
from controlplane.config.yaml_files import Document, config_files, read_documents
from controlplane.model import MeshConfig, ServiceEntry, WorkloadEntry
from controlplane.security_model import (
    AuthorizationPolicy,
    PeerAuthentication,
    RequestAuthentication,
    ServiceIntentions,
)
from controlplane.traffic_model import DestinationRule, VirtualService

log = structlog.get_logger(__name__)

Resource = (
    ServiceEntry
    | WorkloadEntry
    | VirtualService
    | DestinationRule
    | PeerAuthentication
    | AuthorizationPolicy
    | ServiceIntentions
    | RequestAuthentication
)
_PARSERS: dict[str, Callable[[Header, Fields], Resource | None]] = {
    "ServiceEntry": parse_service_entry,
    "WorkloadEntry": parse_workload_entry,
    "VirtualService": parse_virtual_service,
    "DestinationRule": parse_destination_rule,
    "PeerAuthentication": parse_peer_authentication,
    "AuthorizationPolicy": parse_authorization_policy,
    "ServiceIntentions": parse_service_intentions,
    "RequestAuthentication": parse_request_authentication,
}


def load_config(path: str | Path) -> MeshConfig:
    """Read and validate the config at ``path`` (a file or a folder of YAML files).

    Raises :class:`ConfigError` listing every problem; never returns a partial config.
    """
    root = Path(path)
    issues: list[ConfigIssue] = []
    documents: list[Document] = []
    files = config_files(root, issues)
    for file in files:
        documents.extend(read_documents(file, issues))
    config = build_config(documents, issues, order=[str(file) for file in files])
    log.debug(
        "config_loaded",
        path=str(root),
        files=len({document.file for document in documents}),
        service_entries=len(config.service_entries),
        workload_entries=len(config.workload_entries),
        virtual_services=len(config.virtual_services),
        destination_rules=len(config.destination_rules),
    )
    return config


# Documents that validated alone in the last build_config, by identity: the file
# reader hands back the same Document for a file whose bytes did not change, so an
# edit to one file of a folder validates that file's documents only (the checks
# between resources still run on all of them).
_parsed: dict[int, tuple[Document, Header, Resource, Fields]] = {}


def build_config(
    documents: Sequence[Document],
    earlier: Sequence[ConfigIssue] = (),
    *,
    order: Sequence[str] = (),
) -> MeshConfig:
    """Validate ``documents`` (from files, or applied through the API) as one config.

    ``earlier`` issues (found reading the files) are reported with the new ones, sorted by
    the place of their file in ``order`` then by document. Raises :class:`ConfigError`.
    """
    global _parsed
    issues = list(earlier)
    headers: list[Header] = []
    resources: list[tuple[Resource, Fields]] = []
    kept, parsed_now = _parsed, {}
    for document in documents:
        known = kept.get(id(document))
        if known is not None and known[0] is document:  # the same document as last time
            _, header, resource, spec = parsed_now[id(document)] = known
            headers.append(header)
            resources.append((resource, spec))
            continue
        ctx = DocContext(document.file, document.index, issues)
        before = ctx.count
        parsed = parse_header(ctx, document.data)
        if parsed is None:
            continue
        header, spec = parsed
        if ctx.count == before:  # a broken name would only add confusing duplicates
            headers.append(header)
        built = _PARSERS[header.kind](header, spec)
        if built is not None:
            resources.append((built, spec))
            if ctx.count == before:
                parsed_now[id(document)] = (document, header, built, spec)
    _parsed = parsed_now
    config = _assemble(resources)
    issues.extend(_cross_check(headers, config, resources))
    if issues:
        rank = {file: index for index, file in enumerate(order)}
        issues.sort(key=lambda issue: (rank.get(issue.file, -1), issue.document or 0))
        raise ConfigError(issues)
    return config


def _assemble(resources: list[tuple[Resource, Fields]]) -> MeshConfig:
    """The resources by kind, in load order."""
    return MeshConfig(
        service_entries=tuple(r for r, _ in resources if isinstance(r, ServiceEntry)),
        workload_entries=tuple(r for r, _ in resources if isinstance(r, WorkloadEntry)),
        virtual_services=tuple(r for r, _ in resources if isinstance(r, VirtualService)),
        destination_rules=tuple(r for r, _ in resources if isinstance(r, DestinationRule)),
        peer_authentications=tuple(r for r, _ in resources if isinstance(r, PeerAuthentication)),
        authorization_policies=tuple(r for r, _ in resources if isinstance(r, AuthorizationPolicy)),
        service_intentions=tuple(r for r, _ in resources if isinstance(r, ServiceIntentions)),
        request_authentications=tuple(
            r for r, _ in resources if isinstance(r, RequestAuthentication)
        ),
    )


def _cross_check(
    headers: list[Header], config: MeshConfig, resources: list[tuple[Resource, Fields]]
) -> list[ConfigIssue]:
    """Checks between resources, on the ones that are valid by themselves."""
    services = [(r, spec.data) for r, spec in resources if isinstance(r, VirtualService)]
    return [
        *check_unique_names(headers),
        *check_unique_host_ports(config.service_entries),
        *check_selected_addresses(config.service_entries, config.workload_entries),
        *check_one_virtual_service_per_host(config.virtual_services),
        *check_one_destination_rule_per_host(config.destination_rules),
        *check_destinations(services, config.destination_rules, config.service_entries),
        *check_route_hash_keys(
            config.virtual_services, config.destination_rules, config.service_entries
        ),
        *check_dns_subsets(config.destination_rules, config.service_entries),
        *check_one_namespace_peer_authentication(config.peer_authentications),
        *check_one_intentions_per_destination(config.service_intentions),
    ]
