"""The README's demo and the overhead benchmark, run as a user runs them."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_PY = ROOT / "examples" / "conference" / "run.py"
OVERHEAD_PY = ROOT / "bench" / "overhead.py"

pytestmark = pytest.mark.integration

FOUR_INSTANCES = ["attendees", "attendees", "sessions-v1", "sessions-v2"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_no_orphans(pids: list[int]) -> None:
    assert pids, "run.py reported no child processes"
    deadline = time.monotonic() + 5.0
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if alive(pid)] == []


def assert_every_instance_answered(summary: dict[str, Any], instances: list[str]) -> None:
    """``instances``: the expected names without ports, e.g. ["attendees", "sessions-v1"]."""
    expected: dict[str, list[str]] = summary["expected"]
    assert sorted(name.split("@")[0] for name in expected) == sorted(instances)
    for name, callers in expected.items():
        for caller in callers:
            assert summary["counts"][caller].get(name, 0) > 0, f"{caller} never reached {name}"
    assert summary["missing"] == []
    assert summary["ok"] is True


def test_run_py_spreads_traffic_over_every_instance(tmp_path: Path) -> None:
    """Also: sessions serve mTLS only (a plaintext call is refused), every caller reaches
    them with its join token's or agent's certificate, and mesh.yaml's policy denies the
    kiosk's ListSessions (PERMISSION_DENIED "RBAC: access denied")."""
    summary_path = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, str(RUN_PY), "--duration", "3", "--interval", "0.05",
         "--summary-json", str(summary_path)],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "every instance answered (4 instances)" in done.stdout
    summary = json.loads(summary_path.read_text())
    assert_every_instance_answered(summary, FOUR_INSTANCES)
    for name, callers in summary["expected"].items():  # grpcio must reach sessions too
        assert callers == (["meshlib", "grpcio"] if name.startswith("sessions") else ["meshlib"])
    assert summary["plaintext_refused"] is True
    assert summary["denied"] == {
        "grpcio": ["[grpcio   ] ListSessions() -> DENIED PERMISSION_DENIED: RBAC: access denied"]
    }
    assert not any(summary["errors"].values())
    assert "calling as spiffe://example.org/ns/conference/sa/app" in done.stdout
    assert "the plaintext call was refused" in done.stdout
    assert_no_orphans(summary["pids"])


def stdout_lines(process: subprocess.Popen[str]) -> Iterator[str]:
    """stdout lines as they come, read on a thread so waiting can time out."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    while (line := lines.get(timeout=60)) is not None:
        yield line


def test_scaled_out_instance_gets_traffic_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """The async app; --scale-out: a v2 instance registering mid-run gets calls with no
    restart; then Ctrl-C stops every process."""
    summary_path = tmp_path / "summary.json"
    process = subprocess.Popen(
        [sys.executable, str(RUN_PY), "--forever", "--async", "--interval", "0.05",
         "--scale-out", "0.5", "--summary-json", str(summary_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        new_instance = None
        for line in stdout_lines(process):
            joined = re.match(r"== sessions-v2-b on port (\d+)", line)
            if joined:
                new_instance = f"sessions-v2@{joined.group(1)}"
            elif new_instance is not None and f"-> {new_instance}" in line:
                break
        else:
            pytest.fail(f"the scaled-out instance never answered the app ({new_instance})")
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
    summary = json.loads(summary_path.read_text())
    assert code == 0, f"run.py exited {code}; missing: {summary['missing']}"
    assert summary["interrupted"] is True
    assert_every_instance_answered(summary, [*FOUR_INSTANCES, "sessions-v2"])
    assert summary["expected"][new_instance] == ["meshlib"]
    assert_no_orphans(summary["pids"])


def test_overhead_bench_prints_ratios(tmp_path: Path) -> None:
    results_path = tmp_path / "overhead.json"
    done = subprocess.run(
        [sys.executable, str(OVERHEAD_PY), "--requests", "50", "--warmup", "5",
         "--concurrency", "4", "--json", str(results_path)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ratio to bare" in done.stdout
    document = json.loads(results_path.read_text())
    results = document["results"]
    clients = {(result["group"], result["client"]) for result in results}
    assert clients == {
        ("httpx sync", "bare"), ("httpx sync", "meshlib"),
        ("httpx async", "bare"), ("httpx async", "meshlib"),
        ("grpc sync", "bare"), ("grpc sync", "meshlib"), ("grpc sync", "grpcio xds"),
        ("grpc aio", "bare"), ("grpc aio", "meshlib"), ("grpc aio", "grpcio xds"),
        ("httpx sync mtls", "bare"), ("httpx sync mtls", "meshlib"),
        ("httpx async mtls", "bare"), ("httpx async mtls", "meshlib"),
        ("grpc sync mtls", "bare"), ("grpc sync mtls", "meshlib"),
        ("grpc sync mtls", "grpcio xds"),
        ("grpc aio mtls", "bare"), ("grpc aio mtls", "meshlib"), ("grpc aio mtls", "grpcio xds"),
    }  # fmt: skip
    for result in results:
        assert result["calls"] == 50  # 10 rounds of 5
        assert result["median_ratio"] > 0 and result["concurrent_rps_ratio"] > 0
    assert [first["what"] for first in document["first_call"]] == [
        "httpx, Mesh() plaintext", "httpx, Mesh(token=) mTLS",
        "grpc, Mesh() plaintext", "grpc, Mesh(token=) mTLS",
    ]  # fmt: skip
    rotation = document["rotation"]  # calls on both sides of a rotation, none failed
    assert rotation["failed"] == 0
    assert rotation["calls_before"] > 0 and rotation["calls_after"] > 0
    assert rotation["old_serial"] != rotation["new_serial"]
