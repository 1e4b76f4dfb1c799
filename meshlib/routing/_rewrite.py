"""Path rewrites and redirect locations, with Envoy's semantics.

``prefix_rewrite`` replaces the part of the path the route matched (the
configured prefix for prefix routes, the whole path for exact and regex
routes), the query kept. ``regex_rewrite`` substitutes every RE2 match in the
path (the query excluded and kept). A redirect's ``Location`` is built as
Envoy's ``Http::Utility::newUri``: scheme, host (the request's, its port
dropped when a port redirect is given or the scheme changes from its
default), port, then the path (``path_redirect`` — its own query, if any,
always kept — or the rewritten path), ``strip_query`` last.
"""

from __future__ import annotations

from meshlib.matching.regex import CompiledSubstitution
from meshlib.xds_client.resources import RedirectAction, RegexRewrite

_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


class PathRewrite:
    """A compiled ``prefix_rewrite`` or ``regex_rewrite`` (at most one)."""

    __slots__ = ("_prefix", "_prefix_length", "_regex")

    def __init__(
        self,
        prefix_rewrite: str | None,
        regex_rewrite: RegexRewrite | None,
        prefix_length: int | None,
        where: str,
    ) -> None:
        if prefix_rewrite is not None and regex_rewrite is not None:
            raise ValueError(f"{where}: both prefix_rewrite and regex_rewrite are set")
        self._prefix = prefix_rewrite
        self._prefix_length = prefix_length
        self._regex = (
            CompiledSubstitution(regex_rewrite.pattern, regex_rewrite.substitution, where)
            if regex_rewrite is not None
            else None
        )

    def apply(self, path: str) -> str:
        """``path`` (which may carry ``?query``) rewritten."""
        bare, sep, query = path.partition("?")
        if self._prefix is not None:
            matched = self._prefix_length if self._prefix_length is not None else len(bare)
            return self._prefix + path[matched:]
        assert self._regex is not None
        return self._regex.apply(bare) + sep + query


def shadow_authority(authority: str) -> str:
    """Envoy's shadow host: ``-shadow`` appended to the host, before any port."""
    if authority.startswith("["):
        end = authority.rfind("]:")
        port_start = end + 1 if end != -1 else -1
    else:
        port_start = authority.rfind(":")
    if port_start == -1:
        return authority + "-shadow"
    return f"{authority[:port_start]}-shadow{authority[port_start:]}"


class RedirectBuilder:
    """Builds the ``Location`` of one route's redirect."""

    __slots__ = ("_config", "_path_has_query", "_rewrite")

    def __init__(self, redirect: RedirectAction, prefix_length: int | None, where: str) -> None:
        chosen = [
            redirect.path_redirect is not None,
            redirect.prefix_rewrite is not None,
            redirect.regex_rewrite is not None,
        ]
        if sum(chosen) > 1:
            raise ValueError(
                f"{where}: only one of path_redirect, prefix_rewrite, regex_rewrite may be set"
            )
        if redirect.response_code not in (301, 302, 303, 307, 308):
            raise ValueError(f"{where}.response_code: {redirect.response_code} is not a redirect")
        self._config = redirect
        self._path_has_query = "?" in (redirect.path_redirect or "")
        self._rewrite = (
            PathRewrite(redirect.prefix_rewrite, redirect.regex_rewrite, prefix_length, where)
            if chosen[1] or chosen[2]
            else None
        )

    @property
    def status(self) -> int:
        return self._config.response_code

    def location(self, scheme: str, authority: str, path: str) -> str:
        config = self._config
        new_scheme = config.scheme or scheme
        new_port = f":{config.port}" if config.port is not None else ""
        host = (
            config.host
            if config.host is not None
            else _request_host(authority, scheme, new_scheme, new_port)
        )
        if config.path_redirect is not None:
            if self._path_has_query:
                new_path = config.path_redirect
            else:
                _, sep, query = path.partition("?")
                new_path = config.path_redirect + sep + query
        elif self._rewrite is not None:
            new_path = self._rewrite.apply(path)
        else:
            new_path = path
        if not new_path.startswith("/"):
            new_path = "/" + new_path
        if config.strip_query and not self._path_has_query:
            new_path = new_path.partition("?")[0]
        return f"{new_scheme}://{host}{new_port}{new_path}"


def _request_host(authority: str, scheme: str, new_scheme: str, new_port: str) -> str:
    """The request's host for the Location (Envoy's ``processRequestHost``)."""
    if authority.startswith("["):
        end = authority.rfind("]:")
        port_start = end + 1 if end != -1 else -1
    else:
        port_start = authority.rfind(":")
    if port_start == -1:
        return authority
    if new_port:
        return authority[:port_start]
    if new_scheme != scheme and _DEFAULT_PORTS.get(scheme) == authority[port_start:]:
        return authority[:port_start]
    return authority
