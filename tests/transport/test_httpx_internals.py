"""Every read of an httpx internal lives in ``http_routing`` with its feature detection:
each helper answers the same through httpx's internals (the installed httpx) and
through the public API (the fallback a future httpx would take)."""

from __future__ import annotations

import httpx
import pytest

from meshlib.transport import http_routing
from meshlib.transport.http_routing import (
    endpoint_url,
    fast_url_supported,
    header_named,
    header_set,
    host_header,
)
from meshlib.xds_client.resources import Endpoint

INTERNALS = pytest.mark.parametrize("internals", [True, False], ids=["internals", "public"])


@pytest.fixture(autouse=True)
def _fresh_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_routing, "_ENDPOINT_URLS", {})


def _use(internals: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if internals:
        assert http_routing.FAST_HEADERS and fast_url_supported(), "httpx changed inside"
    monkeypatch.setattr(http_routing, "FAST_HEADERS", internals)
    monkeypatch.setattr(http_routing, "_FAST_URL", internals)


def _request() -> httpx.Request:
    return httpx.Request(
        "GET", "http://svc:8080/a/b?x=1", headers={"Host": "svc:8080", "X-Fault": "1"}
    )


@INTERNALS
def test_host_header_and_header_named(internals: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    _use(internals, monkeypatch)
    request = _request()
    assert host_header(request) == "svc:8080"
    assert host_header(httpx.Request("GET", "http://a/", headers=[])) == "a"
    assert header_named(request, frozenset({b"x-fault"}))
    assert not header_named(request, frozenset({b"x-other"}))
    assert not header_named(request, frozenset())


@INTERNALS
def test_header_set_copies_and_replaces(internals: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    _use(internals, monkeypatch)
    original = _request().headers
    added = header_set(original, b"x-deadline", "250")
    assert added["x-deadline"] == "250" and "x-deadline" not in original
    replaced = header_set(added, b"x-deadline", "100")
    assert replaced.get_list("x-deadline") == ["100"]
    assert added["x-deadline"] == "250"  # the copy it was made from is unchanged
    assert replaced["host"] == "svc:8080" and replaced["x-fault"] == "1"


@INTERNALS
def test_endpoint_url_aims_at_the_endpoint(
    internals: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(internals, monkeypatch)
    url = httpx.URL("http://svc:8080/a/b?x=1")
    endpoint = Endpoint("10.0.0.7", 9090)
    assert str(endpoint_url(url, endpoint, None)) == "http://10.0.0.7:9090/a/b?x=1"
    assert str(endpoint_url(url, endpoint, "/v2/b?y=2")) == "http://10.0.0.7:9090/v2/b?y=2"
    assert str(url) == "http://svc:8080/a/b?x=1"
