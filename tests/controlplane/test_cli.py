"""``mesh-controlplane serve`` as a real subprocess on loopback ports picked by the OS."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.controlplane.grpcio_probe import finish, start_grpcio_xds_client
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import running_controlplane
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SERVE = [sys.executable, "-m", "controlplane.cli", "serve"]
EPHEMERAL = ["--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "mesh.yaml", service_entry("sessions", 50051, [50052]))


def run_serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run serve expecting it to exit by itself (bad input)."""
    return subprocess.run(
        [*SERVE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def get_json(url: str) -> Any:
    return httpx.get(url, timeout=5).json()


def test_serves_until_sigterm_then_exits_0(config: Path) -> None:
    with running_controlplane(config) as cp:
        host, port = cp.xds_address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert httpx.get(f"{cp.admin_url}/livez", timeout=5).status_code == 200
        ready = httpx.get(f"{cp.admin_url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        shown = get_json(f"{cp.admin_url}/v1/config")
        assert shown["loaded"] is True
        assert shown["files"] == [str(config)]
        assert shown["last_error"] is None
        started = time.monotonic()
        assert cp.stop() == 0
        assert time.monotonic() - started < 5
        wait_for(lambda: any("controlplane_stopped" in line for line in cp.stderr_lines), 5)


def test_sigint_is_a_clean_shutdown_too(config: Path) -> None:
    with running_controlplane(config) as cp:
        cp.proc.send_signal(signal.SIGINT)
        assert cp.proc.wait(timeout=10) == 0


def test_serving_line_is_the_only_stdout(config: Path) -> None:
    proc = subprocess.Popen(
        [*SERVE, "--config", str(config), *EPHEMERAL, "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        event = json.loads(proc.stdout.readline())
        assert set(event) == {"event", "xds_address", "admin_address", "secure_xds_address"}
        assert event["event"] == "serving"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert (proc.returncode, out) == (0, "")
    records = [json.loads(line) for line in err.splitlines()]
    assert any(r["event"] == "controlplane_started" for r in records)


def test_bad_initial_config_exits_2_with_the_issues(tmp_path: Path) -> None:
    bad = service_entry("sessions", 50051, [50052])
    bad["spec"]["resolution"] = "BOGUS"  # type: ignore[index]
    path = write_config(tmp_path / "mesh.yaml", bad)
    result = run_serve("--config", str(path), *EPHEMERAL)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{path}#1: spec.resolution:" in result.stderr
    assert "refused, nothing served" in result.stderr


def test_missing_config_exits_2(tmp_path: Path) -> None:
    result = run_serve("--config", str(tmp_path / "absent.yaml"), *EPHEMERAL)
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--xds-address", "nowhere"], "--xds-address: expected HOST:PORT"),
        (["--admin-address", "127.0.0.1:70000"], "--admin-address: port 70000"),
        (["--admin-address", "0.0.0.0:0"], "--admin-allow-remote"),
        (["--debounce-ms", "soon"], "whole number of milliseconds"),
        (["--debounce-ms", "2000"], "debounce"),
        (["--log-format", "xml"], "--log-format"),
    ],
)
def test_bad_arguments_exit_2(config: Path, args: list[str], error: str) -> None:
    result = run_serve("--config", str(config), *EPHEMERAL, *args)
    assert result.returncode == 2
    assert error in result.stderr


def test_without_config_it_serves_the_store_and_says_nothing_persists() -> None:
    with running_controlplane(None) as cp:
        assert get_json(f"{cp.admin_url}/readyz")["status"] == "ready"
        status = get_json(f"{cp.admin_url}/v1/config")
        assert status["path"] is None and status["files"] == []
        assert status["store"] == {
            "url": "memory",
            "persistent": False,
            "loaded": True,
            "problem": None,
            "revision": 0,
            "resources": 0,
        }
        wait_for(lambda: any("store_in_memory" in line for line in cp.stderr_lines), timeout=5)


def test_data_dir_is_created_and_must_be_a_folder(config: Path, tmp_path: Path) -> None:
    data = tmp_path / "state" / "cp"
    with running_controlplane(config, extra_args=["--data-dir", str(data)]):
        assert data.is_dir()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = run_serve("--config", str(config), *EPHEMERAL, "--data-dir", str(not_a_folder))
    assert result.returncode == 2
    assert "--data-dir" in result.stderr and "not a folder" in result.stderr


def test_busy_xds_port_exits_1(config: Path) -> None:
    with running_controlplane(config) as cp:
        args = ["--config", str(config), "--xds-address", cp.xds_address]
        result = run_serve(*args, "--admin-address", "127.0.0.1:0")
    assert result.returncode == 1
    assert f"--xds-address {cp.xds_address}: cannot listen" in result.stderr


def test_bad_edit_is_refused_and_shown_then_cleared(config: Path) -> None:
    with running_controlplane(config) as cp:
        bad = service_entry("sessions", 50051, [50052])
        bad["spec"]["hosts"] = ["Not_A_Host"]  # type: ignore[index]
        write_config(config, bad)

        def last_error() -> Any:
            return get_json(f"{cp.admin_url}/v1/config")["last_error"]

        error = wait_for(last_error, timeout=10, what="the bad edit to be refused")
        assert f"{config}#1: spec.hosts[0]" in error["message"]
        assert httpx.get(f"{cp.admin_url}/readyz", timeout=5).status_code == 200

        write_config(config, service_entry("sessions", 50051, [50052, 50053]))
        wait_for(lambda: last_error() is None, timeout=10, what="the good edit to be taken")


def test_registration_over_admin_and_grpcio_client_status(config: Path, tmp_path: Path) -> None:
    with running_controlplane(config) as cp:
        created = httpx.post(
            f"{cp.admin_url}/v1/workloads",
            json={"service": "attendees", "address": "127.0.0.1", "ports": {"8080": 18080}},
            timeout=5,
        )
        assert created.status_code == 201
        listed = get_json(f"{cp.admin_url}/v1/workloads")["workloads"]
        assert [w["id"] for w in listed] == [created.json()["id"]]

        bootstrap = cp.write_bootstrap(tmp_path / "bootstrap.json", node_id="grpcio-1")
        client = start_grpcio_xds_client(bootstrap, "xds:///sessions:50051")
        try:

            def grpcio_acked() -> bool:
                for entry in get_json(f"{cp.admin_url}/v1/clients")["clients"]:
                    if entry["node_id"] == "grpcio-1":
                        return any(t["acked_version"] for t in entry["types"].values())
                return False

            wait_for(grpcio_acked, timeout=10, what="grpcio to ACK the listener")
            started = time.monotonic()
            assert cp.stop() == 0  # with an ADS stream open
            assert time.monotonic() - started < 5
        finally:
            code, stderr = finish(client)
        assert code == 0, stderr
