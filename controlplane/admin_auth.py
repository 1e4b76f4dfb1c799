"""Admin API tokens: the token file, the route -> scope table, and the middleware.

The token file (``--admin-token-file``) holds one token a line, ``TOKEN
SCOPE[,SCOPE...]``; ``#`` starts a comment, blank lines are skipped. Scopes are
``read``, ``write``, ``register`` and ``admin`` (``admin`` allows every call;
the others are independent, so an operator's token is usually ``read,write``).

Which scope a call needs is decided in one place, :data:`ROUTE_SCOPES`, matched
on the method and the *route the router resolved* (its pattern, e.g.
``/v1/workloads/{id}``), never on the raw path, so a crafted path cannot borrow
another route's scope. Only ``/livez`` and ``/readyz`` are open; any route not
in the table -- including routes other modules add later and paths that match
nothing -- needs ``read`` for GET/HEAD and ``write`` for anything else.

Tokens are compared in constant time (``hmac.compare_digest``) and never logged.
The file is re-read on SIGHUP and when it changes on disk; a bad edit is refused
(logged with file and line) and the tokens in force stay.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = structlog.get_logger(__name__)

RELOAD_POLL_S = 1.0


class Scope(str, enum.Enum):
    READ = "read"
    WRITE = "write"
    REGISTER = "register"
    ADMIN = "admin"


OPEN = None  # the scope of a route anyone may call
ANY_METHOD = "*"


@dataclass(frozen=True, slots=True)
class RouteScope:
    """``method`` (or ``*``) on routes whose pattern is ``pattern`` or below it."""

    method: str
    pattern: str
    scope: Scope | None
    exact: bool = False

    def matches(self, method: str, pattern: str) -> bool:
        if self.method not in (ANY_METHOD, method):
            return False
        if self.exact:
            return pattern == self.pattern
        return pattern == self.pattern or pattern.startswith(self.pattern.rstrip("/") + "/")


# The one table of who may call what; first match wins. Not listed: GET/HEAD need
# read, every other method needs write (see required_scope).
ROUTE_SCOPES: tuple[RouteScope, ...] = (
    RouteScope(ANY_METHOD, "/livez", OPEN, exact=True),
    RouteScope(ANY_METHOD, "/readyz", OPEN, exact=True),
    RouteScope("POST", "/v1/workloads", Scope.REGISTER, exact=True),
    RouteScope("PUT", "/v1/workloads/{id}/heartbeat", Scope.REGISTER, exact=True),
    RouteScope("DELETE", "/v1/workloads/{id}", Scope.REGISTER, exact=True),
    RouteScope(ANY_METHOD, "/v1/tokens", Scope.ADMIN),
    RouteScope("GET", "/metrics", Scope.READ),
    RouteScope("GET", "/ui", Scope.READ),
)
_READ_METHODS = frozenset({"GET", "HEAD"})


def required_scope(method: str, pattern: str | None) -> Scope | None:
    """The scope a call needs (None: open). ``pattern`` is the resolved route's
    pattern, None when no route matched (the caller still needs a token)."""
    method = "GET" if method == "HEAD" else method
    if pattern is not None:
        for rule in ROUTE_SCOPES:
            if rule.matches(method, pattern):
                return rule.scope
    return Scope.READ if method in _READ_METHODS else Scope.WRITE


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Token:
    secret: bytes
    scopes: frozenset[Scope]
    line: int

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


def parse_tokens(text: str, path: str) -> tuple[Token, ...]:
    """The tokens of a token file's text; raises TokenFileError naming ``path:LINE``."""
    tokens: list[Token] = []
    seen: dict[str, int] = {}
    known = ", ".join(s.value for s in Scope)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path}:{number}"
        fields = line.split()
        if len(fields) == 1:
            raise TokenFileError(f"{where}: missing scope: expected 'TOKEN SCOPE[,SCOPE...]'")
        if len(fields) > 2:
            raise TokenFileError(
                f"{where}: expected 'TOKEN SCOPE[,SCOPE...]' (scopes separated by commas, "
                "no spaces)"
            )
        secret, scope_list = fields
        scopes: set[Scope] = set()
        for name in scope_list.split(","):
            try:
                scopes.add(Scope(name))
            except ValueError:
                shown = repr(name) if name else "an empty scope"
                raise TokenFileError(
                    f"{where}: unknown scope {shown}; scopes are {known}"
                ) from None
        if secret in seen:
            raise TokenFileError(f"{where}: duplicate token (also on line {seen[secret]})")
        seen[secret] = number
        tokens.append(Token(secret.encode(), frozenset(scopes), number))
    if not tokens:
        raise TokenFileError(f"{path}: holds no tokens; every admin call would be refused")
    return tuple(tokens)


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class TokenStore:
    """The tokens in force, loaded from ``path``; :meth:`reload` swaps them whole."""

    def __init__(self, path: str | Path) -> None:
        """Read the file now; raises TokenFileError (unreadable or bad)."""
        self.path = Path(path)
        self._key = _file_key(self.path)
        self._tokens = self._read()

    def _read(self) -> tuple[Token, ...]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TokenFileError(f"--admin-token-file {self.path}: cannot read: {reason}") from exc
        return parse_tokens(text, str(self.path))

    def reload(self) -> bool:
        """Re-read the file; on a bad file keep the tokens in force. True if swapped."""
        self._key = _file_key(self.path)
        try:
            tokens = self._read()
        except TokenFileError as exc:
            log.error("admin_tokens_refused", error=str(exc), kept=len(self._tokens))
            return False
        self._tokens = tokens
        log.info("admin_tokens_loaded", path=str(self.path), tokens=len(tokens))
        return True

    async def watch(self, interval_s: float = RELOAD_POLL_S) -> None:
        """Reload whenever the file changes (inode, size or mtime); runs until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            if _file_key(self.path) != self._key:
                await asyncio.to_thread(self.reload)

    def find(self, presented: str) -> Token | None:
        """The token equal to ``presented``; every token is compared, in constant time."""
        candidate = presented.encode()
        found = None
        for token in self._tokens:
            if hmac.compare_digest(candidate, token.secret):
                found = token
        return found


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _refusal(status: int, message: str, challenge: str) -> web.Response:
    response = web.json_response({"error": message, "field": "Authorization"}, status=status)
    response.headers["WWW-Authenticate"] = challenge
    return response


def _route_pattern(request: web.Request) -> str | None:
    match_info = request.match_info
    if match_info.http_exception is not None:
        return None
    resource = match_info.route.resource
    return None if resource is None else resource.canonical


def auth_middleware(store: TokenStore) -> Middleware:
    """The aiohttp middleware that asks every call for a token of the scope it needs."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        needed = required_scope(request.method, _route_pattern(request))
        if needed is None:
            return await handler(request)
        presented = _bearer(request)
        if presented is None:
            return _refusal(
                401,
                "Authorization: a bearer token is required (Authorization: Bearer TOKEN)",
                'Bearer realm="meshlib-admin"',
            )
        token = store.find(presented)
        if token is None:
            log.info("admin_token_refused", method=request.method, path=request.path)
            return _refusal(
                401,
                "Authorization: the token is not valid",
                'Bearer realm="meshlib-admin", error="invalid_token"',
            )
        if not token.allows(needed):
            log.info(
                "admin_scope_refused",
                method=request.method,
                path=request.path,
                needed=needed.value,
                token_line=token.line,
            )
            scopes = ",".join(sorted(s.value for s in token.scopes))
            return _refusal(
                403,
                f"Authorization: the token's scope ({scopes}) does not allow "
                f"{request.method} {request.path}; it needs {needed.value}",
                f'Bearer realm="meshlib-admin", error="insufficient_scope", scope="{needed.value}"',
            )
        return await handler(request)

    return authenticate
