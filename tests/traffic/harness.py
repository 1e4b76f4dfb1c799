"""One running mesh for the side-by-side tests: the real control plane on a YAML
file, a bootstrap per client, an Envoy sidecar started on first use, and callers
of every kind (see ``tests/support/clients.py``)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.clients import Caller, open_caller
from tests.support.envoy import EnvoySidecar, running_envoy_sidecar
from tests.support.meshconfig import write_config
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.traffic_config import Doc

_node_numbers = itertools.count()


@dataclass
class TrafficEnv:
    workdir: Path
    config_path: Path
    cp: ControlPlaneProcess
    stack: ExitStack
    region: str = ""
    zone: str = ""
    _envoy: EnvoySidecar | None = field(default=None, init=False)

    def write(self, *docs: Doc) -> None:
        """Replace the mesh config (the control plane watches the file)."""
        write_config(self.config_path, *docs)

    def bootstrap(self, kind: str) -> Path:
        """A fresh bootstrap with its own node id (one per client)."""
        node_id = f"{kind}-{next(_node_numbers)}"
        path = self.workdir / f"bootstrap-{node_id}.json"
        return self.cp.write_bootstrap(path, node_id, zone=self.zone, region=self.region)

    def envoy(self) -> EnvoySidecar:
        """The Envoy sidecar of this mesh, started on first use, stopped with the env."""
        if self._envoy is None:
            self._envoy = self.stack.enter_context(
                running_envoy_sidecar(
                    self.workdir / "envoy",
                    self.cp.xds_address,
                    f"envoy-{next(_node_numbers)}",
                    region=self.region,
                    zone=self.zone,
                )
            )
        return self._envoy

    def caller(self, kind: str, service: str) -> AbstractContextManager[Caller]:
        return open_caller(kind, service, self.bootstrap(kind), self.envoy)


@contextmanager
def traffic_env(
    workdir: Path, docs: Sequence[Doc], *, region: str = "", zone: str = ""
) -> Iterator[TrafficEnv]:
    """The control plane serving ``docs``; every process stopped when the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = write_config(workdir / "mesh.yaml", *docs)
    with ExitStack() as stack:
        cp = stack.enter_context(running_controlplane(config_path))
        yield TrafficEnv(workdir, config_path, cp, stack, region=region, zone=zone)


def calls_until(
    caller: Caller,
    done: Callable[[list[str]], bool],
    *,
    batch: int = 10,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    what: str = "",
) -> list[str]:
    """Call in batches until ``done(outcomes of a batch)``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    outcomes: list[str] = []
    while time.monotonic() < deadline:
        outcomes = caller.calls(batch, headers)
        if done(outcomes):
            return outcomes
        time.sleep(0.05)
    raise AssertionError(
        f"{caller.kind}: timed out after {timeout}s waiting for {what}; last: {outcomes}"
    )
