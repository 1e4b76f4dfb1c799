"""mTLS backends for meshlib's client tests: an HTTP server and a gRPC server on
127.0.0.1 that require a client certificate from the mesh root and answer with what
they saw of the caller (its SPIFFE ID and certificate serial)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from meshlib.security.memfd_keys import load_workload_certificate
from meshlib.security.pki import WorkloadCertificate, spiffe_id_of

WHO = "/test.Echo/Who"
SLOW = "/test.Echo/Slow"
SLOW_S = 3.5  # longer than a renewal period of the rotation test (3 s)


def _caller(der: bytes | None) -> dict[str, str]:
    if der is None:
        return {"identity": "", "serial": ""}
    certificate = x509.load_der_x509_certificate(der)
    return {
        "identity": str(spiffe_id_of(certificate)),
        "serial": format(certificate.serial_number, "x"),
    }


class _Handler(BaseHTTPRequestHandler):
    server: _TlsHttpServer

    def do_GET(self) -> None:
        assert isinstance(self.connection, ssl.SSLSocket)
        if self.path.startswith("/slow"):
            time.sleep(SLOW_S)
        seen = _caller(self.connection.getpeercert(binary_form=True))
        self.server.record(seen["serial"])
        body = json.dumps({"served_by": self.server.name, **seen}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TlsHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )
        self.serials: list[str] = []
        self.lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return  # a refused client (no certificate): its handshake failed
        super().finish_request(request, client_address)

    def record(self, serial: str) -> None:
        with self.lock:
            if serial not in self.serials:
                self.serials.append(serial)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def server_context(certificate: WorkloadCertificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=certificate.root_pem.decode())
    load_workload_certificate(context, certificate)
    return context


class TlsHttpBackend:
    """``with TlsHttpBackend(name, cert) as b``: GET answers JSON with the caller."""

    def __init__(self, name: str, certificate: WorkloadCertificate) -> None:
        self._server = _TlsHttpServer(name, server_context(certificate))
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def serials(self) -> list[str]:
        with self._server.lock:
            return list(self._server.serials)

    def __enter__(self) -> TlsHttpBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class TlsGrpcBackend:
    """``/test.Echo/Who`` answers JSON with the caller; mTLS required."""

    def __init__(self, name: str, certificate: WorkloadCertificate) -> None:
        self.serials: list[str] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self._server.add_generic_rpc_handlers((self._handler(name),))
        credentials = grpc.ssl_server_credentials(
            [(certificate.key_pem, certificate.chain_pem)],
            root_certificates=certificate.root_pem,
            require_client_auth=True,
        )
        self.port = self._server.add_secure_port("127.0.0.1:0", credentials)

    def _handler(self, name: str) -> grpc.GenericRpcHandler[Any, Any]:
        def who(request: bytes, context: grpc.ServicerContext) -> bytes:
            if request == b"slow":
                time.sleep(SLOW_S)
            pem = context.auth_context().get("x509_pem_cert", [b""])[0]
            certificate = x509.load_pem_x509_certificate(pem)
            seen = _caller(certificate.public_bytes(Encoding.DER))
            with self._lock:
                if seen["serial"] not in self.serials:
                    self.serials.append(seen["serial"])
            return json.dumps({"served_by": name, **seen}).encode()

        return grpc.method_handlers_generic_handler(
            "test.Echo", {"Who": grpc.unary_unary_rpc_method_handler(who)}
        )

    def __enter__(self) -> TlsGrpcBackend:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait(5)
