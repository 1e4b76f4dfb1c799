"""An unmodified grpcio client of the Session service: no meshlib import at all.

grpcio's own xDS resolver reads the same bootstrap file (``GRPC_XDS_BOOTSTRAP``)
and gets the same config from the same control plane as meshlib does, so
``xds:///sessions:50051`` reaches the registered v1 and v2 instances:

    GRPC_XDS_BOOTSTRAP=bootstrap.json python native_grpc_client.py --requests 10

Its channel has grpcio's xDS credentials: where the control plane says mTLS (the
cluster's UpstreamTlsContext), grpcio presents the certificate of the bootstrap's
``certificate_providers`` (files kept by ``meshctl agent``, ``meshctl bootstrap
--cert-dir``) and checks the server's SPIFFE ID; elsewhere it falls back to plaintext.
``--try-list-sessions`` makes one ListSessions call at the end, which mesh.yaml's
AuthorizationPolicy does not allow this client (service account "kiosk"): the server
refuses it with PERMISSION_DENIED.

One line per call on stdout, as conference_app.py prints them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import grpc
import grpc.experimental
from gen.conference.sessions.v1 import sessions_pb2, sessions_pb2_grpc

SESSIONS_TARGET = "xds:///sessions:50051"
READY_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10, help="number of GetSession calls")
    parser.add_argument(
        "--interval", type=float, default=0.1, help="pause between calls in seconds (0: none)"
    )
    parser.add_argument(
        "--try-list-sessions", action="store_true", help="end with one ListSessions call"
    )
    args = parser.parse_args(argv)
    if not (os.environ.get("GRPC_XDS_BOOTSTRAP") or os.environ.get("GRPC_XDS_BOOTSTRAP_CONFIG")):
        print("native_grpc_client: set GRPC_XDS_BOOTSTRAP to a bootstrap file", file=sys.stderr)
        return 2
    failures = 0
    plaintext = grpc.experimental.insecure_channel_credentials()  # type: ignore[no-untyped-call]
    credentials = grpc.xds_channel_credentials(plaintext)  # mTLS where the control plane says
    with grpc.secure_channel(SESSIONS_TARGET, credentials) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=READY_TIMEOUT_S)
        except grpc.FutureTimeoutError:
            print(f"native_grpc_client: {SESSIONS_TARGET} not ready", file=sys.stderr)
            return 1
        stub = sessions_pb2_grpc.SessionsStub(channel)
        for n in range(args.requests):
            session_id = f"s-{n % 3 + 1}"
            start = time.perf_counter()
            try:
                reply = stub.GetSession(
                    sessions_pb2.GetSessionRequest(session_id=session_id),
                    timeout=CALL_TIMEOUT_S,
                    wait_for_ready=True,
                )
            except grpc.RpcError as exc:
                failures += 1
                print(f"[grpcio   ] GetSession({session_id}) -> ERROR {exc}", flush=True)
                continue
            took = (time.perf_counter() - start) * 1000
            print(
                f"[grpcio   ] GetSession({session_id}) -> {reply.served_by.instance} "
                f"({reply.session.title}) {took:.1f} ms",
                flush=True,
            )
            if args.interval > 0:
                time.sleep(args.interval)
        if args.try_list_sessions:
            try_list_sessions(stub)
    return 1 if failures else 0


def try_list_sessions(stub: sessions_pb2_grpc.SessionsStub) -> None:
    """One ListSessions call: answered, or refused by the server's policy (DENIED)."""
    try:
        replies = list(
            stub.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=CALL_TIMEOUT_S)
        )
    except grpc.RpcError as exc:
        if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.PERMISSION_DENIED:
            print(
                f"[grpcio   ] ListSessions() -> DENIED {exc.code().name}: {exc.details()}",
                flush=True,
            )
        else:
            print(f"[grpcio   ] ListSessions() -> ERROR {exc}", flush=True)
        return
    instances = ", ".join(sorted({reply.served_by.instance for reply in replies}))
    print(f"[grpcio   ] ListSessions() -> {instances} ({len(replies)} sessions)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
