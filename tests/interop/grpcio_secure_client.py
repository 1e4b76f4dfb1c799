"""Run as a subprocess: call methods of ``/test.Echo`` through grpcio's xDS client.

Usage: python grpcio_secure_client.py TARGET CREDS [WARMUP_S] (``xds``:
xds_channel_credentials falling back to insecure; ``insecure``: a plain channel). Bootstrap from
GRPC_XDS_BOOTSTRAP. Reads one JSON list ``[[method, {header: value}], ...]`` from
stdin and prints one JSON list: ``"OK <reply>"`` or the status code name. The first
call is retried while UNAVAILABLE (the server may not have its listener yet).
"""

from __future__ import annotations

import json
import sys
import time

import grpc
import grpc.experimental

WARMUP_S = 20.0


def _call(channel: grpc.Channel, method: str, headers: dict[str, str]) -> str:
    stub = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        reply = bytes(stub(b"", timeout=5, metadata=tuple(headers.items())))
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK " + reply.decode()


def main() -> None:
    target, creds = sys.argv[1], sys.argv[2]
    warmup_s = float(sys.argv[3]) if len(sys.argv) > 3 else WARMUP_S
    calls = json.loads(sys.stdin.read())
    if creds == "xds":
        channel = grpc.secure_channel(
            target, grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
        )
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        deadline = time.monotonic() + warmup_s
        first = _call(channel, *calls[0])
        while first == "UNAVAILABLE" and time.monotonic() < deadline:
            time.sleep(0.2)
            first = _call(channel, *calls[0])
        results = [first, *(_call(channel, m, h) for m, h in calls[1:])]
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
