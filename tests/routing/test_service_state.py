"""ServiceState follows LDS → RDS → CDS → EDS from a fake feed and publishes snapshots."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

import pytest

from meshlib.errors import (
    NoHealthyEndpointError,
    RoutingError,
    ServiceNotFoundError,
    ServiceNotReadyError,
)
from meshlib.routing.directory import is_mesh_name, split_target
from meshlib.routing.service import ServiceState
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.xds_client.resources import ClusterResource, ClusterType
from tests.routing.builders import endpoints, listener, prefix_route, route_config
from tests.routing.fake_xds import FakeXds
from tests.transport.polling import eventually

TARGET = "svc:8080"


@pytest.fixture
def feed() -> Iterator[FakeXds]:
    fake = FakeXds()
    yield fake
    fake.close()


def ports_of(snapshot: ServiceSnapshot, path: str = "/", n: int = 6) -> set[int]:
    return {snapshot.route("svc:8080", path, {})[2].port for _ in range(n)}


def test_first_snapshot_after_the_whole_chain(feed: FakeXds) -> None:
    state = ServiceState(TARGET, feed)
    with pytest.raises(ServiceNotReadyError, match="svc:8080"):
        state.wait_ready(0.05)
    feed.set_service(TARGET, {"a": endpoints("a", [("10.0.0.1", 1), ("10.0.0.2", 2)])})
    snapshot = state.wait_ready(3)
    assert ports_of(snapshot) == {1, 2}
    assert snapshot.authorities == {"10.0.0.1:1", "10.0.0.2:2"}
    state.close()


async def test_async_wait_ready(feed: FakeXds) -> None:
    state = ServiceState(TARGET, feed)
    waiter = asyncio.ensure_future(state.wait_ready_async(3))
    await asyncio.sleep(0)
    feed.set_service(TARGET, {"a": endpoints("a", [("10.0.0.1", 1)])})
    snapshot = await waiter
    assert snapshot.version >= 1
    with pytest.raises(ServiceNotReadyError):
        await ServiceState("other:1", feed).wait_ready_async(0.05)
    state.close()


def test_follows_endpoint_and_route_changes_and_cancels_watches(feed: FakeXds) -> None:
    feed.set_service(TARGET, {"a": endpoints("a", [("10.0.0.1", 1)])})
    state = ServiceState(TARGET, feed)
    state.wait_ready(3)
    feed.set("eds", "a", endpoints("a", [("10.0.0.1", 1), ("10.0.0.3", 3)]))
    eventually(lambda: ports_of(state.wait_ready(1)) == {1, 3})

    # New route config name: the old RDS and its clusters are dropped, "b" is watched.
    feed.set("cds", "b", ClusterResource("b", ClusterType.EDS, "b"))
    feed.set("eds", "b", endpoints("b", [("10.0.0.9", 9)]))
    feed.set("rds", "rc2", route_config("rc2", ("svc:8080",), prefix_route("/", "b")))
    feed.set("lds", TARGET, listener(TARGET, "rc2"))
    eventually(lambda: ports_of(state.wait_ready(1)) == {9})
    feed.flush()
    assert feed.active("rds") == {"rc2"}
    assert feed.active("cds") == {"b"}
    assert feed.active("eds") == {"b"}
    state.close()
    feed.flush()
    assert not feed.active("lds") and not feed.active("cds")


def test_make_before_break_keeps_old_snapshot_until_new_cluster_resolves(feed: FakeXds) -> None:
    feed.set_service(TARGET, {"a": endpoints("a", [("10.0.0.1", 1)])})
    state = ServiceState(TARGET, feed)
    first = state.wait_ready(3)
    rc = route_config(f"{TARGET}-routes", ("svc:8080",), prefix_route("/", "late"))
    feed.set("rds", f"{TARGET}-routes", rc)
    feed.flush()
    assert state.view is first  # "late" has no CDS/EDS yet
    feed.set("cds", "late", ClusterResource("late", ClusterType.EDS, "late"))
    feed.set("eds", "late", endpoints("late", [("10.0.0.7", 7)]))
    eventually(lambda: state.view is not first)
    assert ports_of(state.wait_ready(1)) == {7}
    state.close()


def test_listener_not_found_makes_the_service_unavailable(feed: FakeXds) -> None:
    feed.remove("lds", TARGET)
    state = ServiceState(TARGET, feed)
    with pytest.raises(ServiceNotFoundError, match="svc:8080 is not available"):
        state.wait_ready(3)
    feed.set_service(TARGET, {"a": endpoints("a", [("10.0.0.1", 1)])})
    eventually(lambda: isinstance(state.view, ServiceSnapshot))
    state.close()


def test_cluster_and_endpoint_errors_fail_only_that_cluster(feed: FakeXds) -> None:
    feed.set_service(
        TARGET,
        {"a": endpoints("a", [("10.0.0.1", 1)]), "b": endpoints("b", [("10.0.0.2", 2)])},
    )
    state = ServiceState(TARGET, feed)
    state.wait_ready(3)
    feed.remove("cds", "b")
    eventually(lambda: _raises(lambda: state.wait_ready(1).route(TARGET, "/b", {})))
    with pytest.raises(NoHealthyEndpointError, match=r"cluster 'b'.*does not exist"):
        state.wait_ready(1).route(TARGET, "/b/x", {})
    assert state.wait_ready(1).route(TARGET, "/", {})[2].port == 1
    state.close()


def test_ambient_errors_keep_the_last_snapshot(
    feed: FakeXds, caplog: pytest.LogCaptureFixture
) -> None:
    feed.set_service(TARGET, {"a": endpoints("a", [("10.0.0.1", 1)])})
    state = ServiceState(TARGET, feed)
    snapshot = state.wait_ready(3)
    caplog.set_level(logging.DEBUG, logger="meshlib")
    for kind, name in (("lds", TARGET), ("rds", f"{TARGET}-routes"), ("cds", "a"), ("eds", "a")):
        feed.ambient(kind, name)
    feed.flush()
    assert state.view is snapshot
    # The xDS client warns once per lost stream; each watch only notes it (debug).
    ambient = [r for r in caplog.records if r.getMessage().startswith("xds_ambient_error")]
    assert [r.levelno for r in ambient] == [logging.DEBUG] * 4
    state.close()


def test_target_parsing_and_mesh_names() -> None:
    assert split_target("xds:///sessions:50051") == ("sessions", 50051)
    assert split_target("sessions:1") == ("sessions", 1)
    for bad in ("sessions", "xds://auth/sessions:1", "s:0", "s:x"):
        with pytest.raises(ValueError, match="target"):
            split_target(bad)
    for bad in ("xds://sessions:1", "xds:/sessions:1"):  # a slash short
        with pytest.raises(ValueError, match=r"expected xds:///HOST:PORT \(three slashes"):
            split_target(bad)
    for bad in ("dns:///sessions:1", "ipv4:///10.0.0.1:1", "http://sessions:1"):
        with pytest.raises(ValueError, match=r"takes xds:///HOST:PORT or HOST:PORT"):
            split_target(bad)
    assert is_mesh_name("attendees")
    assert not is_mesh_name("127.0.0.1")
    assert not is_mesh_name("::1")
    assert not is_mesh_name("localhost")


def _raises(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except RoutingError:
        return True
    return False
