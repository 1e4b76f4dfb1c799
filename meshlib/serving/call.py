"""What a server policy sees of an incoming call, the same for gRPC and HTTP.

The adapters build one :class:`IncomingCall` per call; what costs something to
read (the headers as a mapping, the caller's deadline) is read on first use,
so a policy that does not look pays nothing for it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Literal

from meshlib.resilience.deadline import Deadline
from meshlib.security.peer import PeerTls

Protocol = Literal["grpc", "http"]
RawHeaders = Iterable[tuple[str | bytes, str | bytes]]

_UNREAD: Final = object()


def _text(name: str, value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    if name.endswith("-bin"):  # gRPC binary metadata: as it travels, base64
        return base64.b64encode(value).decode("ascii")
    return value.decode("latin-1")


def header_map(raw: RawHeaders) -> dict[str, str]:
    """Lower-case names; a header sent several times has its values joined by ``","``."""
    headers: dict[str, str] = {}
    for key, value in raw:
        name = (key.decode("latin-1") if isinstance(key, bytes) else key).lower()
        text = _text(name, value)
        headers[name] = f"{headers[name]},{text}" if name in headers else text
    return headers


class IncomingCall:
    """One incoming call: ``protocol`` (``"grpc"`` or ``"http"``), ``method`` (the
    gRPC method path ``/pkg.Service/Method``, or the HTTP method), ``path`` (the
    gRPC method path again, or the HTTP path), ``peer`` (``HOST:PORT`` of the
    caller, None when the server does not say), :attr:`headers`, :meth:`deadline`
    and :meth:`peer_tls`; ``local``, ``query``, ``sni`` and ``secure`` (the connection
    is TLS) when the server knows them.
    """

    __slots__ = (
        "_deadline",
        "_headers",
        "_peer_tls",
        "_raw",
        "_read_deadline",
        "_read_peer_tls",
        "header_edits",
        "local",
        "method",
        "path",
        "peer",
        "protocol",
        "query",
        "secure",
        "sni",
    )

    def __init__(
        self,
        *,
        protocol: Protocol,
        method: str,
        path: str,
        peer: str | None,
        headers: RawHeaders,
        deadline: Callable[[], Deadline | None],
        peer_tls: Callable[[], PeerTls | None] | None = None,
        local: tuple[str, int] | None = None,
        query: str = "",
        sni: str = "",
        secure: bool | None = None,
    ) -> None:
        self.protocol: Protocol = protocol
        self.method = method
        self.path = path
        self.peer = peer
        self._raw = headers
        self._headers: dict[str, str] | None = None
        self._read_deadline = deadline
        self._deadline: object = _UNREAD
        self._read_peer_tls = peer_tls
        self._peer_tls: object = _UNREAD
        self.local = local  # (IP, port) the call came in on, when the server says
        self.query = query  # the HTTP query string ("" for gRPC)
        self.sni = sni  # the TLS server name the caller asked for ("" when unknown)
        self.secure = secure  # whether the connection is TLS (None: the server does not say)
        # What a policy changes in the request the handler sees: (remove, add); HTTP only.
        self.header_edits: tuple[frozenset[str], Mapping[str, str]] | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        """Request headers (HTTP) or invocation metadata (gRPC): see :func:`header_map`."""
        if self._headers is None:
            self._headers = header_map(self._raw)
        return self._headers

    def deadline(self) -> Deadline | None:
        """The caller's deadline as the transport reports it (gRPC: ``grpc-timeout``;
        HTTP: ``x-meshlib-deadline-ms``, ``grpc-timeout``, Envoy's
        ``x-envoy-expected-rq-timeout-ms``, the earliest). A malformed value raises
        :class:`~meshlib.errors.ResilienceValueError` naming the header."""
        if self._deadline is _UNREAD:
            self._deadline = self._read_deadline()
        deadline: Deadline | None = self._deadline  # type: ignore[assignment]
        return deadline

    def peer_tls(self) -> PeerTls | None:
        """The caller's TLS side (its verified certificate and SPIFFE ID), read from the
        server on first use (:mod:`meshlib.security.peer`); None over plaintext."""
        if self._peer_tls is _UNREAD:
            read = self._read_peer_tls
            self._peer_tls = None if read is None else read()
        found: PeerTls | None = self._peer_tls  # type: ignore[assignment]
        return found

    def __repr__(self) -> str:
        return f"IncomingCall({self.protocol} {self.method} {self.path} from {self.peer})"
