"""An unmodified grpcio client of the Session service: no meshlib import at all.

grpcio's own xDS resolver reads the same bootstrap file (``GRPC_XDS_BOOTSTRAP``)
and gets the same config from the same control plane as meshlib does, so
``xds:///sessions:50051`` reaches the registered v1 and v2 instances:

    GRPC_XDS_BOOTSTRAP=bootstrap.json python native_grpc_client.py --requests 10

One line per call on stdout, as conference_app.py prints them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import grpc
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
    args = parser.parse_args(argv)
    if not (os.environ.get("GRPC_XDS_BOOTSTRAP") or os.environ.get("GRPC_XDS_BOOTSTRAP_CONFIG")):
        print("native_grpc_client: set GRPC_XDS_BOOTSTRAP to a bootstrap file", file=sys.stderr)
        return 2
    failures = 0
    with grpc.insecure_channel(SESSIONS_TARGET) as channel:
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
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
