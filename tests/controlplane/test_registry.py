"""Registry: validation table, TTL expiry with an injected clock, change events."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from controlplane.model import Locality, RegisteredWorkload
from controlplane.registration_json import registration_from_json
from controlplane.registry import (
    RegistrationRejected,
    RegistrationRequest,
    Registry,
    UnknownRegistration,
)
from tests.controlplane.polling import eventually


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


GOOD = RegistrationRequest(service="sessions", address="10.0.0.7", ports={50051: 50052})


def request(**changes: object) -> RegistrationRequest:
    return replace(GOOD, **changes)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.snapshots: list[tuple[RegisteredWorkload, ...]] = []

    def __call__(self, snapshot: tuple[RegisteredWorkload, ...]) -> None:
        self.snapshots.append(snapshot)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> Recorder:
    return Recorder()


@pytest.fixture
def registry(clock: FakeClock, changes: Recorder) -> Registry:
    return Registry(clock=clock, on_change=changes)


def test_register_applies_defaults_and_notifies(registry: Registry, changes: Recorder) -> None:
    workload = registry.register(GOOD)
    assert workload.service == "sessions"
    assert dict(workload.ports) == {50051: 50052}
    assert workload.ttl_s == 30.0
    assert workload.weight == 1
    assert workload.namespace == "default"
    assert len(workload.id) == 32
    assert registry.snapshot() == (workload,)
    assert changes.snapshots == [(workload,)]


@pytest.mark.parametrize(
    ("changes_", "field", "text"),
    [
        ({"service": "Sessions"}, "service", "DNS name"),
        ({"service": ""}, "service", "DNS name"),
        ({"service": "a..b"}, "service", "DNS name"),
        ({"service": "-x"}, "service", "DNS name"),
        ({"address": "sessions.local"}, "address", "not an IP address"),
        ({"address": "10.0.0.300"}, "address", "not an IP address"),
        ({"address": "0.0.0.0"}, "address", "cannot receive calls"),
        ({"ports": {}}, "ports", "at least one"),
        ({"ports": {0: 80}}, "ports", "outside 1..65535"),
        ({"ports": {80: 65536}}, "ports[80]", "outside 1..65535"),
        ({"ports": {80: True}}, "ports[80]", "must be an integer"),
        ({"labels": {"": "x"}}, "labels", "non-empty"),
        ({"labels": {"version": 1}}, "labels[version]", "must be a string"),
        ({"locality": "a/b/c/d"}, "locality", "region/zone/subzone"),
        ({"locality": "a//c"}, "locality", "region/zone/subzone"),
        ({"locality": "eu/ west"}, "locality.zone", "no spaces around"),
        ({"locality": Locality(zone="a/b")}, "locality.zone", "no '/'"),
        ({"locality": Locality(region=" eu")}, "locality.region", "no spaces around"),
        ({"locality": Locality(sub_zone="s\n")}, "locality.sub_zone", "printable"),
        ({"locality": Locality(zone="z" * 129)}, "locality.zone", "at most 128"),
        ({"locality": ("eu", "west")}, "locality", "region, zone and sub_zone"),
        ({"weight": 0}, "weight", "outside 1.."),
        ({"weight": 2_000_000}, "weight", "outside 1.."),
        ({"ttl_s": 0.5}, "ttl_seconds", "outside 1.0..3600.0"),
        ({"ttl_s": 3601.0}, "ttl_seconds", "outside 1.0..3600.0"),
        ({"ttl_s": float("nan")}, "ttl_seconds", "outside"),
        ({"namespace": "Prod"}, "namespace", "DNS label"),
        ({"id": "a/b"}, "id", "must be 1-128"),
        ({"id": ""}, "id", "must be 1-128"),
    ],
)
def test_bad_registration_is_rejected_naming_the_field(
    registry: Registry, changes: Recorder, changes_: dict[str, object], field: str, text: str
) -> None:
    with pytest.raises(RegistrationRejected) as info:
        registry.register(request(**changes_))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert text in str(info.value)
    assert registry.snapshot() == ()
    assert changes.snapshots == []


@pytest.mark.parametrize(
    "locality",
    [
        Locality(zone="z1"),
        Locality(region="r1"),
        Locality("r1", "z1"),
        Locality("r1", "z1", "s1"),
        Locality(zone="z1", sub_zone="s1"),
        Locality(region="r1", sub_zone="s1"),
        Locality(),
    ],
)
def test_any_of_region_zone_and_sub_zone_may_be_missing(
    registry: Registry, locality: Locality
) -> None:
    assert registry.register(request(locality=locality)).locality == locality


def test_rejected_reregistration_keeps_the_old_one(registry: Registry) -> None:
    first = registry.register(request(id="w1"))
    with pytest.raises(RegistrationRejected):
        registry.register(request(id="w1", weight=0))
    assert registry.snapshot() == (first,)


def test_good_values_at_the_edges(registry: Registry) -> None:
    workload = registry.register(
        request(
            service="sessions.conference.svc.cluster.local",
            address="::1",
            ports={1: 65535},
            labels={"version": "v2", "app.kubernetes.io/name": "x"},
            locality="eu/eu-west-1/a",
            weight=1_000_000,
            ttl_s=3600.0,
            namespace="conf",
            id="sessions-1:v2",
        )
    )
    assert workload.address == "::1"
    assert workload.locality == Locality("eu", "eu-west-1", "a")
    assert dict(workload.labels) == {"version": "v2", "app.kubernetes.io/name": "x"}


def test_reregistering_the_same_id_replaces(registry: Registry, changes: Recorder) -> None:
    registry.register(request(id="w1"))
    second = registry.register(request(id="w1", address="10.0.0.8"))
    assert registry.snapshot() == (second,)
    registry.register(request(id="w1", address="10.0.0.8"))  # identical: no change event
    assert len(changes.snapshots) == 2


def test_snapshot_order_is_deterministic(registry: Registry) -> None:
    registry.register(request(id="b", service="sessions"))
    registry.register(request(id="a", service="sessions"))
    registry.register(request(id="c", service="attendees"))
    registry.register(request(id="d", service="attendees", namespace="alpha"))
    assert [w.id for w in registry.snapshot()] == ["d", "c", "a", "b"]


def test_heartbeat_extends_and_expiry_removes(
    registry: Registry, clock: FakeClock, changes: Recorder
) -> None:
    registry.register(request(id="w1", ttl_s=5.0))
    clock.advance(4.9)
    assert registry.sweep() == ()
    assert registry.heartbeat("w1") == 5.0
    clock.advance(4.9)
    assert registry.sweep() == ()
    assert registry.remaining_ttl("w1") == pytest.approx(0.1)
    clock.advance(0.2)
    assert registry.sweep() == ("w1",)
    assert registry.snapshot() == ()
    assert changes.snapshots[-1] == ()
    assert registry.remaining_ttl("w1") is None


def test_heartbeat_of_unknown_or_expired_id_fails(registry: Registry, clock: FakeClock) -> None:
    with pytest.raises(UnknownRegistration, match=r"'nope'.*register again"):
        registry.heartbeat("nope")
    registry.register(request(id="w1", ttl_s=1.0))
    clock.advance(1.0)
    with pytest.raises(UnknownRegistration):
        registry.heartbeat("w1")  # expired but not swept yet: still refused, and removed
    assert registry.snapshot() == ()


def test_deregister_is_idempotent(registry: Registry, changes: Recorder) -> None:
    registry.register(request(id="w1"))
    assert registry.deregister("w1") is True
    assert registry.deregister("w1") is False
    assert registry.deregister("never") is False
    assert registry.snapshot() == ()
    assert len(changes.snapshots) == 2


def test_failing_on_change_does_not_undo_the_change(registry: Registry) -> None:
    def broken(_: tuple[RegisteredWorkload, ...]) -> None:
        raise RuntimeError("boom")

    registry.on_change = broken
    registry.register(request(id="w1"))
    assert [w.id for w in registry.snapshot()] == ["w1"]


async def test_expiry_task_removes_lapsed_registrations(
    registry: Registry, clock: FakeClock
) -> None:
    task = asyncio.create_task(registry.run_expiry(max_interval_s=0.01))
    try:
        registry.register(request(id="w1", ttl_s=2.0))
        registry.register(request(id="w2", ttl_s=60.0))
        clock.advance(2.5)
        await eventually(lambda: len(registry.snapshot()) == 1, what="w1 to expire")
        assert [w.id for w in registry.snapshot()] == ["w2"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_expiry_task_with_the_real_clock() -> None:
    registry = Registry()
    task = asyncio.create_task(registry.run_expiry())
    try:
        registry.register(request(id="w1", ttl_s=1.0))
        await eventually(lambda: not registry.snapshot(), what="w1 to expire")
        assert registry.snapshot() == ()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"address": "10.0.0.1", "ports": {"80": 80}}, "service"),
        ({"service": "s", "ports": {"80": 80}}, "address"),
        ({"service": "s", "address": "10.0.0.1"}, "ports"),
        ({"service": "s", "address": "10.0.0.1", "ports": [80]}, "ports"),
        ({"service": "s", "address": "10.0.0.1", "ports": {"http": 80}}, "ports"),
        ({"service": "s", "address": "10.0.0.1", "ports": {"080": 80}}, "ports"),
        ({"service": "s", "address": "10.0.0.1", "ports": {"80": "80"}}, "ports[80]"),
        ({"service": "s", "address": "10.0.0.1", "ports": {"80": 80}, "weight": "2"}, "weight"),
        (
            {"service": "s", "address": "10.0.0.1", "ports": {"80": 80}, "ttl_seconds": "9"},
            "ttl_seconds",
        ),
        (
            {"service": "s", "address": "10.0.0.1", "ports": {"80": 80}, "labels": {"a": 1}},
            "labels[a]",
        ),
        ({"service": "s", "address": "10.0.0.1", "ports": {"80": 80}, "colour": "red"}, "colour"),
        ({"service": 7, "address": "10.0.0.1", "ports": {"80": 80}}, "service"),
        (
            {"service": "s", "address": "10.0.0.1", "ports": {"80": 80}, "locality": 3},
            "locality",
        ),
        (
            {"service": "s", "address": "10.0.0.1", "ports": {"80": 80}, "locality": {"zone": 3}},
            "locality.zone",
        ),
    ],
)
def test_json_body_type_errors_name_the_field(body: object, field: str) -> None:
    with pytest.raises(RegistrationRejected) as info:
        registration_from_json(body)
    assert info.value.field == field


def test_json_body_parses_to_a_request() -> None:
    parsed = registration_from_json(
        {
            "service": "sessions",
            "address": "10.0.0.1",
            "ports": {"50051": 50052},
            "labels": {"version": "v1"},
            "locality": "eu/west",
            "weight": 3,
            "ttl_seconds": 12,
            "namespace": "conf",
            "id": "s1",
        }
    )
    assert parsed == RegistrationRequest(
        service="sessions",
        address="10.0.0.1",
        ports={50051: 50052},
        labels={"version": "v1"},
        locality="eu/west",
        weight=3,
        ttl_s=12.0,
        namespace="conf",
        id="s1",
    )


def test_json_locality_object_has_xds_field_names() -> None:
    body = {"service": "s", "address": "10.0.0.1", "ports": {"80": 80}}
    parsed = registration_from_json({**body, "locality": {"zone": "z1", "sub_zone": None}})
    assert parsed.locality == Locality(zone="z1")
    assert registration_from_json(body).locality == ""


def test_admission_sees_the_would_be_snapshot_and_a_refusal_changes_nothing(
    clock: FakeClock, changes: Recorder
) -> None:
    seen: list[tuple[str, ...]] = []
    replacements: list[tuple[str, str | None]] = []

    def admission(
        workloads: tuple[RegisteredWorkload, ...],
        *,
        added: RegisteredWorkload,
        replaced: RegisteredWorkload | None,
    ) -> None:
        seen.append(tuple(w.id for w in workloads))
        replacements.append((added.address, None if replaced is None else replaced.address))
        if any(w.address == "10.0.0.9" for w in workloads):
            raise RegistrationRejected("ports", "refused by the admission check")

    registry = Registry(clock=clock, on_change=changes, admission=admission)
    kept = registry.register(request(id="b"))
    with pytest.raises(RegistrationRejected, match=r"^ports: refused by the admission check$"):
        registry.register(request(id="a", address="10.0.0.9"))
    with pytest.raises(RegistrationRejected):
        registry.register(request(id="b", address="10.0.0.9"))  # a replacement too
    registry.register(request(id="b"))  # identical: nothing to admit
    assert seen == [("b",), ("a", "b"), ("b",)]
    assert replacements == [(kept.address, None), ("10.0.0.9", None), ("10.0.0.9", kept.address)]
    assert registry.snapshot() == (kept,)
    assert registry.remaining_ttl("a") is None
    assert len(changes.snapshots) == 1
