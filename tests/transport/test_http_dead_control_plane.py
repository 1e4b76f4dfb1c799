"""Traffic that is not the mesh's keeps flowing while the control plane is away
(docs/api.md, "Membership"), sync and async: before the first service list, a name
that resolves in DNS passes through, one that does not fails clearly after the wait,
and once the list is known it alone decides, DNS or not."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import meshlib
from meshlib.routing._membership import Membership
from tests.routing.builders import endpoints
from tests.routing.fake_xds import FakeXds
from tests.transport.http_servers import echo_servers
from tests.transport.polling import eventually_async

SYNC, ASYNC = "sync", "async"
KINDS = pytest.mark.parametrize("kind", [SYNC, ASYNC])
# A name the system resolver answers (the short form of 127.0.0.1) that is no IP
# literal to meshlib, so only DNS can tell it is not a mesh service.
RESOLVES = "127.1"
NOWHERE = "nowhere.invalid"  # RFC 2606: never resolves
LONG_WAIT_S = 60.0  # the ready timeout where waiting for it would be the bug
BOUND_S = 20.0  # what the test allows a call that must not wait for it


@pytest.fixture
def dead_bootstrap(tmp_path: Path) -> Iterator[Path]:
    """A bootstrap whose control plane refuses connections (bound, never listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        server = {
            "server_uri": f"127.0.0.1:{sock.getsockname()[1]}",
            "channel_creds": [{"type": "insecure"}],
        }
        path = tmp_path / "bootstrap.json"
        path.write_text(json.dumps({"xds_servers": [server], "node": {"id": "dead-cp"}}))
        yield path


@asynccontextmanager
async def client(kind: str, mesh: meshlib.Mesh) -> AsyncIterator[Any]:
    if kind == SYNC:
        with mesh.http_client(timeout=10.0) as sync_client:
            yield sync_client
    else:
        async with mesh.async_http_client(timeout=10.0) as async_client:
            yield async_client


async def get(kind: str, http: Any, url: str) -> httpx.Response:
    """One GET, bounded by ``BOUND_S`` (sync on a worker thread)."""
    if kind == SYNC:
        return await asyncio.wait_for(asyncio.to_thread(http.get, url), BOUND_S)
    response: httpx.Response = await asyncio.wait_for(http.get(url), BOUND_S)
    return response


def waiting(membership: Membership, kind: str) -> int:
    """How many requests wait for the first service list."""
    if kind == SYNC:
        return len(membership._changed._waiters)  # type: ignore[attr-defined]
    return len(membership._async_waiters)


@KINDS
async def test_a_resolvable_name_passes_through_while_the_control_plane_is_down(
    kind: str, dead_bootstrap: Path
) -> None:
    with echo_servers(1) as (server,):
        async with meshlib.Mesh(bootstrap=dead_bootstrap, ready_timeout_s=LONG_WAIT_S) as mesh:
            async with client(kind, mesh) as http:
                for _ in range(3):  # not once: every call, well before the ready timeout
                    answer = await get(kind, http, f"http://{RESOLVES}:{server.port}/x")
                    assert answer.json()["port"] == server.port
            membership = mesh.directory.membership()
            assert membership.names is None and membership.unreachable is not None


@KINDS
async def test_an_unresolvable_name_fails_clearly_after_the_wait(
    kind: str, dead_bootstrap: Path
) -> None:
    async with (
        meshlib.Mesh(bootstrap=dead_bootstrap, ready_timeout_s=0.3) as mesh,
        client(kind, mesh) as http,
    ):
        with pytest.raises(meshlib.ControlPlaneUnreachableError) as caught:
            await get(kind, http, f"http://{NOWHERE}:8080/")
    error = caught.value
    assert "control plane unreachable" in str(error) and NOWHERE in str(error)
    assert isinstance(error, meshlib.ServiceNotReadyError)
    assert isinstance(error, httpx.ConnectError)


@KINDS
async def test_a_mesh_name_that_resolves_waits_for_the_list_then_is_routed(kind: str) -> None:
    """The control plane not (yet) known down: the request waits for the list, and the
    list, not DNS, says the name is the mesh's."""
    feed = FakeXds(hold_wildcard=True)
    try:
        with echo_servers(2) as (outside, inside):
            target = f"{RESOLVES}:{outside.port}"  # DNS would reach `outside`
            feed.set_service(target, {"in": endpoints("in", [("127.0.0.1", inside.port)])})
            async with meshlib.Mesh.with_xds_client(feed, ready_timeout_s=LONG_WAIT_S) as mesh:
                membership = mesh.directory.membership()
                async with client(kind, mesh) as http:
                    pending = asyncio.ensure_future(get(kind, http, f"http://{target}/"))
                    await eventually_async(lambda: waiting(membership, kind) == 1)
                    feed.release_wildcard()
                    assert (await pending).json()["port"] == inside.port
                    again = await get(kind, http, f"http://{target}/")
                    assert again.json()["port"] == inside.port
    finally:
        feed.close()


@KINDS
async def test_a_name_passed_through_while_down_is_routed_once_the_list_comes(
    kind: str,
) -> None:
    feed = FakeXds(hold_wildcard=True)
    try:
        with echo_servers(2) as (outside, inside):
            target = f"{RESOLVES}:{outside.port}"
            async with meshlib.Mesh.with_xds_client(feed, ready_timeout_s=LONG_WAIT_S) as mesh:
                membership = mesh.directory.membership()
                feed.wildcard_ambient("lds")  # the stream failed before any list
                feed.flush()
                assert membership.unreachable is not None
                async with client(kind, mesh) as http:
                    down = await get(kind, http, f"http://{target}/")
                    assert down.json()["port"] == outside.port  # passed through
                    feed.set_service(target, {"in": endpoints("in", [("127.0.0.1", inside.port)])})
                    feed.release_wildcard()
                    feed.flush()
                    assert membership.names is not None and membership.unreachable is None
                    up = await get(kind, http, f"http://{target}/")
                    assert up.json()["port"] == inside.port  # the mesh's now
    finally:
        feed.close()
