"""Run as a subprocess: call ``/test.Echo/Say`` through grpcio's native xDS client.

Usage: python grpcio_xds_client.py xds:///HOST:PORT CALLS
(bootstrap from GRPC_XDS_BOOTSTRAP_CONFIG). Prints the sorted set of replies
as JSON, then keeps the channel (and its ADS stream) open until stdin closes.
"""

from __future__ import annotations

import json
import sys

import grpc


def main() -> None:
    target, calls = sys.argv[1], int(sys.argv[2])
    with grpc.insecure_channel(target) as channel:
        say = channel.unary_unary(
            "/test.Echo/Say", request_serializer=None, response_deserializer=None
        )
        replies = {bytes(say(b"hi", timeout=10)).decode() for _ in range(calls)}
        print(json.dumps(sorted(replies)), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
