"""Run as a subprocess: one ``/test.Echo/Say`` call per target through grpcio's
native xDS client (one process-wide xDS client, so one ADS stream for all).

Usage: python grpcio_multi_target_client.py TARGET...
(bootstrap from GRPC_XDS_BOOTSTRAP_CONFIG). Prints one JSON object
``{target: reply or "error: ..."}``, then keeps the channels (and the ADS
stream) open until stdin closes, so the test can read the ACK state.
"""

from __future__ import annotations

import json
import sys

import grpc


def main() -> None:
    channels = {target: grpc.insecure_channel(target) for target in sys.argv[1:]}
    replies: dict[str, str] = {}
    try:
        for target, channel in channels.items():
            say = channel.unary_unary(
                "/test.Echo/Say", request_serializer=None, response_deserializer=None
            )
            try:
                replies[target] = bytes(say(b"hi", timeout=10)).decode()
            except grpc.RpcError as exc:
                replies[target] = f"error: {exc.code()} {exc.details()}"
        print(json.dumps(replies, sort_keys=True), flush=True)
        sys.stdin.read()
    finally:
        for channel in channels.values():
            channel.close()


if __name__ == "__main__":
    main()
