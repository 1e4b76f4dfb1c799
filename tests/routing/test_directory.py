"""ServiceDirectory: membership from one wildcard LDS watch, service states on demand."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from meshlib.errors import ServiceNotFoundError, ServiceNotReadyError
from meshlib.routing.directory import ServiceDirectory
from meshlib.routing.snapshot import ServiceFailure
from tests.routing.builders import endpoints
from tests.routing.fake_xds import FakeXds
from tests.transport.polling import eventually


@pytest.fixture
def held() -> Iterator[FakeXds]:
    fake = FakeXds(hold_wildcard=True)
    yield fake
    fake.close()


@pytest.fixture
def feed() -> Iterator[FakeXds]:
    fake = FakeXds()
    yield fake
    fake.close()


def test_membership_answers_at_once_and_starts_nothing_for_outsiders(feed: FakeXds) -> None:
    feed.set_service("svc:8080", {"a": endpoints("a", [("10.0.0.1", 1)])})
    directory = ServiceDirectory(lambda: feed, ready_timeout_s=3)
    started = time.monotonic()
    assert directory.is_member("svc:8080")
    assert not directory.is_member("elsewhere:80")
    assert time.monotonic() - started < 1
    assert directory.known_non_member("elsewhere:80")
    assert not directory.known_non_member("svc:8080")
    feed.flush()
    assert feed.active("lds") == set()
    assert feed.wildcard_active("lds")
    directory.close()
    assert not feed.wildcard_active("lds")


def test_waits_for_the_first_service_list(held: FakeXds) -> None:
    directory = ServiceDirectory(lambda: held, ready_timeout_s=0.05)
    with pytest.raises(ServiceNotReadyError, match="service list"):
        directory.is_member("svc:8080")
    assert not directory.known_non_member("svc:8080")  # unknown is not "absent"
    held.set_service("svc:8080", {"a": endpoints("a", [("10.0.0.1", 1)])})
    threading.Timer(0.05, held.release_wildcard).start()
    assert directory.is_member("svc:8080", timeout=3)
    directory.close()


async def test_async_waits_for_the_first_service_list(held: FakeXds) -> None:
    directory = ServiceDirectory(lambda: held, ready_timeout_s=0.05)
    with pytest.raises(ServiceNotReadyError):
        await directory.is_member_async("svc:8080")
    waiter = asyncio.ensure_future(directory.is_member_async("other:1", timeout=3))
    await asyncio.sleep(0)
    held.release_wildcard()
    assert await waiter is False
    directory.close()


def test_membership_follows_config_changes(feed: FakeXds) -> None:
    directory = ServiceDirectory(lambda: feed, ready_timeout_s=3)
    assert not directory.is_member("svc:8080")
    feed.set_service("svc:8080", {"a": endpoints("a", [("10.0.0.1", 1)])})
    eventually(lambda: directory.is_member("svc:8080"))
    state = directory.service("svc:8080")
    assert state.wait_ready(3).version >= 1
    feed.remove("lds", "svc:8080")
    eventually(lambda: directory.known_non_member("svc:8080"))
    eventually(lambda: isinstance(state.view, ServiceFailure))
    assert isinstance(state.view, ServiceFailure)
    assert state.view.error_type is ServiceNotFoundError
    directory.close()


def test_explicit_target_outside_the_mesh_fails_fast(feed: FakeXds) -> None:
    directory = ServiceDirectory(lambda: feed, ready_timeout_s=5)
    started = time.monotonic()
    view = directory.service("missing:1").wait_settled(5)
    assert time.monotonic() - started < 1
    assert isinstance(view, ServiceFailure)
    assert view.error_type is ServiceNotFoundError
    directory.close()


def test_closed_directory_refuses_work(feed: FakeXds) -> None:
    directory = ServiceDirectory(lambda: feed)
    directory.close()
    with pytest.raises(RuntimeError, match="closed"):
        directory.is_member("svc:8080")
    with pytest.raises(RuntimeError, match="closed"):
        directory.service("svc:8080")
