"""A request the mesh passes through (its HOST:PORT is not a mesh service) that cannot
connect says so, and names the ports the mesh has that host on: a typo'd port or
name otherwise reads as DNS trouble only ('Name or service not known', no name).

The pass-through is the user's own ``transport=`` (documented); here it fails as a
resolver does for a name it does not know, which no loopback server can stand in for."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import meshlib
from meshlib.testing import FakeXds
from tests.support.backends import http_backends


def _no_such_name(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)


@pytest.mark.parametrize(
    ("url", "note"),
    [
        (
            "http://attendees:8081/x",
            "attendees:8081 is not a mesh service, so it was passed through"
            " (the mesh has attendees on port 8080)",
        ),
        ("http://atendees:8080/x", "atendees:8080 is not a mesh service, so it was passed through"),
        (
            "https://attendees:8080/x",
            "https:// URLs pass through; the mesh routes http:// (and brings mTLS itself where"
            " its config says so) (the mesh has attendees on port 8080)",
        ),
        ("http://127.0.0.1:9/x", None),  # none of the mesh's business: httpx's own error
        ("https://example.invalid/x", None),
    ],
)
def test_a_passed_through_request_that_cannot_connect_says_why(
    feed: FakeXds, url: str, note: str | None
) -> None:
    with http_backends(1) as (backend,), meshlib.Mesh.with_xds_client(feed) as mesh:
        feed.set_service("attendees:8080", {"attendees": [f"127.0.0.1:{backend.port}"]})
        sync = mesh.http_client(transport=httpx.MockTransport(_no_such_name))
        assert sync.get("http://attendees:8080/x").status_code == 200  # the mesh's own
        with pytest.raises(httpx.ConnectError) as raised:
            sync.get(url)
        expected = "[Errno -2] Name or service not known" + (f" [{note}]" if note else "")
        assert str(raised.value) == expected

        async def async_get() -> None:
            async with mesh.async_http_client(transport=httpx.MockTransport(_no_such_name)) as http:
                with pytest.raises(httpx.ConnectError) as raised:
                    await http.get(url)
                assert str(raised.value) == expected

        asyncio.run(async_get())


def test_passthrough_hosts_given_as_one_string_is_named(feed: FakeXds) -> None:
    """Not the set of its characters (every other host then routed by the mesh)."""
    with meshlib.Mesh.with_xds_client(feed) as mesh:
        for make in (mesh.http_client, mesh.async_http_client):
            with pytest.raises(TypeError, match="passthrough_hosts must be a list of host names"):
                make(passthrough_hosts="example.com")
        with pytest.raises(TypeError, match=r"got \[1\]"):
            mesh.http_client(passthrough_hosts=[1])  # type: ignore[list-item]
        with mesh.http_client(passthrough_hosts=["Example.com"]):
            pass
