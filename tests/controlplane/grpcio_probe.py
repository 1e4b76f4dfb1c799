"""Run grpcio's native xDS client in a subprocess (its xDS client is process-wide)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
grpc.channel_ready_future(channel)  # starts resolution, which creates the xDS client
sys.stdin.read()  # hold the ADS stream open until the test closes stdin
channel.close()
"""


def start_grpcio_xds_client(bootstrap: Path, target: str = "xds:///x:1") -> subprocess.Popen[str]:
    """Start a grpcio channel to ``target`` using ``bootstrap``; end it with ``finish``."""
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap), "GRPC_VERBOSITY": "NONE"}
    env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, target],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def finish(client: subprocess.Popen[str]) -> tuple[int, str]:
    """Let the client close its channel and exit; returns (exit code, stderr)."""
    try:
        _, stderr = client.communicate(input="", timeout=10)
    except subprocess.TimeoutExpired:
        client.kill()
        _, stderr = client.communicate(timeout=10)
    return client.returncode, stderr
