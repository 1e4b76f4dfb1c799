"""A real HTTP server on loopback serving a JSON Web Key Set that tests change at will
(rotate the keys, answer an HTTP error, serve a document that is not a key set)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import ec


def jwks_of(*keys: tuple[str, ec.EllipticCurvePrivateKey]) -> str:
    """The key set of these (kid, key) pairs, public halves only."""
    entries = [
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": kid,
         "alg": "ES256", "use": "sig"}
        for kid, key in keys
    ]  # fmt: skip
    return json.dumps({"keys": entries})


class JwksServer:
    """What ``GET /jwks.json`` answers: ``status`` and ``body``; ``requests`` counts them."""

    def __init__(self, body: str) -> None:
        self.status = 200
        self.body = body
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                data = owner.body.encode()
                self.send_response(owner.status if self.path == "/jwks.json" else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"


@contextmanager
def jwks_server(body: str) -> Iterator[JwksServer]:
    server = JwksServer(body)
    thread = threading.Thread(target=server._server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server._server.shutdown()
        server._server.server_close()
        thread.join(timeout=5)
