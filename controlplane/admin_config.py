"""The admin API's config routes (JSON), over :class:`~controlplane.applied_config.AppliedConfig`.

    POST   /v1/apply                       [RESOURCE, ...] or {"documents": [...]}
                                           -> 200 {"items": [{kind, namespace, name,
                                              resourceVersion, result}], "revision": N}
    GET    /v1/resources[?namespace=NS]    every resource -> {"items": [...]}
    GET    /v1/resources/{kind}[?namespace=NS]          -> {"items": [...]}
    GET    /v1/resources/{kind}/{name}[?namespace=NS]   -> the resource | 404
    DELETE /v1/resources/{kind}/{name}[?namespace=NS&resourceVersion=N]
                                           -> 200 {"deleted": {...}, "revision": N}

A list without ``namespace`` covers every namespace; one resource without it is in
``default``. ``kind`` is a kind name, its plural, lower case, or Istio's short name
(``vs``). Refusals: 400 invalid (``issues`` lists every config issue with its
``documents[N].PATH`` field), 404 unknown, 409 stale resourceVersion or a resource a
``--config`` file defines, 503 store failure; the body is ``{"error", "field",
"issues"}``, and nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from controlplane.applied_config import AppliedConfig, ConfigRefused
from controlplane.config.names import dns_label
from controlplane.config.resource import DEFAULT_NAMESPACE

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=str, sort_keys=True),
        status=status,
        content_type="application/json",
    )


def _refused(refusal: ConfigRefused) -> web.Response:
    body: dict[str, Any] = {"error": str(refusal), "issues": refusal.issues}
    if refusal.field is not None:
        body["field"] = refusal.field
    return _json(body, refusal.status)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def parse_body(raw: bytes) -> object:
    """The request body as JSON; raises ConfigRefused (400) saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigRefused(400, f"body: not UTF-8 (byte {exc.start})", "body") from exc
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:
        raise ConfigRefused(400, "body: JSON nested too deeply", "body") from exc
    except ValueError as exc:
        raise ConfigRefused(400, f"body: not valid JSON: {exc}", "body") from exc


def _query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each at most once, none unknown."""
    found: dict[str, str] = {}
    for key, value in request.query.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ConfigRefused(400, f"{key}: unknown query parameter (known: {known})", key)
        if key in found:
            raise ConfigRefused(400, f"{key}: given twice", key)
        found[key] = value
    namespace = found.get("namespace")
    if namespace is not None:
        problem = dns_label(namespace)
        if problem is not None:
            raise ConfigRefused(400, f"namespace: {problem}", "namespace")
    return found


def _refusing(handler: Handler) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ConfigRefused as refusal:
            log.info(
                "admin_config_refused",
                method=request.method,
                path=request.path,
                status=refusal.status,
                field=refusal.field,
            )
            return _refused(refusal)

    return handle


class ConfigRoutes:
    def __init__(self, applied: AppliedConfig) -> None:
        self._applied = applied

    async def apply(self, request: web.Request) -> web.Response:
        _query(request, ())
        body = parse_body(await request.read())
        return _json(await self._applied.apply(body))

    async def list_all(self, request: web.Request) -> web.Response:
        namespace = _query(request, ("namespace",)).get("namespace")
        return _json(self._applied.list_resources(None, namespace))

    async def list_kind(self, request: web.Request) -> web.Response:
        namespace = _query(request, ("namespace",)).get("namespace")
        return _json(self._applied.list_resources(request.match_info["kind"], namespace))

    async def get(self, request: web.Request) -> web.Response:
        namespace = _query(request, ("namespace",)).get("namespace", DEFAULT_NAMESPACE)
        kind, name = request.match_info["kind"], request.match_info["name"]
        return _json(self._applied.get_resource(kind, namespace, name))

    async def delete(self, request: web.Request) -> web.Response:
        query = _query(request, ("namespace", "resourceVersion"))
        kind, name = request.match_info["kind"], request.match_info["name"]
        namespace = query.get("namespace", DEFAULT_NAMESPACE)
        deleted = await self._applied.delete(kind, namespace, name, query.get("resourceVersion"))
        return _json(deleted)


def add_config_routes(app: web.Application, applied: AppliedConfig) -> None:
    """Add the config routes to the admin app."""
    routes = ConfigRoutes(applied)
    app.router.add_post("/v1/apply", _refusing(routes.apply))
    app.router.add_get("/v1/resources", _refusing(routes.list_all))
    app.router.add_get("/v1/resources/{kind}", _refusing(routes.list_kind))
    app.router.add_get("/v1/resources/{kind}/{name}", _refusing(routes.get))
    app.router.add_delete("/v1/resources/{kind}/{name}", _refusing(routes.delete))
