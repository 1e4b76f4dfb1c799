"""Refuse a registration the mesh could not serve, translating on trial only when it can.

A registration adds endpoints. Translation can refuse it, or a route destination's
port become a guess, only through the services it makes: a ``service`` no
ServiceEntry declares becomes an implicit service per port, in the first namespace
its workloads name (:mod:`controlplane.translate.services`). Every field of the
endpoint itself (an IP address that can receive calls, ports 1..65535, weight,
locality, labels, namespace, identity) is checked by
:func:`controlplane.registry.validate`, and translate refuses no endpoint that
passed it. So a registration that leaves the implicit services as they were (one
more endpoint of a host a ServiceEntry declares, or of a registered service on the
ports it has) is admitted at once, without the trial translation; one that adds,
changes or removes an implicit service is translated on trial for every connected
node and the node shapes that may connect (:meth:`XdsService.check`), as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from controlplane.model import MeshConfig, RegisteredWorkload
from controlplane.registry import RegistrationRejected
from controlplane.translate import TranslationError
from controlplane.translate.ambiguity import AmbiguousDestinationError
from controlplane.xds.errors import SnapshotError

# host -> (service ports, namespace) of the implicit service registrations make.
ImplicitServices = dict[str, tuple[frozenset[int], str]]
TrialCheck = Callable[[Sequence[RegisteredWorkload]], None]


def implicit_services(
    declared: frozenset[str], workloads: Iterable[RegisteredWorkload], hosts: Iterable[str]
) -> ImplicitServices:
    """The implicit services of ``hosts`` that ``workloads`` make, as translate makes them."""
    wanted = {host for host in hosts if host not in declared}
    ports: dict[str, set[int]] = {}
    namespaces: dict[str, set[str]] = {}
    for workload in workloads:
        if workload.service in wanted:
            ports.setdefault(workload.service, set()).update(workload.ports)
            namespaces.setdefault(workload.service, set()).add(workload.namespace)
    return {host: (frozenset(ports[host]), min(namespaces[host])) for host in ports}


class RegistrationAdmission:
    """The registry's admission check (see the module docstring).

    ``trial`` translates the workloads given with the config in force and raises
    TranslationError / SnapshotError (AmbiguousDestinationError for a port left to
    a guess); ``config`` is the config in force, None before one is loaded (then
    every registration is translated on trial)."""

    def __init__(self, trial: TrialCheck, config: Callable[[], MeshConfig | None]) -> None:
        self._trial = trial
        self._config = config
        self._declared: tuple[MeshConfig, frozenset[str]] | None = None
        self.trials = 0  # registrations translated on trial (for tests and debugging)

    def __call__(
        self,
        workloads: tuple[RegisteredWorkload, ...],
        *,
        added: RegisteredWorkload,
        replaced: RegisteredWorkload | None,
    ) -> None:
        """Raise RegistrationRejected when ``workloads`` (the registry with ``added`` in
        place of ``replaced``) could not be served."""
        if not self._changes_services(workloads, added, replaced):
            return
        self.trials += 1
        try:
            self._trial(workloads)
        except AmbiguousDestinationError as exc:
            raise RegistrationRejected(
                "ports", f"refused, it would leave a route without its port: {exc}"
            ) from exc
        except (TranslationError, SnapshotError) as exc:
            raise RegistrationRejected(
                "service", f"refused, the mesh could not be served with it: {exc}"
            ) from exc

    def _changes_services(
        self,
        workloads: tuple[RegisteredWorkload, ...],
        added: RegisteredWorkload,
        replaced: RegisteredWorkload | None,
    ) -> bool:
        config = self._config()
        if config is None:
            return True
        declared = self._declared_hosts(config)
        hosts = {added.service} if replaced is None else {added.service, replaced.service}
        if hosts <= declared:
            return False
        if replaced is None:
            return not _served_already(workloads, added)
        if (replaced.service, replaced.namespace) == (added.service, added.namespace) and set(
            replaced.ports
        ) == set(added.ports):
            return False  # the same implicit service, other endpoint fields
        after = [w for w in workloads if w.service in hosts]
        before = [w for w in after if w.id != added.id]
        if replaced is not None:
            before.append(replaced)
        return implicit_services(declared, before, hosts) != implicit_services(
            declared, after, hosts
        )

    def _declared_hosts(self, config: MeshConfig) -> frozenset[str]:
        """Every host a ServiceEntry declares (kept per config object)."""
        if self._declared is None or self._declared[0] is not config:
            hosts = frozenset(h for entry in config.service_entries for h in entry.hosts)
            self._declared = (config, hosts)
        return self._declared[1]


def _served_already(workloads: Iterable[RegisteredWorkload], added: RegisteredWorkload) -> bool:
    """True when other workloads of ``added``'s implicit service serve all its ports and
    one is in its namespace or a lower one: then adding it changes no service."""
    missing = set(added.ports)
    lowest = False
    for workload in workloads:
        if workload.service != added.service or workload.id == added.id:
            continue
        missing.difference_update(workload.ports)
        lowest = lowest or workload.namespace <= added.namespace
        if not missing and lowest:
            return True
    return False
