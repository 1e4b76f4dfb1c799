"""Poll with a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Call probe until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(interval)


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as spec:
            return int(spec.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _worker_slice(ephemeral_start: int) -> tuple[int, int]:
    """The ports below the ephemeral range that this test process picks from, as
    ``(start, stop)``: under pytest-xdist each worker gets its own slice, so two workers
    never pick the same port between one's check and its server's bind."""
    floor = max(1024, ephemeral_start - 12000)
    try:
        index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
        count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        return floor, ephemeral_start
    width = (ephemeral_start - floor) // count
    return floor + index * width, floor + (index + 1) * width


def free_port() -> int:
    """A port free right now, for a server a test starts (or restarts) on a known port.

    Chosen below the kernel's ephemeral range: the kernel hands ephemeral ports to every
    outgoing connection and to ``bind(port=0)``, so a port picked from that range can be
    taken by someone else before the server binds it. Below the range only another
    explicit bind can take it."""
    start, stop = _worker_slice(_ephemeral_start())
    for _ in range(200 if stop - start >= 100 else 0):
        port = random.randrange(start, stop)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
