"""Run as a subprocess: call ``/test.Echo/Who`` steadily through grpcio's xDS client with
``xds_channel_credentials`` (bootstrap from GRPC_XDS_BOOTSTRAP).

Usage: python grpcio_steady_client.py TARGET SECONDS. Waits (up to 30 s) for a first
answer, then calls for SECONDS, one call every 20 ms on a long-lived channel and one on
a new channel (its own subchannel pool: a new connection, so a new handshake). Prints one
JSON object: ``{"calls": N, "replies": [distinct replies], "failures": [code names]}``.
"""

from __future__ import annotations

import json
import sys
import time

import grpc
import grpc.experimental

METHOD = "/test.Echo/Who"
PAUSE_S = 0.02


def _channel(target: str) -> grpc.Channel:
    credentials = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
    return grpc.secure_channel(target, credentials, options=[("grpc.use_local_subchannel_pool", 1)])


def _call(channel: grpc.Channel) -> str:
    stub = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    return bytes(stub(b"", timeout=5)).decode()


def main() -> None:
    target, seconds = sys.argv[1], float(sys.argv[2])
    replies: set[str] = set()
    failures: list[str] = []
    calls = 0
    with _channel(target) as kept:
        deadline = time.monotonic() + 30
        while True:
            try:
                replies.add(_call(kept))
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        print("ready", flush=True)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for fresh in (False, True):
                calls += 1
                try:
                    if fresh:
                        with _channel(target) as channel:
                            replies.add(_call(channel))
                    else:
                        replies.add(_call(kept))
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")
            time.sleep(PAUSE_S)
    print(json.dumps({"calls": calls, "replies": sorted(replies), "failures": failures}))


if __name__ == "__main__":
    main()
