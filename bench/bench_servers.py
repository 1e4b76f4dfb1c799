"""The servers the overhead benchmark calls, run in their own processes.

    python bench/bench_servers.py http --port 0   # aiohttp: GET /ping -> "pong"
    python bench/bench_servers.py grpc --port 0   # grpcio: /bench.Echo/Ping echoes raw bytes

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
import sys
import threading
from concurrent import futures
from types import FrameType

import grpc
from aiohttp import web

ECHO_METHOD = "/bench.Echo/Ping"


async def ping(request: web.Request) -> web.Response:
    return web.Response(body=b"pong", content_type="text/plain")


async def serve_http(port: int) -> None:
    app = web.Application()
    app.router.add_get("/ping", ping)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, backlog=512).start()
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


def serve_grpc(port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Ping": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
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
    args = parser.parse_args(argv)
    if args.kind == "http":
        asyncio.run(serve_http(args.port))
    else:
        serve_grpc(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
