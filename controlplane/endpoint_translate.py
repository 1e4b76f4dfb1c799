"""The control plane's translation, quick when a change touches a few services.

:class:`EndpointTranslate` is :func:`controlplane.translate.translate` remembering its
last output per node shape (a node's locality and metadata: what translate reads of
it). Asked again for the same config with other workloads, it rebuilds only
what their endpoints touch (:mod:`controlplane.translate.endpoint_changes`) when the
services are otherwise the same; asked for another config, or for registrations
that make or change a service, it rebuilds what the changed resources and services
touch (:mod:`controlplane.translate.config_changes`); and it translates whole when
neither can bound the change. A churn of registrations or an edit of one
VirtualService then costs what they touch per shape, not the whole mesh.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import PolicySettings, Resources, TranslationError, translate
from controlplane.translate.config_changes import Translated, retranslate_config
from controlplane.translate.endpoint_changes import retranslate_endpoints
from controlplane.translate.reuse import shared_work
from controlplane.translate.routes import ServiceRouting
from controlplane.translate.security_settings import DEFAULT_POLICY_SETTINGS
from controlplane.translate.services import MeshService
from controlplane.translate.source_match import Caller

# Node shapes remembered (each holds one translation's messages): the connected
# shapes and the trial shapes of a check, for a typical fleet.
KEPT_SHAPES = 16


@dataclass(slots=True)
class _Last:
    config: MeshConfig
    workloads: tuple[RegisteredWorkload, ...]
    resources: Resources
    services: tuple[MeshService, ...]
    routings: tuple[ServiceRouting, ...]  # for the shape, in services' order


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
        made = None
        if last is not None and last.workloads == workloads and last.config is config:
            return last.resources
        if last is not None:
            made = self._update(last, config, workloads, node)
        if made is None:
            resources = translate(config, workloads, node, self._policy)
            shared = shared_work(config, workloads)  # what translate just used
            made = _Last(
                config, workloads, resources, shared.services, shared.routing(Caller.of(node))
            )
        else:
            self.partial += 1
        with self._lock:
            self._last[key] = made
            self._last.move_to_end(key)
            while len(self._last) > self._kept:
                self._last.popitem(last=False)
        return made.resources

    def _update(
        self,
        last: _Last,
        config: MeshConfig,
        workloads: tuple[RegisteredWorkload, ...],
        node: NodeInfo,
    ) -> _Last | None:
        """``last`` brought up to these inputs, None when a whole translation is needed."""
        try:
            services = shared_work(config, workloads).services  # once per check
        except TranslationError:
            return None  # translate says so
        if last.config is config:
            resources = retranslate_endpoints(
                last.resources, last.services, config, services, node, self._policy
            )
            if resources is not None:
                return _Last(config, workloads, resources, services, last.routings)
        # another config, or registrations that make or change a service
        previous = Translated(last.config, last.services, last.routings, last.resources)
        made = retranslate_config(previous, config, services, node, self._policy)
        if made is None:
            return None
        return _Last(config, workloads, made.resources, services, made.routings)


def _shape(node: NodeInfo) -> str:
    """Everything translate reads of a node: locality and metadata (not its id or cluster,
    as the updater groups nodes)."""
    return json.dumps([node.locality, node.metadata], sort_keys=True, default=repr)
