"""``Mesh``: the one object an application holds.

It loads the xDS bootstrap, owns one xDS client (started on first use) and
the directory of services it feeds, hands out httpx clients and gRPC channels
routed through the mesh, registers this process, and closes all of it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import httpx

from meshlib.mesh_identity import mesh_identity
from meshlib.observability.logging import get_logger
from meshlib.routing.directory import ServiceDirectory, split_target
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.routing.watch import WatchSource
from meshlib.transport.grpc_aio_channel import AioMeshChannel
from meshlib.transport.grpc_channel import MeshChannel
from meshlib.transport.http import AsyncMeshTransport, MeshTransport
from meshlib.xds_client import Bootstrap, XdsClient

# Identity, serving and registration are imported where used: a plaintext client
# never loads them (nor cryptography and PyJWT behind them; docs/benchmarks.md).
if TYPE_CHECKING:
    from meshlib.security.keeper import CertificateKeeper
    from meshlib.serving.decision import ServerPolicy
    from meshlib.serving.inbound_policy import InboundPolicy
    from meshlib.transport.registration import Registration

log = get_logger(__name__)

# httpx.Client arguments that configure its transport; we hand them to the mesh's pools too.
_TRANSPORT_KWARGS = ("verify", "cert", "trust_env", "http1", "http2", "limits")


def _check_ready_timeout(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"Mesh: ready_timeout_s must be a number of seconds, got {value!r}")
    if value < 0:
        raise ValueError(f"ready_timeout_s must be >= 0, got {value}")


class Mesh:
    """A proxyless mesh client: ``with meshlib.Mesh() as mesh: ...``.

    ``bootstrap`` is a path to the gRPC xDS bootstrap JSON; None reads
    ``GRPC_XDS_BOOTSTRAP`` / ``GRPC_XDS_BOOTSTRAP_CONFIG``. A request to a
    service whose config has not arrived yet waits up to ``ready_timeout_s``.
    ``token`` is a join token (else ``MESH_TOKEN`` / ``MESH_TOKEN_FILE``): the mesh
    gets its workload certificate here, before any call, keeps it renewed
    (:attr:`certificates`) and reaches the control plane at the token's secure
    address (no bootstrap needed then), waiting up to ``ready_timeout_s`` for a control
    plane that cannot be reached yet; a refusal raises a
    :class:`meshlib.errors.SecurityError` at once. Without a token, the bootstrap's
    ``certificate_providers.default`` files (``meshctl agent``) are the identity.
    """

    def __init__(
        self,
        bootstrap: str | os.PathLike[str] | None = None,
        *,
        token: str | None = None,
        ready_timeout_s: float = 5.0,
    ) -> None:
        _check_ready_timeout(ready_timeout_s)  # before any wait on the control plane
        loaded, keeper = mesh_identity(token, bootstrap, wait_s=ready_timeout_s)
        try:
            self._setup(loaded, None, ready_timeout_s, keeper)
        except BaseException:
            if keeper is not None:
                keeper.close()
            raise

    @classmethod
    def with_xds_client(
        cls,
        client: WatchSource,
        *,
        bootstrap: Bootstrap | None = None,
        ready_timeout_s: float = 5.0,
        certificates: CertificateKeeper | None = None,
    ) -> Mesh:
        """A mesh fed by an existing xDS client (shared, or a test double); not closed by
        us. ``certificates`` gives it an identity (closed with the mesh)."""
        mesh = cls.__new__(cls)
        mesh._setup(bootstrap, client, ready_timeout_s, certificates)
        return mesh

    def _setup(
        self,
        bootstrap: Bootstrap | None,
        client: WatchSource | None,
        ready_timeout_s: float,
        certificates: CertificateKeeper | None,
    ) -> None:
        _check_ready_timeout(ready_timeout_s)
        self.bootstrap = bootstrap
        self.certificates = certificates
        self.ready_timeout_s = ready_timeout_s
        self._client: Any = client
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._closed = False
        self._closeables: list[Any] = []
        self._async_closeables: list[Any] = []
        self._registrations: list[Registration] = []
        self.directory = ServiceDirectory(
            self._xds,
            ready_timeout_s=ready_timeout_s,
            local_locality=bootstrap.node.locality if bootstrap is not None else None,
            certificates=certificates,
        )

    def _xds(self) -> WatchSource:
        """The shared xDS client, started on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this Mesh is closed")
            if self._client is None:
                assert self.bootstrap is not None
                self._client = XdsClient(self.bootstrap)
                log.info("xds_client_started", server=self.bootstrap.server.server_uri)
            client: WatchSource = self._client
            return client

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Mesh is closed")

    def _track(self, item: Any, *, is_async: bool = False) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("this Mesh is closed")
            (self._async_closeables if is_async else self._closeables).append(item)

    # --- clients ---------------------------------------------------------------

    def http_client(
        self,
        *,
        passthrough_hosts: Iterable[str] = (),
        raise_mesh_errors: bool = False,
        **httpx_kwargs: Any,
    ) -> httpx.Client:
        """An ``httpx.Client`` routing mesh hosts; ``transport=`` becomes the pass-through.
        What the mesh ends (fault abort, timeout, overflow, ...) is answered as a sidecar
        would; ``raise_mesh_errors=True`` raises meshlib's typed errors instead."""
        self._check_open()
        pool_options = {k: httpx_kwargs[k] for k in _TRANSPORT_KWARGS if k in httpx_kwargs}
        transport = MeshTransport(
            self,
            passthrough=httpx_kwargs.pop("transport", None),
            passthrough_hosts=passthrough_hosts,
            pool_options=pool_options,
            raise_mesh_errors=raise_mesh_errors,
        )
        client = httpx.Client(transport=transport, **httpx_kwargs)
        self._track(client)
        return client

    def async_http_client(
        self,
        *,
        passthrough_hosts: Iterable[str] = (),
        raise_mesh_errors: bool = False,
        **httpx_kwargs: Any,
    ) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` routing mesh hosts (close it, or ``await mesh.aclose()``)."""
        self._check_open()
        pool_options = {k: httpx_kwargs[k] for k in _TRANSPORT_KWARGS if k in httpx_kwargs}
        transport = AsyncMeshTransport(
            self,
            passthrough=httpx_kwargs.pop("transport", None),
            passthrough_hosts=passthrough_hosts,
            pool_options=pool_options,
            raise_mesh_errors=raise_mesh_errors,
        )
        client = httpx.AsyncClient(transport=transport, **httpx_kwargs)
        self._track(client, is_async=True)
        return client

    def grpc_channel(self, target: str, options: Iterable[tuple[str, Any]] = ()) -> MeshChannel:
        """A ``grpc.Channel`` for ``xds:///HOST:PORT`` (or ``HOST:PORT``)."""
        self._check_open()
        channel = MeshChannel(self, target, options)
        self._track(channel)
        return channel

    def aio_grpc_channel(
        self, target: str, options: Iterable[tuple[str, Any]] = ()
    ) -> AioMeshChannel:
        """A ``grpc.aio.Channel`` for ``xds:///HOST:PORT`` (or ``HOST:PORT``)."""
        self._check_open()
        channel = AioMeshChannel(self, target, options)
        self._track(channel, is_async=True)
        return channel

    def register(
        self,
        service: str,
        port: int,
        labels: Mapping[str, str] | None = None,
        target_port: int | None = None,
        address: str | None = None,
        *,
        weight: int = 1,
        ttl_s: float = 0.0,
        namespace: str = "",
    ) -> Registration:
        """Serve ``service:port`` from this process (listening on ``target_port``, default
        ``port``), in the bootstrap's locality; heartbeats keep it alive until ``close()``
        deregisters it. A refusal raises RegistrationError; while the control plane cannot
        be reached, the registration is pending and keeps trying in the background."""
        self._check_open()
        if self.bootstrap is None:
            raise RuntimeError("register() needs a bootstrap: this Mesh was built without one")
        from meshlib.transport.registration import (
            build_request,
            detect_address,
            open_registration,
        )

        server = self.bootstrap.server
        request = build_request(
            service=service,
            port=port,
            target_port=target_port,
            address=address or detect_address(server.server_uri),
            labels=labels,
            locality=self.bootstrap.node.locality,
            weight=weight,
            ttl_s=ttl_s,
            namespace=namespace,
        )
        registration = open_registration(
            self.bootstrap.xds_servers,
            request,
            on_close=self._forget,
            certificates=self.certificates,
        )
        with self._lock:
            self._registrations.append(registration)
        return registration

    def _forget(self, registration: Registration) -> None:
        with self._lock:
            if registration in self._registrations:
                self._registrations.remove(registration)

    # --- servers ------------------------------------------------------------------

    def server_policies(self) -> tuple[ServerPolicy, ...]:
        """The server-side policies this mesh prescribes, in order (see meshlib.serving):
        what ``grpc_server``, ``aio_grpc_server`` and ``meshlib.asgi.MeshMiddleware`` apply
        (a new inbound policy each time: one per server, watching that server's ports)."""
        from meshlib.serving.stack import server_policies

        return server_policies(inbound=self._inbound_policy())

    def _inbound_policy(self) -> InboundPolicy | None:
        """The inbound listener watch, when the bootstrap names inbound listeners."""
        template = self.bootstrap.server_listener_resource_name_template if self.bootstrap else ""
        if not template:
            return None
        from meshlib.serving.inbound_policy import InboundPolicy

        policy = InboundPolicy(self._xds, template, resolve=self._serving_address)
        self._track(policy)
        return policy

    def _serving_address(self, port: int) -> str:
        """This workload's address (what the control plane names inbound listeners by)."""
        with self._lock:
            registered = [r.address for r in self._registrations]
        if registered or self.bootstrap is None:
            return registered[0] if registered else "127.0.0.1"
        from meshlib.transport.registration import detect_address

        return detect_address(self.bootstrap.server.server_uri)

    def grpc_server(
        self, *args: Any, interceptors: Iterable[Any] = (), **kwargs: Any
    ) -> grpc.Server:
        """``grpc.server(...)`` (same arguments) applying the mesh's server policies to
        every call; its interceptor runs before ``interceptors``. Each port added is
        authorized by its inbound listener (docs/security.md)."""
        from meshlib.serving.inbound_policy import InboundPolicy
        from meshlib.transport.grpc_inbound_server import MeshGrpcServer
        from meshlib.transport.grpc_server import MeshServerInterceptor

        policies = self.server_policies()
        kwargs["interceptors"] = [MeshServerInterceptor(policies=policies), *interceptors]
        server = grpc.server(*args, **kwargs)
        inbound = next((p for p in policies if isinstance(p, InboundPolicy)), None)
        return server if inbound is None else MeshGrpcServer(server, inbound)

    def aio_grpc_server(
        self, *args: Any, interceptors: Iterable[Any] = (), **kwargs: Any
    ) -> grpc.aio.Server:
        """The ``grpc.aio.server(...)`` twin of :meth:`grpc_server`."""
        from meshlib.serving.inbound_policy import InboundPolicy
        from meshlib.transport.grpc_inbound_server import AioMeshGrpcServer
        from meshlib.transport.grpc_server import AioMeshServerInterceptor

        policies = self.server_policies()
        kwargs["interceptors"] = [AioMeshServerInterceptor(policies=policies), *interceptors]
        server = grpc.aio.server(*args, **kwargs)
        inbound = next((p for p in policies if isinstance(p, InboundPolicy)), None)
        return server if inbound is None else AioMeshGrpcServer(server, inbound)

    def server_credentials(self) -> grpc.ServerCredentials:
        """For ``server.add_secure_port``: mTLS with this workload's certificate, client
        certificates required against the mesh root (STRICT), rotated in place. A
        PERMISSIVE or DISABLE port is an ``add_insecure_port`` (docs/security.md).
        SecurityError when the mesh has no identity."""
        from meshlib.security.server_tls import mtls_server_credentials

        return mtls_server_credentials(self.certificates)

    def uvicorn_options(self, *, http: str | type[Any] = "auto") -> dict[str, Any]:
        """``uvicorn.run(app, ..., **mesh.uvicorn_options())``: uvicorn terminating mTLS
        with this workload's certificate (rotated in place) and reporting the caller's
        certificate as the ASGI TLS extension; ``http`` is uvicorn's ``http`` option."""
        from meshlib.transport.uvicorn_tls import uvicorn_options

        return uvicorn_options(self.certificates, http=http)

    # --- introspection ------------------------------------------------------------

    def wait_ready(self, target: str, timeout: float | None = None) -> None:
        """Block until ``HOST:PORT`` has routes and endpoints (RoutingError otherwise)."""
        self.directory.service(_bare(target)).wait_ready(
            self.ready_timeout_s if timeout is None else timeout
        )

    async def wait_ready_async(self, target: str, timeout: float | None = None) -> None:
        await self.directory.service(_bare(target)).wait_ready_async(
            self.ready_timeout_s if timeout is None else timeout
        )

    def config_dump(self) -> dict[str, Any]:
        """The xDS client's dump (cached / ACKed / NACKed) plus meshlib's per-service view."""
        with self._lock:
            client = self._client
        dump: dict[str, Any] = {}
        if client is not None and hasattr(client, "config_dump"):
            dump.update(client.config_dump())
        services: dict[str, Any] = {}
        for state in self.directory.services():
            view = state.view
            if isinstance(view, ServiceSnapshot):
                services[state.target] = {
                    "version": view.version,
                    "route_config": view.route_table.name,
                    "clusters": {
                        name: sorted(cluster.authorities) for name, cluster in view.clusters.items()
                    },
                }
            else:
                services[state.target] = {"error": None if view is None else view.message}
        dump["services"] = services
        return dump

    # --- lifecycle ----------------------------------------------------------------

    def close(self) -> None:
        """Close clients, channels, registrations and the xDS client; idempotent.

        Async clients and channels are closed by :meth:`aclose` (or by you)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            closeables, self._closeables = self._closeables, []
            registrations, self._registrations = self._registrations, []
            client = self._client if self._owns_client else None
        for item in closeables:
            item.close()
        for registration in registrations:
            registration.close()
        self.directory.close()
        if client is not None:
            client.close()
        if self.certificates is not None:
            self.certificates.close()

    async def aclose(self) -> None:
        """Close async clients and channels, then everything :meth:`close` closes."""
        with self._lock:
            items, self._async_closeables = self._async_closeables, []
        for item in items:
            if isinstance(item, httpx.AsyncClient):
                await item.aclose()
            else:
                await item.close()
        self.close()

    def __enter__(self) -> Mesh:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Mesh:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _bare(target: str) -> str:
    """``HOST:PORT`` of ``xds:///HOST:PORT`` or ``HOST:PORT`` (ValueError naming a target
    without a port, or another scheme's, as a channel's)."""
    host, port = split_target(target)
    return f"{host}:{port}"
