"""Simulated xDS clients for bench/cp_scale.py: many ADS streams per process.

Each client is one StreamAggregatedResources call with its own node id,
subscribing like grpcio's proxyless client: LDS for its targets, then the RDS,
CDS and EDS names those need (worked out once by the bench from translate's
output and handed over). Requests and responses stay bytes: a response is
scanned for version, type URL and nonce only (the resources are skipped), and
the ACK is assembled from pre-encoded pieces, so one process can drive
thousands of streams on a small share of a core.

The worker runs an asyncio loop in its own process and obeys commands from
the parent over a pipe (see :func:`worker_main`).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection

import grpc

ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
TYPE_PREFIX = "type.googleapis.com/"
LDS = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
RDS = TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CDS = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
EDS = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPES = (LDS, RDS, CDS, EDS)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, i
        shift += 7


def scan_response(buf: bytes) -> tuple[bytes, bytes, bytes, int]:
    """(version_info, type_url, nonce, resource count) of a serialized DiscoveryResponse."""
    i, n = 0, len(buf)
    version = type_url = nonce = b""
    count = 0
    while i < n:
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, i = _read_varint(buf, i)
            if number == 1:
                version = buf[i : i + length]
            elif number == 2:
                count += 1
            elif number == 4:
                type_url = buf[i : i + length]
            elif number == 5:
                nonce = buf[i : i + length]
            i += length
        elif wire == 0:
            _, i = _read_varint(buf, i)
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return version, type_url, nonce, count


def node_bytes(node_id: str, cluster: str) -> bytes:
    """An envoy.config.core.v3.Node: id, cluster, user_agent_name."""
    return _field(1, node_id.encode()) + _field(2, cluster.encode()) + _field(6, b"grpc-bench")


class SimClient:
    """One ADS stream: subscribe, ACK every response, note when each version arrived."""

    def __init__(self, index: int, names: dict[str, Sequence[str]], node: bytes) -> None:
        self.index = index
        # type URL -> the request without version and nonce (names and type URL)
        self._base = {
            url: b"".join(_field(3, name.encode()) for name in names[url]) + _field(4, url.encode())
            for url in TYPES
        }
        self._node = node
        self.synced_at: float | None = None
        self.history: list[tuple[float, str, bytes]] = []  # (arrival, type URL, version)
        self.errors = 0
        self.last_error = ""
        self.done = asyncio.Event()

    def first_requests(self) -> list[bytes]:
        return [_field(2, self._node) + self._base[url] for url in TYPES]

    async def run(self, channel: grpc.aio.Channel) -> None:
        # Requests are written from this task as responses are read (no request
        # iterator: that would be one more task switch per message).
        call = channel.stream_stream(ADS_METHOD)()
        seen: set[str] = set()
        try:
            for request in self.first_requests():
                await call.write(request)
            while True:
                raw = await call.read()
                if raw is grpc.aio.EOF:
                    return
                now = time.time()
                version, type_url_b, nonce, _ = scan_response(raw)
                type_url = type_url_b.decode()
                self.history.append((now, type_url, version))
                seen.add(type_url)
                if self.synced_at is None and len(seen) == len(TYPES):
                    self.synced_at = now
                await call.write(self._base[type_url] + _field(1, version) + _field(5, nonce))
        except grpc.aio.AioRpcError as exc:
            self.errors += 1
            self.last_error = f"{exc.code().name}: {exc.details()}"
        finally:
            self.done.set()


class Fleet:
    """The clients of one worker process."""

    def __init__(self, target: str, streams_per_channel: int) -> None:
        self._target = target
        self._per_channel = streams_per_channel
        self._channels: list[grpc.aio.Channel] = []
        self.clients: list[SimClient] = []
        self._tasks: list[asyncio.Task[None]] = []

    def _channel(self) -> grpc.aio.Channel:
        if not self._channels or len(self.clients) >= len(self._channels) * self._per_channel:
            # Distinct option values keep grpc from sharing one subchannel.
            self._channels.append(
                grpc.aio.insecure_channel(
                    self._target,
                    options=[
                        ("grpc.channel_id", len(self._channels)),
                        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                    ],
                )
            )
        return self._channels[-1]

    def connect(self, indices: Sequence[int], names: Sequence[dict[str, list[str]]]) -> None:
        for index, client_names in zip(indices, names, strict=True):
            channel = self._channel()
            client = SimClient(index, client_names, node_bytes(f"bench-{index:05d}", "bench"))
            self.clients.append(client)
            self._tasks.append(asyncio.ensure_future(client.run(channel)))

    def synced(self) -> list[float | None]:
        return [c.synced_at for c in self.clients]

    def arrivals(self, since: float, type_url: str) -> list[float | None]:
        """Per client, the first arrival of ``type_url`` at or after ``since``."""
        out: list[float | None] = []
        for client in self.clients:
            first = next(
                (t for t, url, _ in client.history if t >= since and url == type_url), None
            )
            out.append(first)
        return out

    def trim(self) -> None:
        for client in self.clients:
            client.history.clear()

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _serve(conn: Connection, target: str, streams_per_channel: int) -> None:
    fleet = Fleet(target, streams_per_channel)
    loop = asyncio.get_running_loop()
    while True:
        command, args = await loop.run_in_executor(None, conn.recv)
        if command == "connect":
            fleet.connect(*args)
            conn.send(None)
        elif command == "synced":
            conn.send(fleet.synced())
        elif command == "arrivals":
            conn.send(fleet.arrivals(*args))
        elif command == "trim":
            fleet.trim()
            conn.send(None)
        elif command == "errors":
            conn.send(sum(c.errors for c in fleet.clients))
        elif command == "stop":
            await fleet.close()
            conn.send(None)
            return


def worker_main(conn: Connection, target: str, streams_per_channel: int) -> None:
    """Entry point of a client process."""
    # The simulator shares the cores with the control plane it measures: keep its
    # collector from walking hundreds of long-lived streams over and over.
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    asyncio.run(_serve(conn, target, streams_per_channel))
