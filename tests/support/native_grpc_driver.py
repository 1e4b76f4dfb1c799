"""Run as a subprocess: grpcio's own xDS client, driven one JSON line at a time.

grpc's xDS client is process-global (one per bootstrap), so every test gets a
fresh process. Bootstrap from GRPC_XDS_BOOTSTRAP. Each stdin line
``{"target": "xds:///HOST:PORT", "count": N, "metadata": [[key, value], ...]}``
makes N calls to ``/test.Echo/Who`` on one channel per target (kept open between
lines; optional ``"concurrency": K`` keeps K calls in flight) and prints the
replies as one JSON list: the backend's name, or ``"error: CODE"``. Ends when
stdin closes.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

WHO = "/test.Echo/Who"
CALL_TIMEOUT_S = 5.0


def _call(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> str:
    who = channel.unary_unary(WHO, request_serializer=None, response_deserializer=None)
    try:
        return bytes(who(b"", timeout=CALL_TIMEOUT_S, metadata=metadata)).decode()
    except grpc.RpcError as exc:
        return f"error: {exc.code().name}"


def main() -> None:
    channels: dict[str, grpc.Channel] = {}
    try:
        for line in sys.stdin:
            command = json.loads(line)
            target = str(command["target"])
            channel = channels.get(target)
            if channel is None:
                channel = channels[target] = grpc.insecure_channel(target)
            metadata = tuple((str(k), str(v)) for k, v in command.get("metadata", ()))
            count, workers = int(command["count"]), int(command.get("concurrency", 1))
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    calls = [pool.submit(_call, channel, metadata) for _ in range(count)]
                    replies = [call.result() for call in calls]
            else:
                replies = [_call(channel, metadata) for _ in range(count)]
            print(json.dumps(replies), flush=True)
    finally:
        for channel in channels.values():
            channel.close()


if __name__ == "__main__":
    main()
