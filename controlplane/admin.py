"""The admin HTTP API: health, workload registration and the status views.

    GET    /livez                         200 while the process runs
    GET    /readyz                        200 once config is loaded and xDS is serving (and
                                          its latest rebuild was not refused), else 503
    POST   /v1/workloads                  register (JSON body) -> 201 {id, ttl_seconds} | 400
    PUT    /v1/workloads/{id}/heartbeat   200 {id, ttl_seconds} | 404
    DELETE /v1/workloads/{id}             204 (also for unknown ids)
    GET    /v1/workloads                  the live registrations
    GET    /v1/clients                    per xDS client and type: version and nonce sent,
                                          version ACKed / NACK error, SYNCED/STALE/NACKED/NOT SENT
    GET    /v1/clients/{node}             what that client was last sent, per type | 404
    GET    /metrics                       the control plane's metrics (Prometheus text)
    GET    /v1/config                     the config in force, the last refused edit
                                          (parse or translation) and any xDS rebuild error
    POST   /v1/apply, GET|DELETE /v1/resources/...   config through the API
                                          (:mod:`controlplane.admin_config`)

Errors are JSON ``{"error": "field: message", "field": "field"}``. With a
token file every route but ``/livez`` and ``/readyz`` needs a bearer token of
the right scope (:mod:`controlplane.admin_auth`); without one the API listens
on loopback only.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import structlog
from aiohttp import web

from controlplane.addresses import HostPort
from controlplane.admin_auth import TokenStore, auth_middleware
from controlplane.admin_config import add_config_routes
from controlplane.applied_config import AppliedConfig
from controlplane.cp_metrics import CONTENT_TYPE
from controlplane.model import RegisteredWorkload
from controlplane.registration_json import registration_from_json
from controlplane.registry import RegistrationRejected, Registry, UnknownRegistration

log = structlog.get_logger(__name__)


class AdminAddressError(ValueError):
    """The admin address is not allowed (non-loopback without the opt-in)."""


class StatusSource(Protocol):
    """What the admin API reads from the running control plane."""

    def not_ready_reasons(self) -> list[str]:
        """Why the control plane is not ready; empty when it is."""

    def clients_status(self) -> list[dict[str, Any]]:
        """Per connected xDS client and resource type: ACKed version or NACK error."""

    def client_detail(self, node_id: str) -> dict[str, Any] | None:
        """What the client ``node_id`` was last sent; None when it is not connected."""

    def metrics_text(self) -> str:
        """The control plane's metrics in the Prometheus text format."""

    def config_status(self) -> dict[str, Any]:
        """The config files in force and the last config error, if any."""


def check_admin_address(address: HostPort, *, allow_remote: bool) -> None:
    """Refuse a non-loopback admin address unless explicitly allowed."""
    if address.is_loopback or allow_remote:
        return
    raise AdminAddressError(
        f"--admin-address {address}: the admin API only listens on loopback (127.0.0.1, ::1, "
        "localhost) unless --admin-allow-remote is given (which needs --admin-token-file)"
    )


def check_remote_needs_tokens(*, allow_remote: bool, token_file: object | None) -> None:
    """Refuse ``--admin-allow-remote`` without ``--admin-token-file``."""
    if allow_remote and token_file is None:
        raise AdminAddressError(
            "--admin-allow-remote needs --admin-token-file: without tokens anyone who can "
            "reach the admin API could change the mesh"
        )


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=str, sort_keys=True),
        status=status,
        content_type="application/json",
    )


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, str] = {"error": message}
    if field is not None:
        body["field"] = field
    return _json(body, status)


def workload_json(workload: RegisteredWorkload, expires_in_s: float | None) -> dict[str, Any]:
    """A registration as the API shows it (ports keyed by service port, as posted)."""
    return {
        "id": workload.id,
        "service": workload.service,
        "address": workload.address,
        "ports": {str(sp): tp for sp, tp in sorted(workload.ports.items())},
        "labels": dict(workload.labels),
        "locality": workload.locality.as_dict(),
        "weight": workload.weight,
        "ttl_seconds": workload.ttl_s,
        "namespace": workload.namespace,
        "identity": workload.identity,
        "expires_in_seconds": None if expires_in_s is None else round(expires_in_s, 3),
    }


class AdminHandlers:
    """Request handlers over the registry and the control plane's status."""

    def __init__(self, registry: Registry, status: StatusSource) -> None:
        self._registry = registry
        self._status = status

    async def livez(self, _: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def readyz(self, _: web.Request) -> web.Response:
        reasons = self._status.not_ready_reasons()
        if reasons:
            return _json({"status": "not ready", "reasons": reasons}, 503)
        return _json({"status": "ready"})

    async def register(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            return _error(400, f"body: not valid JSON: {exc}", "body")
        try:
            workload = self._registry.register(registration_from_json(body))
        except RegistrationRejected as exc:
            log.info("admin_registration_rejected", field=exc.field, error=str(exc))
            return _error(400, str(exc), exc.field)
        response = _json({"id": workload.id, "ttl_seconds": workload.ttl_s}, 201)
        response.headers["Location"] = f"/v1/workloads/{workload.id}"
        return response

    async def heartbeat(self, request: web.Request) -> web.Response:
        workload_id = request.match_info["id"]
        try:
            ttl_s = self._registry.heartbeat(workload_id)
        except UnknownRegistration as exc:
            return _error(404, str(exc))
        return _json({"id": workload_id, "ttl_seconds": ttl_s})

    async def deregister(self, request: web.Request) -> web.Response:
        self._registry.deregister(request.match_info["id"])
        return web.Response(status=204)

    async def list_workloads(self, _: web.Request) -> web.Response:
        workloads = [
            workload_json(w, self._registry.remaining_ttl(w.id)) for w in self._registry.snapshot()
        ]
        return _json({"workloads": workloads})

    async def clients(self, _: web.Request) -> web.Response:
        return _json({"clients": self._status.clients_status()})

    async def client(self, request: web.Request) -> web.Response:
        node_id = request.match_info["node"]
        detail = self._status.client_detail(node_id)
        if detail is None:
            return _error(404, f"node {node_id!r}: not connected to this control plane", "node")
        return _json(detail)

    async def metrics(self, _: web.Request) -> web.Response:
        body = self._status.metrics_text().encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def config(self, _: web.Request) -> web.Response:
        return _json(self._status.config_status())


def build_admin_app(
    registry: Registry,
    status: StatusSource,
    *,
    tokens: TokenStore | None = None,
    applied: AppliedConfig | None = None,
) -> web.Application:
    """The admin app; with ``tokens`` every call but /livez and /readyz needs one;
    with ``applied`` the config routes are served."""
    handlers = AdminHandlers(registry, status)
    app = web.Application(middlewares=[auth_middleware(tokens)] if tokens is not None else [])
    app.router.add_get("/livez", handlers.livez)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_post("/v1/workloads", handlers.register)
    app.router.add_get("/v1/workloads", handlers.list_workloads)
    app.router.add_put("/v1/workloads/{id}/heartbeat", handlers.heartbeat)
    app.router.add_delete("/v1/workloads/{id}", handlers.deregister)
    app.router.add_get("/v1/clients", handlers.clients)
    app.router.add_get("/v1/clients/{node:.+}", handlers.client)
    app.router.add_get("/metrics", handlers.metrics)
    app.router.add_get("/v1/config", handlers.config)
    if applied is not None:
        add_config_routes(app, applied)
    return app


class AdminServer:
    """Runs the admin app on one address; ``port`` is the bound port after start."""

    def __init__(self, app: web.Application, address: HostPort) -> None:
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._address = address
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the admin server is not started")
        return self._port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._address.host, self._address.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(f"admin address {self._address}: cannot listen: {exc}") from exc
        addresses: list[Any] = list(self._runner.addresses)
        self._port = int(addresses[0][1])
        log.info("admin_serving", address=str(self._address.with_port(self._port)))

    async def stop(self) -> None:
        await self._runner.cleanup()
