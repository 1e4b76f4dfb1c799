"""Starting on a store: which flags are refused, one process per store, and the files
and the store holding the same name at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.app import ControlPlane
from tests.controlplane.meshctl_harness import service_entry, virtual_service, write_yaml
from tests.controlplane.test_cli import EPHEMERAL, run_serve
from tests.support.processes import running_controlplane
from tests.support.waiting import free_port

pytestmark = pytest.mark.integration


def test_etcd_unreachable_at_start_is_a_clear_error() -> None:
    ports = [free_port(), free_port()]
    url = f"etcd://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    result = run_serve(*EPHEMERAL, "--store", url)
    assert result.returncode == 1
    assert f"etcd is unreachable at 127.0.0.1:{ports[0]}, 127.0.0.1:{ports[1]}" in result.stderr
    result = run_serve(*EPHEMERAL, "--store", "etcd://127.0.0.1")
    assert result.returncode == 2 and "'127.0.0.1' is not HOST:PORT" in result.stderr
    result = run_serve(*EPHEMERAL, "--store", "mysql://db")
    assert result.returncode == 2 and "expected sqlite:///FILE" in result.stderr


def test_a_second_control_plane_on_the_same_store_is_refused(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/mesh.db"
    with running_controlplane(None, extra_args=["--store", store]) as first:
        result = run_serve(*EPHEMERAL, "--store", store)
        assert result.returncode == 1
        assert f"in use by another control plane (pid {first.proc.pid})" in result.stderr
    assert (tmp_path / "mesh.db").is_file()


def test_a_file_defining_a_stored_name_stops_the_start(tmp_path: Path) -> None:
    from controlplane.meshctl import main

    data = ["--data-dir", str(tmp_path / "data")]
    applied = write_yaml(tmp_path / "applied.yaml", virtual_service("sessions"))
    with running_controlplane(None, extra_args=data) as cp:
        assert main(["apply", "-f", str(applied), "--admin-address", cp.admin_address]) == 0
    config = write_yaml(
        tmp_path / "mesh.yaml", service_entry("sessions"), virtual_service("sessions")
    )
    result = run_serve("--config", str(config), *EPHEMERAL, *data)
    assert result.returncode == 2
    assert f"{config}#2: metadata.name: VirtualService default/sessions is also stored" in (
        result.stderr
    )


def test_nothing_is_ready_before_the_store_is_loaded(tmp_path: Path) -> None:
    plane = ControlPlane(None, "127.0.0.1:0", "127.0.0.1:0", data_dir=tmp_path)
    assert f"store sqlite:///{tmp_path.resolve()}/store.db not loaded" in plane.not_ready_reasons()


async def test_restored_registrations_that_no_longer_translate_are_dropped(tmp_path: Path) -> None:
    from controlplane.registry import RegistrationRequest

    config = write_yaml(tmp_path / "mesh.yaml", service_entry("sessions"))
    data = tmp_path / "data"
    plane = ControlPlane(config, "127.0.0.1:0", "127.0.0.1:0", data_dir=data)
    await plane.start()
    plane.registry.register(
        RegistrationRequest("checkin", "10.0.0.9", {50052: 7002, 50053: 7003}, id="c1")
    )
    await plane.stop()
    # While it was down, sessions:50051 was routed to checkin without a port: checkin
    # serves two ports, neither 50051, so with that registration the port is a guess.
    route = virtual_service("sessions")
    route["spec"]["http"][0]["route"][0]["destination"]["host"] = "checkin"
    write_yaml(config, service_entry("sessions"), route)
    again = ControlPlane(config, "127.0.0.1:0", "127.0.0.1:0", data_dir=data)
    await again.start()
    try:
        assert again.registry.snapshot() == ()
        assert again.not_ready_reasons() == []
    finally:
        await again.stop()
    third = ControlPlane(config, "127.0.0.1:0", "127.0.0.1:0", data_dir=data)
    await third.start()  # the drop was written to the store
    try:
        assert third.registry.snapshot() == ()
    finally:
        await third.stop()
