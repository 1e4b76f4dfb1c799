"""The Attendee service: plain HTTP/JSON, knows nothing about the mesh.

The control plane learns its instances from the ``attendees`` ServiceEntry in
mesh.yaml (inline endpoints), so this process needs no meshlib at all. Every
answer says which instance served it (``"served_by": "attendees@PORT"``) so the
demo can show how calls spread.

    python attendees_service.py --port 18081

Once listening it prints one JSON line on stdout,
``{"event": "serving", "service": "attendees", "port": P}`` (useful with
``--port 0``, which picks a free port), then logs only to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys
from typing import Any

import structlog
from aiohttp import web
from demo_logging import configure_logging

log = structlog.get_logger(__name__)

ATTENDEES: dict[int, dict[str, Any]] = {
    7: {"id": 7, "name": "Grace Hopper", "company": "US Navy", "ticket": "speaker"},
    12: {"id": 12, "name": "Alan Kay", "company": "Xerox PARC", "ticket": "regular"},
    42: {"id": 42, "name": "Ada Lovelace", "company": "Analytical Engines", "ticket": "vip"},
    99: {"id": 99, "name": "Edsger Dijkstra", "company": "TU Eindhoven", "ticket": "regular"},
}

SERVED_BY = web.AppKey("served_by", str)


def make_app(served_by: str) -> web.Application:
    """The aiohttp application; ``served_by`` is stamped on every answer."""
    app = web.Application()
    app[SERVED_BY] = served_by
    app.router.add_get("/attendees", list_attendees)
    app.router.add_get("/attendees/{id}", get_attendee)
    app.router.add_get("/healthz", healthz)
    return app


async def list_attendees(request: web.Request) -> web.Response:
    served_by = request.app[SERVED_BY]
    return web.json_response({"attendees": list(ATTENDEES.values()), "served_by": served_by})


async def get_attendee(request: web.Request) -> web.Response:
    served_by = request.app[SERVED_BY]
    raw_id = request.match_info["id"]
    try:
        attendee_id = int(raw_id)
    except ValueError:
        body = {"error": f"attendee id must be an integer, got {raw_id!r}", "served_by": served_by}
        return web.json_response(body, status=400)
    attendee = ATTENDEES.get(attendee_id)
    if attendee is None:
        body = {"error": f"no attendee with id {attendee_id}", "served_by": served_by}
        return web.json_response(body, status=404)
    return web.json_response({**attendee, "served_by": served_by})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "served_by": request.app[SERVED_BY]})


def bind(host: str, port: int) -> socket.socket:
    """Bind first, so ``--port 0`` can report the port it really got."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def serve(host: str, port: int) -> None:
    sock = bind(host, port)
    bound_port = int(sock.getsockname()[1])
    runner = web.AppRunner(make_app(f"attendees@{bound_port}"), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        print(
            json.dumps({"event": "serving", "service": "attendees", "port": bound_port}),
            flush=True,
        )
        log.info("attendees_serving", host=host, port=bound_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("attendees_stopping", port=bound_port)
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        asyncio.run(serve(args.host, args.port))
    except OSError as exc:
        print(
            f"attendees_service: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
