"""Tiny real HTTP/1.1 servers on 127.0.0.1:0 that say who they are (tests only).

Each reply (and ``server.seen``) holds the port, Host, path, method, headers
and body the server received.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection pools hold connections
    disable_nagle_algorithm = True  # headers and body are separate writes
    server: EchoServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.open_connections += 1
            self.server.accepted += 1

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.lock:
                self.server.open_connections -= 1

    def do_GET(self) -> None:
        if self.path.startswith("/sleep/"):  # /sleep/<seconds>: answer late
            time.sleep(float(self.path.split("/")[2]))
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length) if length else b""
        seen = {
            "port": self.server.port,
            "host": self.headers.get("Host"),
            "path": self.path,
            "method": self.command,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": received.decode("latin-1"),
        }
        with self.server.lock:
            self.server.seen.append(seen)
        body = json.dumps(seen).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Upstream", "yes")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET
    do_PUT = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.open_connections = 0
        self.accepted = 0  # connections accepted so far
        self.seen: list[dict[str, object]] = []  # every request received, in order
        self.status = 200  # what every response answers
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


@contextmanager
def echo_servers(count: int) -> Iterator[list[EchoServer]]:
    servers = [EchoServer() for _ in range(count)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
