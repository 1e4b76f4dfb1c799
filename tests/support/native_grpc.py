"""grpcio's own xDS client in a subprocess (``native_grpc_driver.py``), called from tests.

One process per test: grpc's xDS client is process-global, so a fresh process
is the only way to get a fresh client and a clean bootstrap.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

DRIVER = Path(__file__).with_name("native_grpc_driver.py")
REPLY_TIMEOUT_S = 60.0


class NativeGrpcClient:
    """Sends call batches to the driver process and reads its answers back."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put("")

    def calls(
        self,
        target: str,
        count: int,
        metadata: Mapping[str, str] | None = None,
        concurrency: int = 1,
    ) -> list[str]:
        """``count`` calls to ``/test.Echo/Who`` (``concurrency`` in flight at a time):
        backend names or ``"error: CODE"``."""
        assert self._process.stdin is not None
        command = {
            "target": target,
            "count": count,
            "metadata": sorted((metadata or {}).items()),
            "concurrency": concurrency,
        }
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        try:
            line = self._lines.get(timeout=REPLY_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"grpcio client gave no answer in {REPLY_TIMEOUT_S}s") from None
        if not line:
            raise AssertionError(f"grpcio client exited ({self._process.poll()})")
        replies = json.loads(line)
        assert isinstance(replies, list)
        return [str(reply) for reply in replies]


@contextmanager
def native_grpc_client(bootstrap: Path) -> Iterator[NativeGrpcClient]:
    """A grpcio xDS client process using ``bootstrap``; stopped when the block ends."""
    process = subprocess.Popen(
        [sys.executable, str(DRIVER)],
        env={**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield NativeGrpcClient(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
