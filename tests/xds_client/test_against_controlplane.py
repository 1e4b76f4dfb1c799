"""meshlib's XdsClient against the real control plane process."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlib.errors import XdsConnectionError, XdsError, XdsResourceNotFound
from meshlib.xds_client import ENDPOINTS, LISTENER, XdsClient, load_bootstrap
from meshlib.xds_client.resources import EndpointsResource, ListenerResource
from meshlib.xds_client.watchers import CallbackWatcher
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import running_controlplane
from tests.support.waiting import free_port

pytestmark = pytest.mark.integration

CLUSTER = "outbound|50051||echo"


class Recorder:
    """Collects watcher callbacks in the order they arrive."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, object]] = queue.Queue()

    def watcher(self) -> CallbackWatcher[object]:
        return CallbackWatcher(
            lambda r: self.events.put(("changed", r)),
            lambda e: self.events.put(("resource_error", e)),
            lambda e: self.events.put(("ambient_error", e)),
        )

    def next(self, kind: str, timeout: float = 10.0) -> object:
        while True:
            got_kind, value = self.events.get(timeout=timeout)
            if got_kind == kind:
                return value


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001, 7002]))


@pytest.fixture
def client(tmp_path: Path, config: Path) -> Iterator[tuple[XdsClient, Path]]:
    with running_controlplane(config) as cp:
        bootstrap = load_bootstrap(cp.write_bootstrap(tmp_path / "b.json", "xds-test"))
        xds = XdsClient(bootstrap, resource_timeout_s=2.0)
        try:
            yield xds, config
        finally:
            xds.close()


def _ports(resource: object) -> list[int]:
    assert isinstance(resource, EndpointsResource)
    return sorted(e.port for e in resource.all_endpoints())


def test_initial_fetch_update_and_delete(client: tuple[XdsClient, Path]) -> None:
    xds, config = client
    listener, endpoints = Recorder(), Recorder()
    xds.watch(LISTENER, "echo:50051", listener.watcher())
    xds.watch(ENDPOINTS, CLUSTER, endpoints.watcher())

    got = listener.next("changed")
    assert isinstance(got, ListenerResource)
    assert got.route_config_name == "echo:50051"
    assert _ports(endpoints.next("changed")) == [7001, 7002]

    write_config(config, service_entry("echo", 50051, [7003]))
    assert _ports(endpoints.next("changed")) == [7003]

    write_config(config, service_entry("other", 8080, [7004], protocol="HTTP"))
    error = listener.next("resource_error")
    assert isinstance(error, XdsResourceNotFound)


def test_resource_that_does_not_exist(client: tuple[XdsClient, Path]) -> None:
    xds, _ = client
    missing = Recorder()
    xds.watch(LISTENER, "nope:1", missing.watcher())
    assert isinstance(missing.next("resource_error"), XdsResourceNotFound)
    dump = xds.config_dump()
    assert "nope:1" in str(dump)


def test_fail_static_then_resync_after_restart(tmp_path: Path, config: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    with running_controlplane(config, xds_address=address) as cp:
        bootstrap = load_bootstrap(cp.write_bootstrap(tmp_path / "b.json", "restart-test"))
        xds = XdsClient(bootstrap, backoff_base_s=0.1, backoff_max_s=0.5)
        endpoints = Recorder()
        xds.watch(ENDPOINTS, CLUSTER, endpoints.watcher())
        assert _ports(endpoints.next("changed")) == [7001, 7002]
    try:
        error = endpoints.next("ambient_error")
        assert isinstance(error, (XdsConnectionError, XdsError))
        # Fail static: the last good resource is still cached while the control plane is away.
        assert "7001" in str(xds.config_dump())
        write_config(config, service_entry("echo", 50051, [7005]))
        with running_controlplane(config, xds_address=address):
            assert _ports(endpoints.next("changed", timeout=20)) == [7005]
    finally:
        xds.close()
