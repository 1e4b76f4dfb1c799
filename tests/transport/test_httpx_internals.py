"""Every read of an httpx or httpcore internal lives in ``_httpx_internals`` with its
feature detection: each helper answers the same through httpx's internals (the
installed httpx) and through its fallback (what a future httpx that moved them gets),
forced here by monkeypatching the detection; and no other module reads one."""

from __future__ import annotations

import ast
import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpcore
import httpx
import pytest

import meshlib
from meshlib.errors import SecurityError
from meshlib.transport import _httpx_internals, http_route_memo
from meshlib.transport._httpx_internals import (
    copy_request,
    endpoint_url,
    fast_url_supported,
    header_named,
    header_set,
    host_header,
)
from meshlib.transport.endpoint_tls import EndpointSSLContext
from meshlib.transport.pool_settings import AsyncClusterHTTPTransport, ClusterHTTPTransport
from meshlib.transport.tls_backend import AsyncTlsNetworkBackend, TlsNetworkBackend, install_tls
from meshlib.xds_client.resources import Endpoint
from tests.routing.fake_xds import FakeXds
from tests.support.backends import http_backends
from tests.support.echo_servers import http_echoes
from tests.transport.call_plan_setup import publish

INTERNALS = pytest.mark.parametrize("internals", [True, False], ids=["internals", "public"])

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_httpx_internals, "_ENDPOINT_URLS", {})


def _use(internals: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if internals:
        assert _httpx_internals.FAST_HEADERS and fast_url_supported(), "httpx changed inside"
        assert _httpx_internals.COPIES_REQUEST_DICT, "httpx changed inside"
    monkeypatch.setattr(_httpx_internals, "FAST_HEADERS", internals)
    monkeypatch.setattr(_httpx_internals, "_FAST_URL", internals)
    monkeypatch.setattr(_httpx_internals, "COPIES_REQUEST_DICT", internals)
    monkeypatch.setattr(http_route_memo, "_MEMOISABLE", internals)


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


@INTERNALS
def test_copy_request_keeps_everything_and_the_original(
    internals: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(internals, monkeypatch)
    original = httpx.Request(
        "POST", "http://svc:8080/a", content=b"body", extensions={"timeout": {"read": 1.0}}
    )
    copy = copy_request(original)
    assert (copy.method, copy.url, copy.content) == ("POST", original.url, b"body")
    assert list(copy.headers.raw) == list(original.headers.raw)
    assert copy.extensions == original.extensions
    copy.url = httpx.URL("http://10.0.0.7:9090/a")
    copy.headers = header_set(copy.headers, b"x-deadline", "5")
    copy.extensions = {}
    assert original.url == "http://svc:8080/a" and "x-deadline" not in original.headers
    assert original.extensions == {"timeout": {"read": 1.0}}


@INTERNALS
def test_copy_request_of_a_stream_stays_a_stream_until_read(
    internals: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(internals, monkeypatch)
    streamed = httpx.Request("PUT", "http://svc/", content=iter([b"a", b"b"]))
    copy = copy_request(streamed)
    with pytest.raises(httpx.RequestNotRead):
        copy.content  # noqa: B018 - not replayable: the body is a stream not yet read
    assert copy.stream is streamed.stream
    streamed.read()  # read into memory: a copy made now replays it, headers untouched
    again = copy_request(streamed)
    assert again.content == b"ab"
    assert list(again.headers.raw) == list(streamed.headers.raw)
    assert "content-length" not in again.headers  # still the chunked body it was


@INTERNALS
def test_a_mesh_request_through_either_form(
    internals: bool, monkeypatch: pytest.MonkeyPatch, feed: FakeXds
) -> None:
    """The whole request path (route memo, endpoint URL, try copy, deadline header)
    answers the same with httpx's internals read or with every fallback."""
    _use(internals, monkeypatch)
    with http_echoes(["a"]) as (echo,), meshlib.Mesh.with_xds_client(feed) as mesh:
        target = publish(feed, "inside" if internals else "public", [echo.port])
        with mesh.http_client() as http:
            for _ in range(2):  # the second from the memo / the built URL
                response = http.post(f"http://{target}/p?q=1", content=b"x")
                assert response.status_code == 200
    seen = echo.seen()
    assert [(s.method, s.path, s.host) for s in seen] == [("POST", "/p?q=1", target)] * 2
    assert all("x-meshlib-deadline-ms" in s.headers for s in seen)


def _tls_refused(port: int, transport: httpx.BaseTransport) -> None:
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/")


def test_install_tls_runs_tls_on_every_connection() -> None:
    """The internal path: the pool's backend is wrapped, so a plaintext peer fails the
    handshake (a connect error), where the same transport without it is answered."""
    context = ssl.create_default_context()
    with http_backends(1) as (backend,):
        with httpx.Client(transport=httpx.HTTPTransport()) as plain:
            assert plain.get(f"http://127.0.0.1:{backend.port}/").status_code == 200
        transport = httpx.HTTPTransport(verify=context)
        install_tls(transport, context)
        assert isinstance(transport._pool._network_backend, TlsNetworkBackend)
        _tls_refused(backend.port, transport)

        async def refused_async() -> None:
            transport = httpx.AsyncHTTPTransport(verify=context)
            install_tls(transport, context)
            assert isinstance(transport._pool._network_backend, AsyncTlsNetworkBackend)
            async with httpx.AsyncClient(transport=transport) as client:
                with pytest.raises(httpx.ConnectError):
                    await client.get(f"http://127.0.0.1:{backend.port}/")

        asyncio.run(refused_async())


@pytest.fixture(params=["_POOL_ATTRIBUTE", "_BACKEND_ATTRIBUTE"])
def _moved(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx (or httpcore) keeping the pool (or its backend) under another name."""
    monkeypatch.setattr(_httpx_internals, request.param, "_moved_elsewhere")


@pytest.mark.usefixtures("_moved")
def test_an_httpx_without_the_pool_refuses_mtls_at_construction() -> None:
    """The fallback: no public way to put TLS under httpx's pool, so the endpoint
    transport is refused when it is made (never plaintext, never an AttributeError
    at the first request); without mTLS nothing internal is read."""
    for cls in (ClusterHTTPTransport, AsyncClusterHTTPTransport):
        with pytest.raises(SecurityError, match=r"httpx .* mTLS cannot be carried"):
            cls(None, verify=EndpointSSLContext(ssl.PROTOCOL_TLS_CLIENT))
        assert cls(None, verify=ssl.create_default_context()).connect_timeout_s is None


def test_a_backend_of_another_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = httpx.HTTPTransport()
    monkeypatch.setattr(transport._pool, "_network_backend", httpcore.AnyIOBackend())
    with pytest.raises(SecurityError, match="mTLS cannot be carried"):
        install_tls(transport, ssl.create_default_context())


#: httpx / httpcore private names meshlib reads (only in ``_httpx_internals``).
_PRIVATE_NAMES = frozenset(
    {"_uri_reference", "_list", "_encoding", "_content", "_pool", "_network_backend"}
)


def _private_reads(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in _PRIVATE_NAMES:
                yield node.attr
            owner = node.value
            if (
                node.attr in ("__new__", "__dict__")
                and isinstance(owner, ast.Attribute)
                and isinstance(owner.value, ast.Name)
                and owner.value.id in ("httpx", "httpcore")
            ):
                yield f"{owner.value.id}.{owner.attr}.{node.attr}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
        ):
            names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            yield from (n for n in names if n in _PRIVATE_NAMES)


def test_only_one_module_reads_httpx_internals() -> None:
    allowed = ROOT / "meshlib/transport/_httpx_internals.py"
    for package in ("meshlib", "controlplane"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == allowed or "_protos" in path.parts:
                continue
            source = path.read_text()
            if "httpx" not in source and "httpcore" not in source:
                continue
            found = sorted(set(_private_reads(ast.parse(source))))
            assert not found, f"{path.relative_to(ROOT)} reads httpx internals {found}"
    inside = set(_private_reads(ast.parse(allowed.read_text())))
    assert inside >= {"_uri_reference", "_list", "_encoding", "httpx.Request.__new__"}
