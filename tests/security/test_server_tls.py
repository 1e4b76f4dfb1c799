"""``mesh.server_credentials()``: a meshlib gRPC server terminating mTLS with the workload
certificate, rotating it in place, and telling handlers and policies who called.

Certificates are made here (``tests/support/spiffe_certs.py``) and handed to the mesh
through ``CertificateKeeper.fixed``; a rotation is ``keeper.replace`` (what a renewal
does). The server certificate carries a DNS SAN only because grpcio's plain
``ssl_channel_credentials`` client checks host names (mesh clients check SPIFFE IDs).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509

import meshlib
from meshlib.errors import SecurityError
from meshlib.security.keeper import CertificateKeeper
from meshlib.security.pki import WorkloadCertificate
from meshlib.serving import PASS, Decision, IncomingCall
from tests.routing.fake_xds import FakeXds
from tests.support.spiffe_certs import MeshRoot, issue_svid, make_root
from tests.support.waiting import wait_for

SERVER_ID = "spiffe://example.org/ns/conference/sa/sessions"
CLIENT_ID = "spiffe://example.org/ns/conference/sa/app"
HOST_NAME = "sessions.test"  # the server certificate's DNS SAN (see the module docstring)
METHOD = "/test.Who/Am"


def _who(request: bytes, context: grpc.ServicerContext) -> bytes:
    """Answers what the server knows of its caller."""
    auth = context.auth_context()
    spiffe = b"".join(auth.get("peer_spiffe_id", [b"-"]))
    return spiffe + b"|" + str(meshlib.peer_identity(context)).encode()


async def _aio_who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return _who(request, context)  # type: ignore[arg-type]


def _handlers(aio: bool = False) -> grpc.GenericRpcHandler:
    handler = grpc.unary_unary_rpc_method_handler(_aio_who if aio else _who)
    return grpc.method_handlers_generic_handler("test.Who", {"Am": handler})


def _client_credentials(client: WorkloadCertificate) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(client.root_pem, client.key_pem, client.chain_pem)


def _channel(port: int, client: WorkloadCertificate) -> grpc.Channel:
    return grpc.secure_channel(
        f"127.0.0.1:{port}",
        _client_credentials(client),
        options=[("grpc.ssl_target_name_override", HOST_NAME)],
    )


def _write(folder: Path, certificate: WorkloadCertificate) -> tuple[Path, Path, Path]:
    chain, key, root = folder / "chain.pem", folder / "key.pem", folder / "root.pem"
    chain.write_bytes(certificate.chain_pem)
    key.write_bytes(certificate.key_pem)
    root.write_bytes(certificate.root_pem)
    return chain, key, root


def presented_serial(port: int, client: WorkloadCertificate, folder: Path) -> int:
    """The serial of the certificate the server presents to a new TLS handshake."""
    chain, key, root = _write(folder, client)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(root)
    context.load_cert_chain(chain, key)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@contextmanager
def mesh_server(keeper: CertificateKeeper | None) -> Iterator[tuple[meshlib.Mesh, grpc.Server]]:
    feed = FakeXds()
    mesh = meshlib.Mesh.with_xds_client(feed, certificates=keeper)
    server = mesh.grpc_server(futures.ThreadPoolExecutor(8))
    server.add_generic_rpc_handlers([_handlers()])
    try:
        yield mesh, server
    finally:
        server.stop(grace=None)
        mesh.close()
        feed.close()


@pytest.fixture(scope="module")
def root() -> MeshRoot:
    return make_root()


def test_server_credentials_need_an_identity() -> None:
    with mesh_server(None) as (mesh, _):
        with pytest.raises(
            SecurityError, match=r"server_credentials\(\): this mesh has no identity"
        ):
            mesh.server_credentials()
        with pytest.raises(SecurityError, match=r"uvicorn_options\(\): this mesh has no identity"):
            mesh.uvicorn_options()


def test_peer_identity_names_what_it_takes() -> None:
    assert meshlib.peer_identity({"type": "http"}) is None  # no TLS extension: plaintext
    with pytest.raises(TypeError, match=r"peer_identity\(int\): give a gRPC servicer context"):
        meshlib.peer_identity(42)


def test_rotation_under_steady_calls_fails_nothing_and_new_handshakes_get_the_new_serial(
    root: MeshRoot, tmp_path: Path
) -> None:
    first = issue_svid(root, SERVER_ID, dns_names=(HOST_NAME,))
    client = issue_svid(root, CLIENT_ID)
    keeper = CertificateKeeper.fixed(first)
    with mesh_server(keeper) as (mesh, server):
        port = server.add_secure_port("127.0.0.1:0", mesh.server_credentials())
        server.start()
        assert presented_serial(port, client, tmp_path) == first.serial
        answers: list[bytes] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def call_steadily(new_channel_each_call: bool) -> None:
            channel = _channel(port, client)
            try:
                while not stop.is_set():
                    if new_channel_each_call:  # a new connection: a new handshake
                        channel.close()
                        channel = _channel(port, client)
                    try:
                        answers.append(channel.unary_unary(METHOD)(b"", timeout=10))
                    except grpc.RpcError as error:
                        failures.append(error)
            finally:
                channel.close()

        callers = [
            threading.Thread(target=call_steadily, args=(fresh,), daemon=True)
            for fresh in (False, True)
        ]
        for caller in callers:
            caller.start()
        serials = [first.serial]
        for _ in range(3):
            before = len(answers)
            renewed = issue_svid(root, SERVER_ID, dns_names=(HOST_NAME,))
            keeper.replace(renewed)
            wait_for(
                lambda renewed=renewed: presented_serial(port, client, tmp_path) == renewed.serial,
                timeout=10.0,
                what="new handshakes to present the renewed certificate",
            )
            serials.append(renewed.serial)
            wait_for(lambda before=before: len(answers) > before + 20, what="calls to go on")
        stop.set()
        for caller in callers:
            caller.join(timeout=15)
        assert failures == []
        assert len(set(serials)) == 4
        assert set(answers) == {f"{CLIENT_ID}|{CLIENT_ID}".encode()}


def test_a_client_without_a_certificate_fails_the_handshake(root: MeshRoot, tmp_path: Path) -> None:
    server_certificate = issue_svid(root, SERVER_ID, dns_names=(HOST_NAME,))
    client = issue_svid(root, CLIENT_ID)
    stranger = issue_svid(make_root("another mesh"), CLIENT_ID)
    with mesh_server(CertificateKeeper.fixed(server_certificate)) as (mesh, server):
        port = server.add_secure_port("127.0.0.1:0", mesh.server_credentials())
        server.start()
        chain, key, root_file = _write(tmp_path, client)
        s_client = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile"]
        s_client += [str(root_file), "-alpn", "h2", "-showcerts"]
        # TLS 1.3: the client's side of the handshake ends first; the server then checks
        # the (missing) certificate and closes, which -ign_eof waits to see.
        refused = subprocess.run(
            [*s_client, "-ign_eof"], input=b"", capture_output=True, timeout=30, check=False
        )
        output = (refused.stdout + refused.stderr).decode(errors="replace")
        assert refused.returncode != 0, output
        assert "unexpected eof" in output or "certificate required" in output, output
        accepted = subprocess.run(
            [*s_client, "-cert", str(chain), "-key", str(key)],
            input=b"",
            capture_output=True,
            timeout=30,
            check=False,
        )
        output = accepted.stdout.decode(errors="replace")
        assert accepted.returncode == 0, output + accepted.stderr.decode(errors="replace")
        assert "Verify return code: 0 (ok)" in output
        shown = x509.load_pem_x509_certificates(output.encode())[0]
        assert shown.serial_number == server_certificate.serial

        without = grpc.secure_channel(
            f"127.0.0.1:{port}",
            grpc.ssl_channel_credentials(client.root_pem),
            options=[("grpc.ssl_target_name_override", HOST_NAME)],
        )
        other_mesh = _channel(port, stranger)
        for channel in (without, other_mesh):
            with channel, pytest.raises(grpc.RpcError) as refused_call:
                channel.unary_unary(METHOD)(b"", timeout=5)
            assert refused_call.value.code() == grpc.StatusCode.UNAVAILABLE


class _Recorder:
    """A server policy that notes what the call says of the caller's TLS."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str | None]] = []

    def check(self, call: IncomingCall) -> Decision:
        tls = call.peer_tls()
        self.seen.append(("plaintext", None) if tls is None else (tls.spiffe_id, tls.principal))
        return PASS


def test_policies_and_handlers_see_the_caller_on_sync_and_aio_servers(root: MeshRoot) -> None:
    server_certificate = issue_svid(root, SERVER_ID, dns_names=(HOST_NAME,))
    client = issue_svid(root, CLIENT_ID)
    keeper = CertificateKeeper.fixed(server_certificate)
    recorder = _Recorder()
    with mesh_server(keeper) as (mesh, _):
        interceptor = meshlib.MeshServerInterceptor(policies=[recorder, *mesh.server_policies()])
        server = grpc.server(futures.ThreadPoolExecutor(2), interceptors=[interceptor])
        server.add_generic_rpc_handlers([_handlers()])
        secure = server.add_secure_port("127.0.0.1:0", mesh.server_credentials())
        plain = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            with _channel(secure, client) as channel:
                assert channel.unary_unary(METHOD)(b"", timeout=10) == (
                    f"{CLIENT_ID}|{CLIENT_ID}".encode()
                )
            with grpc.insecure_channel(f"127.0.0.1:{plain}") as channel:
                assert channel.unary_unary(METHOD)(b"", timeout=10) == b"-|None"
        finally:
            server.stop(grace=None)
        assert recorder.seen == [
            (CLIENT_ID, "example.org/ns/conference/sa/app"),
            ("plaintext", None),
        ]

        async def aio_round() -> bytes:
            server = mesh.aio_grpc_server()
            server.add_generic_rpc_handlers([_handlers(aio=True)])
            port = server.add_secure_port("127.0.0.1:0", mesh.server_credentials())
            await server.start()
            try:
                async with grpc.aio.secure_channel(
                    f"127.0.0.1:{port}",
                    _client_credentials(client),
                    options=[("grpc.ssl_target_name_override", HOST_NAME)],
                ) as channel:
                    answer: bytes = await channel.unary_unary(METHOD)(b"", timeout=10)
                    return answer
            finally:
                await server.stop(grace=None)

        assert asyncio.run(aio_round()) == f"{CLIENT_ID}|{CLIENT_ID}".encode()
