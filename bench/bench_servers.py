"""The servers the overhead benchmark calls, run in their own processes.

    python bench/bench_servers.py http --port 0   # aiohttp: GET /ping -> "pong"
    python bench/bench_servers.py grpc --port 0   # grpcio: /bench.Echo/Ping echoes raw bytes
    python bench/bench_servers.py http --cert-dir DIR  # mTLS: DIR's cert-chain.pem, key.pem,
                                                      # root-cert.pem; client certificate required

Each prints ``{"event": "serving", "kind": K, "port": P}`` on stdout once
listening, and stops on SIGTERM/SIGINT. Kept trivial so the numbers measure the
client side: the same server answers the bare and the meshlib clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import ssl
import sys
import threading
from concurrent import futures
from pathlib import Path
from types import FrameType

import grpc
from aiohttp import web

ECHO_METHOD = "/bench.Echo/Ping"


async def ping(request: web.Request) -> web.Response:
    return web.Response(body=b"pong", content_type="text/plain")


def http_tls_context(cert_dir: Path) -> ssl.SSLContext:
    """Presents DIR's certificate and requires a client certificate from DIR's root."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=cert_dir / "root-cert.pem")
    context.load_cert_chain(cert_dir / "cert-chain.pem", cert_dir / "key.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def grpc_tls_credentials(cert_dir: Path) -> grpc.ServerCredentials:
    key, chain = (cert_dir / "key.pem").read_bytes(), (cert_dir / "cert-chain.pem").read_bytes()
    return grpc.ssl_server_credentials(
        [(key, chain)],
        root_certificates=(cert_dir / "root-cert.pem").read_bytes(),
        require_client_auth=True,
    )


async def serve_http(port: int, cert_dir: Path | None) -> None:
    app = web.Application()
    app.router.add_get("/ping", ping)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        tls = http_tls_context(cert_dir) if cert_dir is not None else None
        await web.SockSite(runner, sock, backlog=512, ssl_context=tls).start()
        announce("http", int(sock.getsockname()[1]))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def serve_grpc(port: int, cert_dir: Path | None) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    address = f"127.0.0.1:{port}"
    if cert_dir is not None:
        bound = server.add_secure_port(address, grpc_tls_credentials(cert_dir))
    else:
        bound = server.add_insecure_port(address)
    server.start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    announce("grpc", bound)
    stop.wait()
    server.stop(grace=0.5).wait()


def announce(kind: str, port: int) -> None:
    print(json.dumps({"event": "serving", "kind": kind, "port": port}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("http", "grpc"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert-dir", type=Path, help="serve mTLS with this folder's files")
    args = parser.parse_args(argv)
    if args.kind == "http":
        asyncio.run(serve_http(args.port, args.cert_dir))
    else:
        serve_grpc(args.port, args.cert_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
