"""Security resources through the config API (``meshctl apply / get / delete``) against a
real control plane: stored and read back by their kind's short name, refused whole with
their place when invalid, and in force for the inbound listener a client asks for."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.controlplane.meshctl_harness import Ctl, controlplane_with_ctl, service_entry

pytestmark = pytest.mark.integration

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
SEC = "security.istio.io/v1"


@pytest.fixture
def ctl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    with controlplane_with_ctl(tmp_path, capsys, service_entry("sessions")) as (ctl, _):
        yield ctl


def strict() -> dict[str, Any]:
    return {
        "apiVersion": SEC,
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }


def deny_all() -> dict[str, Any]:
    return {
        "apiVersion": SEC,
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "deny-all", "namespace": "default"},
        "spec": {},
    }


def intentions() -> dict[str, Any]:
    return {
        "apiVersion": "consul.hashicorp.com/v1alpha1",
        "kind": "ServiceIntentions",
        "metadata": {"name": "sessions", "namespace": "default"},
        "spec": {"destination": {"name": "sessions"}, "sources": [{"name": "*", "action": "deny"}]},
    }


def inbound_listener(ctl: Ctl, name: str) -> listener_pb2.Listener:
    """The listener a server asks for by name, over a raw ADS stream."""
    with grpc.insecure_channel(ctl.cp.xds_address) as channel:
        stream = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            iter([discovery_pb2.DiscoveryRequest(type_url=LDS, node={"id": "server"},
                                                 resource_names=[name])]),
            timeout=10,
        )  # fmt: skip
        response = next(stream)
        stream.cancel()
    (packed,) = response.resources
    found = listener_pb2.Listener()
    assert packed.Unpack(found)
    return found


def test_security_resources_through_the_api(ctl: Ctl) -> None:
    code, out, err = ctl.apply(strict(), deny_all(), intentions())
    assert code == 0, err
    assert out.splitlines() == [
        "PeerAuthentication default/default created (resourceVersion 1)",
        "AuthorizationPolicy default/deny-all created (resourceVersion 1)",
        "ServiceIntentions default/sessions created (resourceVersion 1)",
    ]
    assert ctl.get_json("pa", "default")["spec"] == {"mtls": {"mode": "STRICT"}}
    assert [i["metadata"]["name"] for i in ctl.get_json("ap")["items"]] == ["deny-all"]
    name = "xds.istio.io/grpc/lds/inbound/127.0.0.1:50051"  # the endpoint serves the port
    chain = inbound_listener(ctl, name).filter_chains[0]
    assert chain.HasField("transport_socket")  # STRICT
    assert ctl("delete", "PeerAuthentication", "default")[0] == 0
    # The delete is in force once the debounced rebuild ran: poll, bounded.
    deadline = time.monotonic() + 5.0
    while inbound_listener(ctl, name).filter_chains[0].HasField("transport_socket"):
        assert time.monotonic() < deadline, "the inbound listener kept its TLS after the delete"
        time.sleep(0.05)


def test_a_bad_policy_is_refused_whole_and_stores_nothing(ctl: Ctl) -> None:
    bad = {**deny_all(), "spec": {"action": "CUSTOM"}}
    code, _, err = ctl.apply(strict(), bad)
    assert code == 1
    assert "spec.action: action CUSTOM is not supported" in err
    assert ctl.get_json("peerauthentications")["items"] == []


def test_port_level_mtls_with_a_bare_port_number_applies(ctl: Ctl) -> None:
    """config.md: ``portLevelMtls`` keys are bare or quoted numbers, through meshctl too
    (YAML reads ``8080:`` as an int key, which JSON carries as "8080")."""
    per_port = {
        **strict(),
        "metadata": {"name": "sessions", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "sessions"}},
            "portLevelMtls": {50051: {"mode": "DISABLE"}},
        },
    }
    code, _, err = ctl.apply(strict(), per_port)
    assert code == 0, err
    assert ctl.get_json("pa", "sessions")["spec"]["portLevelMtls"] == {"50051": {"mode": "DISABLE"}}
    code, _, err = ctl.apply({**per_port, "spec": {"portLevelMtls": {True: {}}}}, name="b.yaml")
    assert code == 1
    assert "spec.portLevelMtls: key True must be a string" in err
