"""A resource that cannot be decoded is NACKed naming it; the client and last good live on.

Out-of-range enums (proto3 enums are open: -1, 23 or 2**31-1 arrive as is) get a
validation error naming the field; any other exception out of a decoder (a
meshlib bug) still becomes a NACK naming the resource, never a dead client task.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2
from envoy.type.v3 import percent_pb2

from meshlib.errors import XdsValidationError
from meshlib.xds_client import CLUSTER, ENDPOINTS, LISTENER, ROUTE_CONFIG
from meshlib.xds_client.resource_types import RESOURCE_TYPES, ResourceType
from meshlib.xds_client.sotw import DecodedResponse
from tests.xds_client import xds_builders as b
from tests.xds_client.conftest import ClientFactory
from tests.xds_client.fake_ads import FakeAds
from tests.xds_client.fuzz_corpus import seeds
from tests.xds_client.fuzz_mutator import ODD_ENUMS, every_enum_set_to
from tests.xds_client.recording import RecordingWatcher

OUT_OF_RANGE = (-1, 23, 2**31 - 1)


def answer_to(ads: FakeAds, type_url: str, nonce: str, start: int = 0) -> Any:
    return ads.wait_for_request(
        lambda r: r.type_url == type_url and r.response_nonce == nonce, start=start
    )


def crashes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or "task_failed" in r.msg]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_out_of_range_cluster_type_is_nacked_and_last_good_kept(
    value: int, ads: FakeAds, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(ads.address)
    watcher = RecordingWatcher()
    client.watch(CLUSTER, "a", watcher)
    ads.wait_for_request(lambda r: r.type_url == b.CDS and list(r.resource_names) == ["a"])
    ads.push(b.CDS, [b.cluster("a")], "1")
    watcher.wait_count(1)

    bad = b.cluster("a")
    bad.type = value
    nack = answer_to(ads, b.CDS, ads.push(b.CDS, [bad], "2"))
    assert nack.version_info == "1"
    assert f'Cluster "a": type: unknown value {value}' in nack.error_detail.message
    kind, error = watcher.wait_count(2)[1]
    assert (kind, type(error)) == ("ambient_error", XdsValidationError)
    (entry,) = client.config_dump()["types"]["Cluster"]["resources"]
    assert (entry["status"], entry["version"]) == ("NACKED", "1")
    assert entry["resource"]["type"] == "EDS"  # the last good one

    ack = answer_to(ads, b.CDS, ads.push(b.CDS, [b.cluster("a", "a-eds")], "3"))
    assert not ack.error_detail.message  # the client still works
    assert crashes(caplog) == []


def _vhost_type(decoder: Any) -> ResourceType[Any]:
    """A resource type of its own (VirtualHost, which meshlib does not watch) to plug a
    decoder into the real client through its public watch()."""
    return ResourceType(
        type_url="type.googleapis.com/envoy.config.route.v3.VirtualHost",
        name="VirtualHost",
        message_class=route_components_pb2.VirtualHost,
        name_field="name",
        decoder=decoder,
        model_name=lambda name: str(name),
        all_resources_required_in_sotw=False,
    )


def _buggy_decoder(msg: Any) -> str:
    if msg.name.startswith("boom"):
        raise KeyError("a decoder bug")
    return str(msg.name)


def test_any_decoder_exception_is_a_nack_naming_the_resource(
    ads: FakeAds, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    vhosts = _vhost_type(_buggy_decoder)
    client = make_client(ads.address)
    boom, fine = RecordingWatcher("boom"), RecordingWatcher("fine")
    client.watch(vhosts, "boom", boom)
    client.watch(vhosts, "fine", fine)
    ads.wait_for_request(lambda r: r.type_url == vhosts.type_url and len(r.resource_names) == 2)

    resources = [route_components_pb2.VirtualHost(name=n) for n in ("boom", "fine")]
    nack = answer_to(ads, vhosts.type_url, ads.push(vhosts.type_url, resources, "1"))
    assert nack.error_detail.code == 3
    assert nack.error_detail.message == (
        'VirtualHost "boom": cannot be decoded '
        "(meshlib decoder failed: KeyError: 'a decoder bug')"
    )
    assert fine.wait_count(1)[0] == ("changed", "fine")  # its sibling is applied
    kind, error = boom.wait_count(1)[0]
    assert (kind, type(error)) == ("resource_error", XdsValidationError)
    (logged,) = [r for r in caplog.records if r.getMessage().startswith("xds_decoder_failed")]
    assert logged.exc_info is not None and logged.levelno == logging.ERROR

    nonce = ads.push(vhosts.type_url, [route_components_pb2.VirtualHost(name="fine")], "2")
    assert not answer_to(ads, vhosts.type_url, nonce).error_detail.message
    assert not [r for r in caplog.records if "xds_client_task_failed" in r.getMessage()]


@pytest.mark.parametrize(
    ("rtype", "name", "message"),
    [(LISTENER, "svc:80", b.listener("svc:80")), (CLUSTER, "c1", b.cluster("c1"))],
    ids=["LDS", "CDS"],
)
def test_an_unreadable_resource_deletes_nothing(
    rtype: Any, name: str, message: Any, ads: FakeAds, make_client: ClientFactory
) -> None:
    """A resource that cannot even be parsed may be the one that looks absent, so a
    state-of-the-world response holding one deletes nothing: the last good stays."""
    client = make_client(ads.address)
    watcher = RecordingWatcher()
    client.watch(rtype, name, watcher)
    ads.wait_for_request(lambda r: r.type_url == rtype.type_url and r.resource_names)
    ads.push(rtype.type_url, [message], "1")
    watcher.wait_count(1)

    garbage = b.pack(message)
    garbage.value = b"\xff\xff" + garbage.value
    nack = answer_to(ads, rtype.type_url, ads.push(rtype.type_url, [], "2", raw=[garbage]))
    assert "cannot parse resource" in nack.error_detail.message
    assert watcher.kinds() == ["changed"]
    (entry,) = client.config_dump()["types"][rtype.name]["resources"]
    assert entry["resource"] is not None and entry["version"] == "1"


def _with(builder: Any, change: Any) -> Any:
    message = builder()
    change(message)
    return message


def _route(change: Any) -> Any:
    return _with(b.route_config, lambda c: change(c.virtual_hosts[0].routes[0]))


def _fraction(target: Any, denominator: int) -> None:
    target.CopyFrom(percent_pb2.FractionalPercent(numerator=5, denominator=denominator))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rtype", "message", "error"),
    [
        (CLUSTER, _with(b.cluster, lambda c: setattr(c, "type", -1)), "type: unknown value -1"),
        (CLUSTER, _with(b.cluster, lambda c: setattr(c, "type", 23)), "type: unknown value 23"),
        (
            CLUSTER,
            _with(b.cluster, lambda c: setattr(c, "lb_policy", 2**31 - 1)),
            f"lb_policy: unknown value {2**31 - 1}",
        ),
        (
            ROUTE_CONFIG,
            _route(lambda r: _fraction(r.match.runtime_fraction.default_value, 7)),
            "routes[0].match.runtime_fraction.default_value.denominator: unknown value 7",
        ),
        (
            ROUTE_CONFIG,
            _route(lambda r: _fraction(r.route.hedge_policy.additional_request_chance, -1)),
            "hedge_policy.additional_request_chance.denominator: unknown value -1",
        ),
        (
            ENDPOINTS,
            _with(
                b.cluster_load_assignment,
                lambda m: _fraction(m.policy.drop_overloads.add(category="c").drop_percentage, 23),
            ),
            "policy.drop_overloads[0].drop_percentage.denominator: unknown value 23",
        ),
    ],
)
def test_out_of_range_enums_name_the_field(rtype: Any, message: Any, error: str) -> None:
    with pytest.raises(XdsValidationError, match=r'^\w+ "[^"]+": ') as caught:
        rtype.decode(b.pack(message))
    assert error in str(caught.value)


def test_every_enum_of_every_seed_out_of_range_decodes_or_fails_cleanly() -> None:
    """Each enum field reachable from the fuzz seeds (inside Any payloads too), set to each
    out-of-range value, either decodes (a field meshlib ignores) or fails validation."""
    tried = 0
    for type_url, messages in seeds().items():
        rtype = RESOURCE_TYPES[type_url]
        for message in messages:
            for value in ODD_ENUMS:
                for where, mutant in every_enum_set_to(message, value):
                    tried += 1
                    try:
                        rtype.decode(b.pack(mutant))
                    except XdsValidationError:
                        pass
                    except Exception as exc:  # pragma: no cover - the failure report
                        pytest.fail(f"{where}={value}: {type(exc).__name__}: {exc}")
    assert tried > 1000


def test_error_detail_is_bounded() -> None:
    """One huge name or pattern per resource must not make the NACK too big to send."""
    decoded = DecodedResponse(errors={f"r{i}": "x" * 70_000 for i in range(100)})
    detail = decoded.error_detail()
    assert len(detail) < 40_000
    assert detail.endswith("more errors")
