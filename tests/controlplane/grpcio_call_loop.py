"""Run as a subprocess: grpcio's native xDS client calling ``/test.Echo/Say`` on request.

Usage: python grpcio_call_loop.py (bootstrap from GRPC_XDS_BOOTSTRAP_CONFIG).
Each stdin line ``TARGET COUNT`` makes COUNT calls on one channel per target
(kept open between lines) and prints the replies as a JSON list, a failed call
as ``"error: CODE"``. Ends when stdin closes.
"""

from __future__ import annotations

import json
import sys

import grpc


def main() -> None:
    channels: dict[str, grpc.Channel] = {}
    try:
        for line in sys.stdin:
            target, count = line.split()
            channel = channels.get(target)
            if channel is None:
                channel = channels[target] = grpc.insecure_channel(target)
            say = channel.unary_unary(
                "/test.Echo/Say", request_serializer=None, response_deserializer=None
            )
            replies = []
            for _ in range(int(count)):
                try:
                    replies.append(bytes(say(b"hi", timeout=5)).decode())
                except grpc.RpcError as exc:
                    replies.append(f"error: {exc.code().name}")
            print(json.dumps(replies), flush=True)
    finally:
        for channel in channels.values():
            channel.close()


if __name__ == "__main__":
    main()
