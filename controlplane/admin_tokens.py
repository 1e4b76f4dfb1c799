"""Admin API routes for join tokens (scope ``admin``, see admin_auth.ROUTE_SCOPES).

POST   /v1/tokens        {"service_account": SA, "namespace": NS?, "ttl": "24h"?}
                         -> 201 {"token", "id", "identity", "expires_at"}
DELETE /v1/tokens/{id}   revoke: the token gets nothing from now on, at every replica
                         (kept in the store) -> 200; 503 when the store fails
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane.ca import Security
from controlplane.config.durations import parse_duration
from controlplane.store import StoreError
from meshlib.errors import IdentityError

DEFAULT_TOKEN_TTL = "24h"
_FIELDS = {"service_account", "namespace", "ttl"}


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


def add_token_routes(app: web.Application, security: Security) -> None:
    async def create(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "body: not JSON")
        if not isinstance(body, dict):
            return _error(400, "body: expected a JSON object")
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            return _error(400, f"unknown field(s): {', '.join(unknown)}", unknown[0])
        account, namespace = body.get("service_account"), body.get("namespace", "default")
        ttl = body.get("ttl", DEFAULT_TOKEN_TTL)
        for name, value in (("service_account", account), ("namespace", namespace), ("ttl", ttl)):
            if not isinstance(value, str) or not value:
                return _error(400, f"{name}: a non-empty string is required", name)
        seconds = parse_duration(str(ttl))
        if isinstance(seconds, str):
            return _error(400, f"ttl: {seconds}", "ttl")
        try:
            issued = security.issue_token(str(namespace), str(account), float(seconds))
        except IdentityError as exc:
            field = "namespace" if str(exc).startswith("namespace") else "service_account"
            return _error(400, str(exc), field)
        except ValueError as exc:
            return _error(400, str(exc), "ttl")
        return web.json_response(
            {
                "token": issued.token,
                "id": issued.token_id,
                "identity": str(issued.identity),
                "expires_at": issued.expires_at,
            },
            status=201,
        )

    async def revoke(request: web.Request) -> web.Response:
        token_id = request.match_info["id"]
        if not token_id.isalnum() or len(token_id) > 64:
            return _error(400, f"id {token_id!r}: not a token id", "id")
        try:
            await security.revoke_token(token_id)
        except StoreError as exc:
            return _error(503, f"not revoked, the store failed: {exc}")
        return web.json_response({"revoked": token_id})

    app.router.add_post("/v1/tokens", create)
    app.router.add_delete("/v1/tokens/{id}", revoke)
