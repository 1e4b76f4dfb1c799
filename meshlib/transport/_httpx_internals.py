"""Every read or write of an httpx or httpcore internal, each with its feature detection.

meshlib talks to httpx through its public API except in a few places where the
public API costs per request what an internal read does not, or has no answer
at all. Each lives here, detected once (at import, or at the transport's
construction), with what a future httpx that moved it gets instead:

- the parsed URL (``URL._uri_reference``, a 7-field named tuple): rebuilt with
  the endpoint in place (:func:`endpoint_url`) and used as a memo key
  (:func:`url_key`); else ``URL.copy_with`` and no memo (:func:`fast_url_supported`);
- the raw header list (``Headers._list`` of (name, lower-case name, value)):
  looked up and extended without lowering or re-parsing (:func:`host_header`,
  :func:`header_named`, :func:`header_set`); else the public ``raw`` list and item
  assignment (:data:`FAST_HEADERS`);
- a request's state in its ``__dict__`` (``_content`` included): one try's copy
  made without re-encoding (:func:`copy_request`); else ``Request(stream=...)``,
  as httpx copies requests for redirects (:data:`COPIES_REQUEST_DICT`);
- the httpcore pool of an endpoint transport (``HTTPTransport._pool``) and its
  ``_network_backend``: wrapped for mTLS (:func:`wrap_network_backend`). httpx
  takes no backend, so there is no public form: False at the transport's
  construction, and the caller refuses (never plaintext, never an AttributeError
  at the first request).

Tests: ``tests/transport/test_httpx_internals.py`` (each internal and its fallback).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import httpx

from meshlib.xds_client.resources import Endpoint

_URL_FIELDS = ("scheme", "userinfo", "host", "port", "path", "query", "fragment")


def fast_url_supported() -> bool:
    """Whether httpx keeps a URL as the parsed named tuple read here (else the
    public, slower API is used)."""
    reference = getattr(httpx.URL("http://a/"), "_uri_reference", None)
    return isinstance(reference, tuple) and getattr(reference, "_fields", None) == _URL_FIELDS


_FAST_URL = fast_url_supported()


def _headers_inside_known() -> bool:
    headers = httpx.Headers({"A": "b"})
    return getattr(headers, "_list", None) == [(b"A", b"a", b"b")] and hasattr(headers, "_encoding")


#: httpx keeps headers as a list of (name, lower-case name, value) bytes: read as such,
#: a lookup needs no list built and no name lowered (else the public API is used).
FAST_HEADERS: Final = _headers_inside_known()


def _request_dict_known() -> bool:
    try:
        source = httpx.Request("POST", "http://a/", content=b"x")
        copy = httpx.Request.__new__(httpx.Request)
        copy.__dict__.update(source.__dict__)
        return (
            copy.content == b"x"
            and copy.method == "POST"
            and copy.url is source.url
            and copy.headers is source.headers
            and copy.stream is source.stream
        )
    except (AttributeError, TypeError, httpx.RequestNotRead):
        return False


#: httpx keeps a request's whole state (its read body included) in its ``__dict__``:
#: a copy is one dict update (else rebuilt through the public constructor).
COPIES_REQUEST_DICT: Final = _request_dict_known()


def copy_request(request: httpx.Request) -> httpx.Request:
    """A shallow copy of ``request`` (its URL, headers, body and extensions shared,
    nothing re-encoded), for one try to change without touching the caller's."""
    if COPIES_REQUEST_DICT:
        outgoing: httpx.Request = httpx.Request.__new__(httpx.Request)
        outgoing.__dict__.update(request.__dict__)
        return outgoing
    return _copy_public(request)


def _copy_public(request: httpx.Request) -> httpx.Request:
    """The public copy (httpx's own way for redirects): the same stream, no header
    added; a body already read is read again from it (bytes, so it stays replayable)."""
    outgoing = httpx.Request(
        request.method,
        request.url,
        headers=request.headers,
        stream=request.stream,
        extensions=request.extensions,
    )
    try:
        request.content  # noqa: B018 - raises when the body is a stream not yet read
    except httpx.RequestNotRead:
        return outgoing
    outgoing.read()
    return outgoing


#: Outgoing URLs by (parsed URL, endpoint, path): the same request URL aimed at the
#: same endpoint is the same URL (httpx URLs are immutable), so it is built once.
_ENDPOINT_URLS: dict[tuple[object, str, str | None], httpx.URL] = {}
_MAX_ENDPOINT_URLS = 4096


def endpoint_url(url: httpx.URL, endpoint: Endpoint, path: str | None) -> httpx.URL:
    """``url`` aimed at ``endpoint`` (and at ``path``, raw with query, when given).

    httpx's ``copy_with`` re-parses and re-validates the whole URL; the parts
    here are already valid, so the parsed reference (a 7-field named tuple) is
    rebuilt with two (or four) fields replaced, and kept for the next request
    (bounded: once full, started over). Falls back to ``copy_with`` if httpx
    changes inside.
    """
    if not _FAST_URL:
        if path is None:
            return url.copy_with(host=endpoint.address, port=endpoint.port)
        return url.copy_with(host=endpoint.address, port=endpoint.port, raw_path=path.encode())
    reference = url._uri_reference
    key = (reference, endpoint.authority, path)
    built = _ENDPOINT_URLS.get(key)
    if built is not None:
        return built
    scheme, userinfo, _host, _port, old_path, old_query, fragment = reference
    if path is None:
        new = type(reference)(
            scheme, userinfo, endpoint.address, endpoint.port, old_path, old_query, fragment
        )
    else:
        bare, sep, query = path.partition("?")
        new = type(reference)(
            scheme, userinfo, endpoint.address, endpoint.port, bare, query if sep else None,
            fragment,
        )  # fmt: skip
    outgoing: httpx.URL = httpx.URL.__new__(httpx.URL)
    outgoing._uri_reference = new
    if len(_ENDPOINT_URLS) >= _MAX_ENDPOINT_URLS:
        _ENDPOINT_URLS.clear()
    _ENDPOINT_URLS[key] = outgoing
    return outgoing


def url_key(url: httpx.URL) -> object:
    """A hashable key of a parsed URL, the same for the same URL (httpx's parsed
    reference; only when :func:`fast_url_supported`)."""
    return url._uri_reference


def host_header(request: httpx.Request) -> str | None:
    """The request's ``Host`` header as sent (httpx puts it first)."""
    if FAST_HEADERS:
        for _name, lower, raw in request.headers._list:
            if lower == b"host":
                return str(raw.decode("latin-1"))
        return None
    for key, value in request.headers.raw:
        if key.lower() == b"host":
            return value.decode("latin-1")
    return None


def header_set(headers: httpx.Headers, name: bytes, value: str) -> httpx.Headers:
    """A copy of ``headers`` with ``name`` (lower case) set to ``value``: the list copied
    with one item more, unless the header is there already (or httpx changed inside),
    when httpx's own item assignment replaces it."""
    if FAST_HEADERS:
        items: list[tuple[bytes, bytes, bytes]] = headers._list
        for item in items:
            if item[1] == name:
                break
        else:
            copy: httpx.Headers = httpx.Headers.__new__(httpx.Headers)
            copy._list = [*items, (name, name, value.encode())]
            copy._encoding = headers._encoding
            return copy
    copy = httpx.Headers(headers)  # a copy of the list, nothing re-parsed
    copy[name.decode("latin-1")] = value
    return copy


def header_named(request: httpx.Request, names: frozenset[bytes]) -> bool:
    """Whether the request has a header whose lower-case name is in ``names``
    (nothing decoded or lowered when httpx keeps its list as known)."""
    if not names:
        return False
    if FAST_HEADERS:
        for _name, lower, _value in request.headers._list:  # noqa: SIM110 - no genexpr
            if lower in names:
                return True
        return False
    return any(key.lower() in names for key, _ in request.headers.raw)


#: Where httpx's transport keeps its httpcore pool, and the pool its network backend.
_POOL_ATTRIBUTE: Final = "_pool"
_BACKEND_ATTRIBUTE: Final = "_network_backend"


def wrap_network_backend(
    transport: httpx.HTTPTransport | httpx.AsyncHTTPTransport,
    wrap: Callable[[Any], object],
) -> bool:
    """Make ``transport``'s httpcore pool open its connections through
    ``wrap(its network backend)``; call from the transport's constructor.

    False, nothing changed, when this httpx / httpcore keeps them elsewhere (or
    as another kind): httpx takes no network backend, so there is no public way
    and the caller must refuse the transport.
    """
    import httpcore  # loaded by httpx's transport already; not at import (memory)

    pool = getattr(transport, _POOL_ATTRIBUTE, None)
    inner = getattr(pool, _BACKEND_ATTRIBUTE, None)
    expected = (
        httpcore.AsyncNetworkBackend
        if isinstance(transport, httpx.AsyncHTTPTransport)
        else httpcore.NetworkBackend
    )
    if not isinstance(inner, expected):
        return False
    setattr(pool, _BACKEND_ATTRIBUTE, wrap(inner))
    return True
