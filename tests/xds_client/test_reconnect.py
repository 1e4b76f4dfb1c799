"""Reconnecting after the control plane went away: one backoff schedule, no more.

grpc's channel has a reconnect backoff of its own; a call started while the
channel waits on it fails without trying, so stacked on the stream's schedule a
control plane back after 15 s was reached up to 20 s later. These tests pin
that every retry is one real connection attempt and that a restarted control
plane is reached within the schedule's bound.
"""

from __future__ import annotations

import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlib.xds_client import ENDPOINTS, LISTENER, XdsClient, load_bootstrap
from meshlib.xds_client.resources import EndpointsResource
from meshlib.xds_client.watchers import CallbackWatcher
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import running_controlplane
from tests.support.waiting import free_port, wait_for
from tests.xds_client.conftest import ClientFactory
from tests.xds_client.recording import RecordingWatcher

CLUSTER = "outbound|50051||echo"
RETRY = re.compile(r"^xds_stream_retry delay_s=([0-9.]+)$")


class DroppingServer:
    """Accepts TCP connections and closes them at once, counting them: a server that is
    there but never speaks gRPC, so every connection attempt is seen and fails."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._count = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        with self._lock:
            return self._count

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with self._lock:
                self._count += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture
def dropping() -> Iterator[DroppingServer]:
    server = DroppingServer()
    yield server
    server.close()


def _retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    records = list(caplog.records)
    return [float(m.group(1)) for r in records if (m := RETRY.match(r.getMessage()))]


def _stream_ends(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in list(caplog.records) if r.getMessage().startswith("xds_stream_lost"))


def test_each_retry_is_one_connection_attempt(
    dropping: DroppingServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meshlib.xds_client")
    client = make_client(dropping.address, backoff_base_s=0.2, backoff_max_s=0.5)
    client.watch(LISTENER, "svc:80", RecordingWatcher())
    deadline = time.monotonic() + 20
    while _stream_ends(caplog) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    client.close()
    time.sleep(0.3)  # a connection attempt made just before close() lands
    ends, accepted = _stream_ends(caplog), dropping.accepted
    assert ends >= 6
    # One attempt per stream (the last may have been cut short by close()), and no
    # reconnects of grpc's own in between.
    assert ends <= accepted <= ends + 1, f"{ends} streams, {accepted} connection attempts"


@pytest.mark.integration
def test_restarted_control_plane_is_reached_on_the_schedule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="meshlib.xds_client.ads_stream")
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    address = f"127.0.0.1:{free_port()}"
    events: queue.Queue[object] = queue.Queue()
    watcher = CallbackWatcher(events.put, lambda e: None, lambda e: None)
    with running_controlplane(config, xds_address=address) as cp:
        xds = XdsClient(load_bootstrap(cp.write_bootstrap(tmp_path / "b.json", "restart")))
        xds.watch(ENDPOINTS, CLUSTER, watcher)
        events.get(timeout=20)
    try:
        # The control plane is away; the client retries on its schedule (three retries
        # seen, however slow the machine, so the schedule has steps to check).
        wait_for(lambda: len(_retry_delays(caplog)) >= 3, timeout=30, what="three retries")
        write_config(config, service_entry("echo", 50051, [7005]))
        with running_controlplane(config, xds_address=address):
            back = time.monotonic()
            resource = events.get(timeout=60)
            resync_s = time.monotonic() - back
            delays = _retry_delays(caplog)  # those of the outage (stopping again adds more)
        assert isinstance(resource, EndpointsResource)
        assert [e.port for e in resource.all_endpoints()] == [7005]
    finally:
        xds.close()
    assert len(delays) >= 3, delays
    # The default schedule: 1 s after the stream that had responses, then x1.6, each ±20%.
    for step, delay in enumerate(delays):
        nominal = min(1.6**step, 120.0)
        assert 0.8 * nominal - 0.001 <= delay <= 1.2 * nominal + 0.001, (step, delays)
    # Reached no later than the retry pending when it came back (plus generous slack).
    assert resync_s <= max(delays) + 5.0, (resync_s, delays)
