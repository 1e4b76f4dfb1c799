"""ASGI under uvicorn terminating mTLS with the workload certificate
(``mesh.uvicorn_options()``): the caller's certificate reaches the app as the ASGI TLS
extension, MeshMiddleware's policies see the caller, and a renewed certificate is
presented to new connections while open ones go on."""

from __future__ import annotations

import importlib.util
import json
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

import meshlib
import meshlib.asgi
from meshlib.errors import SecurityError
from meshlib.security.keeper import CertificateKeeper
from meshlib.security.pki import WorkloadCertificate
from meshlib.serving import PASS, Decision, IncomingCall
from tests.routing.fake_xds import FakeXds
from tests.support.asgi_server import serve_asgi
from tests.support.spiffe_certs import MeshRoot, issue_svid, make_root
from tests.support.waiting import wait_for

SERVER_ID = "spiffe://example.org/ns/conference/sa/attendees"
CLIENT_ID = "spiffe://example.org/ns/conference/sa/app"


async def report_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app answering what it learnt of the caller."""
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    body = json.dumps(
        {
            "identity": meshlib.peer_identity(scope),
            "server_cert": tls.get("server_cert"),
            "leaf": chain[0] if chain else None,
            "name": tls.get("client_cert_name"),
            "tls_version": tls.get("tls_version"),
            "cipher_suite": tls.get("cipher_suite"),
        }
    ).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.principals: list[str | None] = []

    def check(self, call: IncomingCall) -> Decision:
        tls = call.peer_tls()
        self.principals.append(None if tls is None else tls.principal)
        return PASS


def client_context(
    root_pem: bytes, folder: Path, client: WorkloadCertificate | None = None
) -> ssl.SSLContext:
    """Trusting ``root_pem`` as a mesh client does (the root, not a host name), presenting
    ``client`` when given."""
    context = ssl.create_default_context(cadata=root_pem.decode())
    context.check_hostname = False
    if client is not None:
        (folder / "chain.pem").write_bytes(client.chain_pem)
        (folder / "key.pem").write_bytes(client.key_pem)
        context.load_cert_chain(folder / "chain.pem", folder / "key.pem")
    return context


def server_serial(response: httpx.Response) -> int:
    ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
    return x509.load_der_x509_certificate(ssl_object.getpeercert(True)).serial_number


@pytest.fixture(scope="module")
def root() -> MeshRoot:
    return make_root()


@contextmanager
def mtls_app(keeper: CertificateKeeper, recorder: _Recorder) -> Iterator[str]:
    feed = FakeXds()
    with meshlib.Mesh.with_xds_client(feed, certificates=keeper) as mesh:
        app = meshlib.asgi.MeshMiddleware(report_tls, policies=[recorder, *mesh.server_policies()])
        try:
            with serve_asgi(app, **mesh.uvicorn_options()) as url:
                yield url
        finally:
            feed.close()


def test_the_app_and_its_policies_see_the_callers_certificate(
    root: MeshRoot, tmp_path: Path
) -> None:
    client = issue_svid(root, CLIENT_ID)
    server = issue_svid(root, SERVER_ID)
    recorder = _Recorder()
    with (
        mtls_app(CertificateKeeper.fixed(server), recorder) as url,
        httpx.Client(verify=client_context(root.pem, tmp_path, client)) as http,
    ):
        response = http.get(f"{url}/whoami")
        assert response.status_code == 200
        seen = response.json()
        assert server_serial(response) == server.serial
    assert seen["identity"] == CLIENT_ID
    assert x509.load_pem_x509_certificate(seen["leaf"].encode()).serial_number == client.serial
    assert seen["name"] == ""  # an X.509-SVID's subject is empty
    assert x509.load_pem_x509_certificate(seen["server_cert"].encode()).serial_number == (
        server.serial
    )
    assert seen["tls_version"] == 0x0304
    assert isinstance(seen["cipher_suite"], int) and seen["cipher_suite"] > 0
    assert recorder.principals == ["example.org/ns/conference/sa/app"]


def test_a_caller_without_a_mesh_certificate_is_refused(root: MeshRoot, tmp_path: Path) -> None:
    stranger = issue_svid(make_root("another mesh"), CLIENT_ID)
    recorder = _Recorder()
    with mtls_app(CertificateKeeper.fixed(issue_svid(root, SERVER_ID)), recorder) as url:
        for verify in (
            client_context(root.pem, tmp_path),
            client_context(root.pem, tmp_path, stranger),
        ):
            with httpx.Client(verify=verify) as http, pytest.raises(httpx.TransportError):
                http.get(f"{url}/whoami")
    assert recorder.principals == []  # no request reached the app


def test_rotation_new_connections_get_the_new_certificate_open_ones_go_on(
    root: MeshRoot, tmp_path: Path
) -> None:
    client = issue_svid(root, CLIENT_ID)
    first = issue_svid(root, SERVER_ID)
    keeper = CertificateKeeper.fixed(first)
    verify = client_context(root.pem, tmp_path, client)
    failures: list[BaseException] = []
    answered: list[int] = []
    stop = threading.Event()
    with mtls_app(keeper, _Recorder()) as url:

        def keep_calling(http: httpx.Client) -> None:
            while not stop.is_set():
                try:
                    response = http.get(f"{url}/whoami")
                    assert response.status_code == 200
                    answered.append(server_serial(response))
                except Exception as error:
                    failures.append(error)

        with httpx.Client(verify=verify) as kept_alive:
            caller = threading.Thread(target=keep_calling, args=(kept_alive,), daemon=True)
            caller.start()
            wait_for(lambda: answered, what="the open connection's first answer")
            serials = [first.serial]
            for _ in range(3):
                renewed = issue_svid(root, SERVER_ID)
                keeper.replace(renewed)

                def new_connection_sees(serial: int = renewed.serial) -> bool:
                    with httpx.Client(verify=verify) as fresh:
                        return server_serial(fresh.get(f"{url}/whoami")) == serial

                wait_for(new_connection_sees, timeout=10.0, what="the renewed certificate")
                serials.append(renewed.serial)
                before = len(answered)
                wait_for(lambda before=before: len(answered) > before + 5, what="calls to go on")
            stop.set()
            caller.join(timeout=15)
    assert failures == []
    assert len(set(serials)) == 4
    assert set(answered) == {first.serial}  # the open connection kept its handshake


def test_an_unknown_or_missing_http_protocol_is_named(root: MeshRoot) -> None:
    keeper = CertificateKeeper.fixed(issue_svid(root, SERVER_ID))
    feed = FakeXds()
    with meshlib.Mesh.with_xds_client(feed, certificates=keeper) as mesh:
        with pytest.raises(ValueError, match=r"uvicorn_options\(http='spdy'\): uvicorn's http"):
            mesh.uvicorn_options(http="spdy")
        if importlib.util.find_spec("httptools") is None:
            with pytest.raises(ValueError, match=r"http='httptools'.*cannot load it"):
                mesh.uvicorn_options(http="httptools")
    feed.close()


def test_the_uvicorn_floor_is_pinned_and_named_for_an_older_uvicorn(
    root: MeshRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyproject's floor is the first uvicorn with ssl_context_factory, and an older
    uvicorn (its Config without the argument: no older wheel can run here) is told so."""
    import uvicorn

    from meshlib.transport.uvicorn_tls import UVICORN_MIN_VERSION

    project = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert re.findall(r'"(uvicorn[^"]*)"', project) == [f"uvicorn>={UVICORN_MIN_VERSION}"]
    docs = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    assert f"uvicorn ≥ {UVICORN_MIN_VERSION}" in docs

    class OldConfig:  # uvicorn 0.46's Config takes no ssl_context_factory
        def __init__(self, app: Any, ssl_certfile: str | None = None) -> None: ...

    monkeypatch.setattr(uvicorn, "Config", OldConfig)
    monkeypatch.setattr(uvicorn, "__version__", "0.46.0")
    keeper = CertificateKeeper.fixed(issue_svid(root, SERVER_ID))
    feed = FakeXds()
    with (
        meshlib.Mesh.with_xds_client(feed, certificates=keeper) as mesh,
        pytest.raises(SecurityError, match=r"uvicorn 0\.46\.0 .*uvicorn>=0\.47"),
    ):
        mesh.uvicorn_options()
    feed.close()
