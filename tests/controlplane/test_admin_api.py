"""The admin HTTP API over real HTTP on loopback (aiohttp server, httpx client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from controlplane.addresses import HostPort
from controlplane.admin import (
    AdminAddressError,
    AdminServer,
    build_admin_app,
    check_admin_address,
)
from controlplane.registry import Registry


@dataclass
class StaticStatus:
    """A status source whose answers the test sets."""

    reasons: list[str] = field(default_factory=lambda: ["config not loaded"])
    clients: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def not_ready_reasons(self) -> list[str]:
        return self.reasons

    def clients_status(self) -> list[dict[str, Any]]:
        return self.clients

    def config_status(self) -> dict[str, Any]:
        return self.config

    def client_detail(self, node_id: str) -> dict[str, Any] | None:
        return next((c for c in self.clients if c.get("node_id") == node_id), None)

    def metrics_text(self) -> str:
        return "# no metrics\n"


@dataclass
class Admin:
    http: httpx.AsyncClient
    registry: Registry
    status: StaticStatus


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    registry = Registry()
    status = StaticStatus()
    server = AdminServer(build_admin_app(registry, status), HostPort("127.0.0.1", 0))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            yield Admin(http, registry, status)
    finally:
        await server.stop()


BODY = {
    "service": "attendees",
    "address": "127.0.0.1",
    "ports": {"8080": 18080},
    "labels": {"version": "v1"},
    "locality": "eu/west/a",
    "weight": 2,
    "ttl_seconds": 15,
    "namespace": "conf",
}


async def test_livez_and_readyz(admin: Admin) -> None:
    assert (await admin.http.get("/livez")).status_code == 200
    not_ready = await admin.http.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["reasons"] == ["config not loaded"]
    admin.status.reasons = []
    assert (await admin.http.get("/readyz")).status_code == 200


async def test_register_list_heartbeat_deregister(admin: Admin) -> None:
    created = await admin.http.post("/v1/workloads", json=BODY)
    assert created.status_code == 201
    workload_id = created.json()["id"]
    assert created.json()["ttl_seconds"] == 15.0
    assert created.headers["Location"] == f"/v1/workloads/{workload_id}"

    listed = (await admin.http.get("/v1/workloads")).json()["workloads"]
    assert len(listed) == 1
    shown = listed[0]
    locality = {"region": "eu", "zone": "west", "sub_zone": "a"}  # shown as xDS's fields
    assert {k: shown[k] for k in BODY} == {**BODY, "ttl_seconds": 15.0, "locality": locality}
    assert 0 < shown["expires_in_seconds"] <= 15

    beat = await admin.http.put(f"/v1/workloads/{workload_id}/heartbeat")
    assert beat.status_code == 200
    assert beat.json() == {"id": workload_id, "ttl_seconds": 15.0}

    assert (await admin.http.delete(f"/v1/workloads/{workload_id}")).status_code == 204
    assert admin.registry.snapshot() == ()
    assert (await admin.http.delete(f"/v1/workloads/{workload_id}")).status_code == 204
    gone = await admin.http.put(f"/v1/workloads/{workload_id}/heartbeat")
    assert gone.status_code == 404
    assert "register again" in gone.json()["error"]


@pytest.mark.parametrize(
    ("locality", "fields"),
    [
        ({"zone": "z1"}, ("", "z1", "")),
        ({"region": "us-east", "sub_zone": "s1"}, ("us-east", "", "s1")),
        ({}, ("", "", "")),
        ("us-east", ("us-east", "", "")),
    ],
)
async def test_locality_is_three_optional_fields(
    admin: Admin, locality: object, fields: tuple[str, str, str]
) -> None:
    created = await admin.http.post("/v1/workloads", json={**BODY, "locality": locality})
    assert created.status_code == 201, created.text
    (shown,) = (await admin.http.get("/v1/workloads")).json()["workloads"]
    assert shown["locality"] == dict(zip(("region", "zone", "sub_zone"), fields, strict=True))


async def test_register_with_a_chosen_id_replaces(admin: Admin) -> None:
    for address in ("127.0.0.1", "127.0.0.2"):
        response = await admin.http.post(
            "/v1/workloads", json={**BODY, "id": "att-1", "address": address}
        )
        assert response.status_code == 201
        assert response.json()["id"] == "att-1"
    (workload,) = admin.registry.snapshot()
    assert workload.address == "127.0.0.2"


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({**BODY, "ports": {"http": 80}}, "ports", "not a decimal number"),
        ({**BODY, "ports": {"80": 0}}, "ports[80]", "outside 1..65535"),
        ({**BODY, "service": "Not A Host"}, "service", "DNS name"),
        ({**BODY, "address": "attendees.local"}, "address", "not an IP address"),
        ({**BODY, "ttl_seconds": 0}, "ttl_seconds", "outside"),
        ({**BODY, "weight": 0}, "weight", "outside"),
        ({**BODY, "locality": "a/b/c/d"}, "locality", "region"),
        ({**BODY, "locality": ["eu"]}, "locality", "sub_zone"),
        ({**BODY, "locality": {"city": "x"}}, "locality.city", "unknown field"),
        ({**BODY, "locality": {"zone": 1}}, "locality.zone", "expected a string"),
        ({**BODY, "locality": {"zone": "a/b"}}, "locality.zone", "no '/'"),
        ({**BODY, "extra": True}, "extra", "unknown field"),
        ({k: v for k, v in BODY.items() if k != "service"}, "service", "is required"),
    ],
)
async def test_bad_registration_is_400_naming_the_field(
    admin: Admin, body: dict[str, Any], field: str, text: str
) -> None:
    response = await admin.http.post("/v1/workloads", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["field"] == field
    assert error["error"].startswith(f"{field}: ")
    assert text in error["error"]
    assert admin.registry.snapshot() == ()


async def test_malformed_json_is_400(admin: Admin) -> None:
    response = await admin.http.post("/v1/workloads", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert "not valid JSON" in response.json()["error"]


async def test_status_views(admin: Admin) -> None:
    admin.status.clients = [
        {"node_id": "n1", "resources": {"LDS": {"acked_version": "3"}}},
    ]
    admin.status.config = {"loaded": True, "files": ["/etc/mesh.yaml"], "last_error": None}
    clients = await admin.http.get("/v1/clients")
    assert clients.json() == {"clients": admin.status.clients}
    config = await admin.http.get("/v1/config")
    assert config.json() == admin.status.config


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "::1", "localhost"])
def test_loopback_admin_addresses_are_allowed(host: str) -> None:
    check_admin_address(HostPort(host, 15014), allow_remote=False)


def test_remote_admin_address_needs_the_opt_in() -> None:
    with pytest.raises(AdminAddressError, match="--admin-allow-remote"):
        check_admin_address(HostPort("0.0.0.0", 15014), allow_remote=False)
    check_admin_address(HostPort("0.0.0.0", 15014), allow_remote=True)


async def test_admin_port_in_use_is_a_clear_error(admin: Admin) -> None:
    port = int(str(admin.http.base_url).rsplit(":", 1)[1].rstrip("/"))
    second = AdminServer(build_admin_app(Registry(), StaticStatus()), HostPort("127.0.0.1", port))
    with pytest.raises(OSError, match=f"admin address 127.0.0.1:{port}: cannot listen"):
        await second.start()
