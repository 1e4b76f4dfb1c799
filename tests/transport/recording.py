"""A LoadReporter that records every call, and how to install it (tests only)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from meshlib.balancing.picker import Outcome
from meshlib.routing import service as service_module
from meshlib.routing.snapshot import ClusterState
from meshlib.xds_client.resources import Endpoint


class Recorder:
    """A LoadReporter that remembers every call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.finished: list[tuple[str, Outcome]] = []

    def call_started(self, endpoint: Endpoint) -> None:
        with self.lock:
            self.started.append(endpoint.authority)

    def call_finished(self, endpoint: Endpoint, outcome: Outcome, latency_s: float) -> None:
        assert latency_s >= 0
        with self.lock:
            self.finished.append((endpoint.authority, outcome))


def install_recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Every cluster state built from now on reports to one Recorder."""
    recording = Recorder()
    build = service_module.build_cluster_state

    def with_recorder(*args: object, **kwargs: object) -> ClusterState:
        state = build(*args, **kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(state, reporter=recording)

    monkeypatch.setattr(service_module, "build_cluster_state", with_recorder)
    return recording
