"""mesh.register() against the real control plane process.

A bootstrap written by ``meshctl bootstrap`` with any mix of region, zone and
sub-zone (each optional, as in gRPC and xDS) registers, and the EDS the control
plane then serves carries exactly those three fields. A registration made while
the control plane is down lands once it starts; one it refuses raises at once.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import meshlib
from controlplane import meshctl
from meshlib.xds_client import ENDPOINTS, CallbackWatcher, XdsClient, load_bootstrap
from meshlib.xds_client.resources import EndpointsResource, Locality
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import free_port

pytestmark = pytest.mark.integration

TARGET_PORT = 19999
WAIT_S = 30.0


def write_bootstrap(path: Path, xds_address: str, *flags: str) -> Path:
    """The getting-started way: ``meshctl bootstrap ... -o FILE``."""
    argv = ["bootstrap", "--xds-address", xds_address, "--node-id", path.stem, *flags]
    assert meshctl.main([*argv, "-o", str(path)]) == 0
    return path


def served_localities(bootstrap: Path, service: str) -> list[Locality]:
    """The localities of the EDS the control plane serves for ``service:9999``, once
    the registered endpoint is in it."""
    updates: queue.Queue[EndpointsResource] = queue.Queue()
    xds = XdsClient(load_bootstrap(bootstrap))
    try:
        xds.watch(ENDPOINTS, f"outbound|9999||{service}", CallbackWatcher(updates.put))
        while True:
            resource = updates.get(timeout=WAIT_S)
            if any(e.port == TARGET_PORT for e in resource.all_endpoints()):
                return [group.locality for group in resource.localities]
    finally:
        xds.close()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    config = tmp_path_factory.mktemp("plane") / "mesh.yaml"
    with running_controlplane(write_config(config, service_entry("echo", 50051, [7001]))) as cp:
        yield cp


@pytest.mark.parametrize(
    ("flags", "locality"),
    [
        (("--zone", "z1"), Locality(zone="z1")),
        (("--region", "us-east"), Locality(region="us-east")),
        (("--region", "us-east", "--zone", "a"), Locality("us-east", "a")),
        (("--region", "r1", "--zone", "z1", "--sub-zone", "s1"), Locality("r1", "z1", "s1")),
        (("--zone", "z1", "--sub-zone", "s1"), Locality(zone="z1", sub_zone="s1")),
        ((), Locality()),
    ],
    ids=["zone", "region", "region-zone", "region-zone-subzone", "zone-subzone", "none"],
)
def test_bootstrap_locality_reaches_eds_as_three_fields(
    plane: ControlPlaneProcess,
    tmp_path: Path,
    flags: tuple[str, ...],
    locality: Locality,
) -> None:
    bootstrap = write_bootstrap(tmp_path / "probe.json", plane.xds_address, *flags)
    service = f"probe-{len(flags)}-{'-'.join(flags[1::2]).lower()}".rstrip("-")
    with meshlib.Mesh(bootstrap) as mesh:
        registration = mesh.register(service=service, port=9999, target_port=TARGET_PORT)
        assert registration.registered
        assert served_localities(bootstrap, service) == [locality]
        shown = httpx.get(f"{plane.admin_url}/v1/workloads").json()["workloads"]
        (mine,) = [w for w in shown if w["id"] == registration.id]
        assert mine["locality"] == {
            "region": locality.region,
            "zone": locality.zone,
            "sub_zone": locality.sub_zone,
        }


def test_refused_registration_raises_at_once(plane: ControlPlaneProcess, tmp_path: Path) -> None:
    bootstrap = write_bootstrap(tmp_path / "refused.json", plane.xds_address, "--zone", "z1")
    with (
        meshlib.Mesh(bootstrap) as mesh,
        pytest.raises(meshlib.RegistrationError, match=r"refused .* INVALID_ARGUMENT: service: "),
    ):
        mesh.register(service="Not_A_Host", port=9999, target_port=TARGET_PORT)
    with (
        meshlib.Mesh(bootstrap) as mesh,
        pytest.raises(meshlib.RegistrationError, match=r"INVALID_ARGUMENT: weight: "),
    ):
        mesh.register(service="heavy", port=9999, weight=2_000_000)
    shown = httpx.get(f"{plane.admin_url}/v1/workloads").json()["workloads"]
    assert not [w for w in shown if w["service"] in ("Not_A_Host", "heavy")]


def test_registration_made_while_the_control_plane_is_down_lands_when_it_starts(
    tmp_path: Path,
) -> None:
    xds_address = f"127.0.0.1:{free_port()}"
    bootstrap = write_bootstrap(tmp_path / "early.json", xds_address, "--zone", "z1")
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    with meshlib.Mesh(bootstrap) as mesh:
        registration = mesh.register(service="early", port=9999, target_port=TARGET_PORT)
        assert not registration.registered  # nothing listens yet: pending, not an error
        with running_controlplane(config, xds_address=xds_address) as cp:
            assert registration.wait_registered(WAIT_S)
            assert served_localities(bootstrap, "early") == [Locality(zone="z1")]
            shown = httpx.get(f"{cp.admin_url}/v1/workloads").json()["workloads"]
            assert [(w["service"], w["id"]) for w in shown] == [("early", registration.id)]
            registration.close()
            assert httpx.get(f"{cp.admin_url}/v1/workloads").json()["workloads"] == []
