"""An unmodified grpcio xDS client, run as its own process by the interop tests.

grpc's xDS client is process-global (one per bootstrap), so each test runs it in
a fresh process. Usage:
    GRPC_XDS_BOOTSTRAP=... python native_client.py xds:///echo:50051 --calls N
prints one line per call: the backend's name, or "error: <code>".
With --until NAME it keeps calling (up to --timeout s) until NAME answers.
"""

from __future__ import annotations

import argparse
import sys
import time

import grpc


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--until", default="")
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    with grpc.insecure_channel(args.target) as channel:
        who = channel.unary_unary("/test.Echo/Who")
        calls = 0
        while time.monotonic() < deadline:
            try:
                answer = who(b"", timeout=5, wait_for_ready=True).decode()
            except grpc.RpcError as exc:
                answer = f"error: {exc.code().name}"
            print(answer, flush=True)
            calls += 1
            if args.until:
                if answer == args.until:
                    return 0
                time.sleep(0.05)
            elif calls >= args.calls:
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
