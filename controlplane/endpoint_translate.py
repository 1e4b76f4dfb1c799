"""The control plane's translation, quick when registrations only move endpoints.

:class:`EndpointTranslate` is :func:`controlplane.translate.translate` remembering its
last output per node shape (a node's locality and metadata: what translate reads of
it). Asked again for the same config with other workloads, it rebuilds only
what their endpoints touch (:mod:`controlplane.translate.endpoint_changes`) when the
services are otherwise the same, and translates whole when they are not. A churn of
registrations then costs its services' clusters and load assignments per rebuild,
not the whole mesh per shape.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import PolicySettings, Resources, translate
from controlplane.translate.endpoint_changes import retranslate_endpoints
from controlplane.translate.security_settings import DEFAULT_POLICY_SETTINGS
from controlplane.translate.services import MeshService, collect_services

# Node shapes remembered (each holds one translation's messages): the connected
# shapes and the trial shapes of a check, for a typical fleet.
KEPT_SHAPES = 16


@dataclass(slots=True)
class _Last:
    config: MeshConfig
    workloads: tuple[RegisteredWorkload, ...]
    resources: Resources
    services: tuple[MeshService, ...] | None  # worked out when first needed


class EndpointTranslate:
    """A ``Translate`` (config, workloads, node) -> resources, see the module docstring."""

    def __init__(
        self, policy: PolicySettings = DEFAULT_POLICY_SETTINGS, kept: int = KEPT_SHAPES
    ) -> None:
        self._policy = policy
        self._kept = kept
        self._last: OrderedDict[str, _Last] = OrderedDict()
        self._lock = threading.Lock()  # callers may translate on worker threads
        self.partial = 0  # translations brought up to date, not made whole (for tests)

    def __call__(
        self, config: MeshConfig, workloads: Sequence[RegisteredWorkload], node: NodeInfo
    ) -> Resources:
        key = _shape(node)
        workloads = tuple(workloads)
        with self._lock:
            last = self._last.get(key)
        resources: Resources | None = None
        services: tuple[MeshService, ...] | None = None
        if last is not None and last.config is config:
            if last.workloads == workloads:
                return last.resources
            before = last.services
            if before is None:
                before = collect_services(config, last.workloads)
            services = collect_services(config, workloads)
            resources = retranslate_endpoints(
                last.resources, before, config, services, node, self._policy
            )
        if resources is None:
            resources = translate(config, workloads, node, self._policy)
        else:
            self.partial += 1
        with self._lock:
            self._last[key] = _Last(config, workloads, resources, services)
            self._last.move_to_end(key)
            while len(self._last) > self._kept:
                self._last.popitem(last=False)
        return resources


def _shape(node: NodeInfo) -> str:
    """Everything translate reads of a node: locality and metadata (not its id or cluster,
    as the updater groups nodes)."""
    return json.dumps([node.locality, node.metadata], sort_keys=True, default=repr)
