"""``load_config``: a YAML file or folder in, a validated :class:`MeshConfig` out.

All or nothing: every document of every file is validated, then the resources
are checked against each other; any issue anywhere raises one
:class:`ConfigError` listing them all, in file and document order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog

from controlplane.config.cross_checks import (
    check_selected_addresses,
    check_unique_host_ports,
    check_unique_names,
)
from controlplane.config.errors import ConfigError, ConfigIssue
from controlplane.config.fields import DocContext, Fields
from controlplane.config.resource import Header, parse_header
from controlplane.config.service_entry import parse_service_entry
from controlplane.config.workload_entry import parse_workload_entry
from controlplane.config.yaml_files import Document, config_files, read_documents
from controlplane.model import MeshConfig, ServiceEntry, WorkloadEntry

log = structlog.get_logger(__name__)

Resource = ServiceEntry | WorkloadEntry
_PARSERS: dict[str, Callable[[Header, Fields], Resource | None]] = {
    "ServiceEntry": parse_service_entry,
    "WorkloadEntry": parse_workload_entry,
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
    headers: list[Header] = []
    entries: list[ServiceEntry] = []
    workloads: list[WorkloadEntry] = []
    for document in documents:
        ctx = DocContext(document.file, document.index, issues)
        before = ctx.count
        parsed = parse_header(ctx, document.data)
        if parsed is None:
            continue
        header, spec = parsed
        if ctx.count == before:  # a broken name would only add confusing duplicates
            headers.append(header)
        resource = _PARSERS[header.kind](header, spec)
        if isinstance(resource, ServiceEntry):
            entries.append(resource)
        elif isinstance(resource, WorkloadEntry):
            workloads.append(resource)
    issues.extend(check_unique_names(headers))
    issues.extend(check_unique_host_ports(entries))
    issues.extend(check_selected_addresses(entries, workloads))
    if issues:
        rank = {str(file): index for index, file in enumerate(files)}
        issues.sort(key=lambda issue: (rank.get(issue.file, -1), issue.document or 0))
        raise ConfigError(issues)
    config = MeshConfig(service_entries=tuple(entries), workload_entries=tuple(workloads))
    log.debug(
        "config_loaded",
        path=str(root),
        files=len({document.file for document in documents}),
        service_entries=len(entries),
        workload_entries=len(workloads),
    )
    return config
