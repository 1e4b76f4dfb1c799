"""The Session service over gRPC, in two versions, joining the mesh by registration.

No config file names its instances: each one calls ``mesh.register`` for
``sessions:50051`` with labels ``app=sessions, version=VERSION`` and the port it
really listens on; the ``sessions`` ServiceEntry (workloadSelector app=sessions)
then routes callers to it. v2 also fills ``livestream_url``.

    GRPC_XDS_BOOTSTRAP=bootstrap.json MESH_TOKEN_FILE=sessions.token \\
        python sessions_service.py --port 0 --version v2

With a join token (``MESH_TOKEN_FILE`` or ``MESH_TOKEN``) the mesh gets the
instance's certificate first; the port then serves mTLS only
(``mesh.server_credentials()``) and ``mesh.grpc_server()`` applies the mesh's
policy (mesh.yaml's AuthorizationPolicy) to every call. Without one it serves
plaintext.

Once registered it prints one JSON line on stdout, ``{"event": "serving",
"service": "sessions", "version": V, "port": P, "identity": SPIFFE_ID}``, then
logs only to stderr. On SIGINT/SIGTERM it deregisters (``mesh.close()``) and stops.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from types import FrameType

import grpc
import structlog
from demo_logging import configure_logging
from gen.conference.sessions.v1 import sessions_pb2, sessions_pb2_grpc

import meshlib
from meshlib.errors import MeshError

log = structlog.get_logger(__name__)

SERVICE_HOST = "sessions"
SERVICE_PORT = 50051

SESSIONS = (
    sessions_pb2.Session(
        id="s-1", title="Proxyless meshes", speaker="Grace Hopper", room="A",
        track="platform", starts_at="2026-11-21T09:00:00",
    ),
    sessions_pb2.Session(
        id="s-2", title="xDS from first principles", speaker="Alan Kay", room="B",
        track="platform", starts_at="2026-11-21T10:00:00",
    ),
    sessions_pb2.Session(
        id="s-3", title="Notes on the Analytical Engine", speaker="Ada Lovelace", room="A",
        track="history", starts_at="2026-11-21T11:00:00",
    ),
)  # fmt: skip


class SessionsServicer(sessions_pb2_grpc.SessionsServicer):
    """Answers from the fixed programme; stamps which instance answered."""

    def __init__(self, version: str, instance: str) -> None:
        self._served_by = sessions_pb2.ServedBy(instance=instance, version=version)
        self._version = version

    def _render(self, session: sessions_pb2.Session) -> sessions_pb2.Session:
        rendered = sessions_pb2.Session()
        rendered.CopyFrom(session)
        if self._version == "v2":
            rendered.livestream_url = f"https://live.example.org/{session.id}"
        return rendered

    def GetSession(
        self, request: sessions_pb2.GetSessionRequest, context: grpc.ServicerContext
    ) -> sessions_pb2.GetSessionResponse:
        for session in SESSIONS:
            if session.id == request.session_id:
                return sessions_pb2.GetSessionResponse(
                    session=self._render(session), served_by=self._served_by
                )
        context.abort(
            grpc.StatusCode.NOT_FOUND,
            f"no session with id {request.session_id!r} ({self._served_by.instance})",
        )
        raise AssertionError("context.abort returned")  # abort always raises

    def ListSessions(
        self, request: sessions_pb2.ListSessionsRequest, context: grpc.ServicerContext
    ) -> Iterator[sessions_pb2.ListSessionsResponse]:
        for session in SESSIONS:
            if not request.track or session.track == request.track:
                yield sessions_pb2.ListSessionsResponse(
                    session=self._render(session), served_by=self._served_by
                )


def serve(host: str, port: int, version: str, register: bool) -> None:
    # With a join token (MESH_TOKEN_FILE / MESH_TOKEN) the mesh has an identity: the port
    # serves mTLS with its certificate, and mesh.grpc_server() applies the mesh's
    # policies (mesh.yaml's PeerAuthentication and AuthorizationPolicy) to every call.
    mesh = meshlib.Mesh() if register else None
    try:
        server = (mesh.grpc_server if mesh is not None else grpc.server)(
            futures.ThreadPoolExecutor(max_workers=8)
        )
        address = f"{host}:{port}"
        if mesh is not None and mesh.certificates is not None:
            bound_port = server.add_secure_port(address, mesh.server_credentials())
        else:
            bound_port = server.add_insecure_port(address)
        if bound_port == 0:
            raise OSError(f"cannot listen on {address}")
        instance = f"sessions-{version}@{bound_port}"
        sessions_pb2_grpc.add_SessionsServicer_to_server(
            SessionsServicer(version, instance), server
        )
        server.start()
        _serve_until_signal(server, mesh, version, instance, host, bound_port)
    finally:
        if mesh is not None:
            mesh.close()  # idempotent: after an error before serving


def _serve_until_signal(
    server: grpc.Server,
    mesh: meshlib.Mesh | None,
    version: str,
    instance: str,
    host: str,
    bound_port: int,
) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        if mesh is not None:
            mesh.register(
                service=SERVICE_HOST,
                port=SERVICE_PORT,
                labels={"app": "sessions", "version": version},
                target_port=bound_port,
                address=host,
            )
        identity = None
        if mesh is not None and mesh.certificates is not None:
            identity = mesh.certificates.current().identity
        print(
            json.dumps(
                {"event": "serving", "service": "sessions", "version": version,
                 "port": bound_port, "identity": str(identity) if identity else None}
            ),
            flush=True,
        )  # fmt: skip
        log.info("sessions_serving", instance=instance, registered=mesh is not None)
        stop.wait()
        log.info("sessions_stopping", instance=instance)
    finally:
        if mesh is not None:
            mesh.close()  # deregisters before the server stops taking calls
        server.stop(grace=1.0).wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any)")
    parser.add_argument("--version", choices=("v1", "v2"), required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on and register")
    parser.add_argument("--no-register", action="store_true", help="serve without joining the mesh")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        serve(args.host, args.port, args.version, register=not args.no_register)
    except (OSError, RuntimeError, MeshError) as exc:
        print(f"sessions_service: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
