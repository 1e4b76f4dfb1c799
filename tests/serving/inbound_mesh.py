"""meshlib servers driven by the real control plane's inbound listeners.

``controlplane_for(config_text)`` runs ``mesh-controlplane serve`` on a YAML file the
test can rewrite; ``meshlib_mesh(cp)`` is a ``meshlib.Mesh`` on a bootstrap naming the
inbound listener template (``xds.istio.io/grpc/lds/inbound/%s``);
``meshlib_http(dir, yaml_for_port)`` serves ``MeshMiddleware(echo_app, mesh=mesh,
port=PORT)`` under uvicorn (plain or mTLS from test certificates) and ``grpc_server(mesh)``
a ``mesh.grpc_server()`` answering ``/test.Echo/*`` with its method and the caller's
SPIFFE ID, as the grpcio interop server does. ``settled(probe)`` waits until the
listener has arrived (no 503 / UNAVAILABLE).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import meshlib
from controlplane.ca.authority import CertificateAuthority
from meshlib.asgi import MeshMiddleware
from meshlib.security.identity import SpiffeId
from meshlib.transport.uvicorn_tls import tls_protocol
from tests.interop.security_bootstrap import write_bootstrap
from tests.support.asgi_server import serve_asgi
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.spiffe_certs import MeshRoot, write_svid
from tests.support.waiting import wait_for


@contextmanager
def meshlib_mesh(cp: ControlPlaneProcess, directory: Path, node: str) -> Iterator[meshlib.Mesh]:
    bootstrap = write_bootstrap(directory / f"{node}.json", cp.xds_address, node)
    mesh = meshlib.Mesh(str(bootstrap))
    try:
        yield mesh
    finally:
        mesh.close()


@contextmanager
def controlplane_for(directory: Path, text: str) -> Iterator[tuple[ControlPlaneProcess, Path]]:
    config = directory / "mesh.yaml"
    config.write_text(text)
    with running_controlplane(config) as cp:
        yield cp, config


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with the path, the caller's SPIFFE ID and the headers it got."""
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = json.dumps(
        {"path": scope["path"], "peer": meshlib.peer_identity(scope), "headers": headers}
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class _Late:
    """An ASGI app set once the port is known."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class HttpMesh:
    port: int
    url: str
    config: Path  # the control plane's config file (rewrite it to change policy)


@contextmanager
def meshlib_http(
    directory: Path, yaml_for_port: Callable[[int], str], *, tls: Path | None = None
) -> Iterator[HttpMesh]:
    """uvicorn serving ``MeshMiddleware(echo_app, mesh=mesh, port=PORT)`` (mTLS with the
    cert dir ``tls``), the control plane on ``yaml_for_port(PORT)``, the mesh on it."""
    late = _Late()
    options = _tls_options(tls) if tls is not None else {}
    with serve_asgi(late, **options) as url:
        port = int(url.rsplit(":", 1)[1])
        with (
            controlplane_for(directory, yaml_for_port(port)) as (cp, config),
            meshlib_mesh(cp, directory, "server") as mesh,
        ):
            late.app = MeshMiddleware(echo_app, mesh=mesh, port=port)
            yield HttpMesh(port, url, config)


def _tls_options(certs: Path) -> dict[str, Any]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return {
        "ssl_certfile": str(certs / "cert-chain.pem"),
        "ssl_keyfile": str(certs / "key.pem"),
        "ssl_ca_certs": str(certs / "root-cert.pem"),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "http": tls_protocol(H11Protocol),  # fills in the ASGI TLS extension
    }


def https_client(root: MeshRoot, identity: str, directory: Path, url: str) -> httpx.Client:
    """An mTLS httpx client presenting ``identity``'s certificate."""
    certs = write_svid(root, identity, directory / identity.rsplit("/", 1)[1])
    context = ssl.create_default_context(cafile=str(certs / "root-cert.pem"))
    context.check_hostname = False  # SPIFFE IDs are URIs; the chain is what is checked
    context.load_cert_chain(certs / "cert-chain.pem", certs / "key.pem")
    return httpx.Client(base_url=url, verify=context, timeout=5)


def _echo(method: str) -> grpc.RpcMethodHandler:
    def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
        peer = meshlib.peer_identity(context) or "-"
        return f"{method} {peer}".encode()

    return grpc.unary_unary_rpc_method_handler(answer)


class _Echo(grpc.GenericRpcHandler):
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = str(details.method)
        return _echo(method) if method.startswith("/test.Echo/") else None


class AioEcho(grpc.GenericRpcHandler):
    """``_Echo`` for ``grpc.aio`` servers."""

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = str(details.method)
        if not method.startswith("/test.Echo/"):
            return None

        async def answer(request: bytes, context: Any) -> bytes:
            return f"{method} {meshlib.peer_identity(context) or '-'}".encode()

        return grpc.unary_unary_rpc_method_handler(answer)


@contextmanager
def grpc_server(
    mesh: meshlib.Mesh, port: int, credentials: grpc.ServerCredentials | None = None
) -> Iterator[grpc.Server]:
    server = mesh.grpc_server(futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((_Echo(),))
    address = f"127.0.0.1:{port}"
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    server.start()
    try:
        yield server
    finally:
        server.stop(None)


def grpc_answer(channel: grpc.Channel, method: str, headers: dict[str, str]) -> str:
    """``"OK <reply>"`` or the status code's name."""
    try:
        reply = channel.unary_unary(method)(b"", metadata=tuple(headers.items()), timeout=10)
    except grpc.RpcError as error:
        return str(error.code().name)
    return f"OK {reply.decode()}"


def settled(probe: Callable[[], object], unsettled: object) -> None:
    """Wait until ``probe()`` answers something else than ``unsettled`` (the listener
    has arrived: no more 503 / UNAVAILABLE)."""
    wait_for(lambda: probe() != unsettled, timeout=20, what="the inbound listener")


@dataclass(frozen=True)
class Svid:
    """A key and certificate chain (PEM) issued by the control plane's CA classes."""

    key_pem: bytes
    chain_pem: bytes
    root_pem: bytes


def issue(ca: CertificateAuthority, identity: str, dns_names: tuple[str, ...] = ()) -> Svid:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = ca.issue(key.public_key(), SpiffeId.parse(identity), dns_names=dns_names)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Svid(key_pem, b"".join(ca.chain_pems(leaf)), ca.root_pem)


def client_channel(ca: CertificateAuthority, identity: str, port: int) -> grpc.Channel:
    """An mTLS channel to 127.0.0.1:port presenting ``identity``'s certificate (the server's
    certificate names ``echo.test``)."""
    svid = issue(ca, identity)
    credentials = grpc.ssl_channel_credentials(svid.root_pem, svid.key_pem, svid.chain_pem)
    return grpc.secure_channel(
        f"127.0.0.1:{port}",
        credentials,
        options=[("grpc.ssl_target_name_override", "echo.test")],
    )
