"""InboundPolicy's states, fed by hand: before the listener arrives calls are refused
(503 / UNAVAILABLE, as grpcio does not serve), a listener that does not exist means no
policy, a NACKed first version keeps refusing (naming why) and a NACK after a good
version keeps the good one; AUDIT (LOG) matches and denials are logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from controlplane.config import load_config
from controlplane.model import NodeInfo
from controlplane.translate import translate
from meshlib.errors import XdsResourceNotFound, XdsValidationError
from meshlib.security.peer import PeerTls
from meshlib.serving import PASS, Deny, IncomingCall
from meshlib.serving.inbound_policy import DENIALS, InboundPolicy, listener_name
from meshlib.xds_client.resource_types import LISTENER
from tests.interop.security_mesh import mesh_yaml
from tests.xds_client import xds_builders as b

TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s"
POLICIES = """\
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: conference}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/test.Echo/Secret"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: conference}
spec:
  action: AUDIT
  rules: [{to: [{operation: {paths: ["/test.Echo/Who"]}}]}]
"""


class _Source:
    """The xDS client surface InboundPolicy uses: named watches, by hand."""

    def __init__(self) -> None:
        self.watchers: dict[str, Any] = {}

    def watch(self, resource_type: Any, name: str, watcher: Any) -> Any:
        assert resource_type is LISTENER
        self.watchers[name] = watcher
        return lambda: self.watchers.pop(name, None)


def _listener(tmp_path: Path, port: int) -> Any:
    path = tmp_path / "mesh.yaml"
    path.write_text(mesh_yaml(port, "PERMISSIVE", POLICIES))
    node = NodeInfo(id="n", cluster="c", locality="r/z/s")
    message = translate(load_config(path), [], node)[b.LDS][
        listener_name(TEMPLATE, "127.0.0.1", port)
    ]
    return LISTENER.decode(b.pack(message))


def _call(path: str) -> IncomingCall:
    return IncomingCall(
        protocol="grpc",
        method=path,
        path=path,
        peer="127.0.0.1:5000",
        headers=(),
        deadline=lambda: None,
    )


def test_listener_names() -> None:
    assert listener_name(TEMPLATE, "10.0.0.1", 80) == "xds.istio.io/grpc/lds/inbound/10.0.0.1:80"
    assert listener_name(TEMPLATE, "[::1]", 80) == "xds.istio.io/grpc/lds/inbound/[::1]:80"
    assert listener_name(TEMPLATE, "::1", 80) == "xds.istio.io/grpc/lds/inbound/[::1]:80"


def test_states_of_the_inbound_listener(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = _Source()
    reader = InMemoryMetricReader()
    policy = InboundPolicy(
        lambda: source,
        TEMPLATE,
        resolve=lambda port: "127.0.0.1",
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    name = policy.serve("0.0.0.0", 50051)  # a wildcard bind: the workload's address
    assert name == "xds.istio.io/grpc/lds/inbound/127.0.0.1:50051"
    watcher = source.watchers[name]
    pending = policy.check(_call("/test.Echo/Who"))
    assert isinstance(pending, Deny) and (pending.http_status, pending.grpc_status) == (503, 14)
    assert "has not arrived yet" in pending.message
    watcher.on_resource_error(XdsValidationError('Listener "x": broken'))
    refused = policy.check(_call("/test.Echo/Who"))
    assert isinstance(refused, Deny) and "broken" in refused.message
    watcher.on_changed(_listener(tmp_path, 50051))
    caplog.set_level(logging.INFO, logger="meshlib.serving")
    caplog.clear()
    assert policy.check(_call("/test.Echo/Who")) is PASS  # AUDIT: logged, allowed
    denied = policy.check(_call("/test.Echo/Secret"))
    assert isinstance(denied, Deny)
    assert (denied.http_status, denied.grpc_status, denied.message) == (
        403,
        7,
        "RBAC: access denied",
    )
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split()[0] for m in messages] == ["inbound_audit", "inbound_denied"]
    assert "policy='ns[conference]-policy[audit]-rule[0]'" in messages[0]
    assert "detail='ns[conference]-policy[deny]-rule[0]'" in messages[1]
    watcher.on_resource_error(XdsValidationError('Listener "x": a bad update'))  # fail static
    assert isinstance(policy.check(_call("/test.Echo/Secret")), Deny)
    watcher.on_resource_error(XdsResourceNotFound("gone"))  # it existed: the last one stays
    assert isinstance(policy.check(_call("/test.Echo/Secret")), Deny)
    other = policy.serve("127.0.0.1", 50052)
    source.watchers[other].on_resource_error(XdsResourceNotFound("never"))  # no policy
    assert policy.check(_call("/test.Echo/Who")) is PASS
    policy.close()
    assert not source.watchers
    assert _denials(reader) == {("unavailable", name): 2, ("rbac", name): 3}


def _denials(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    data = reader.get_metrics_data()
    assert data is not None
    counts: dict[tuple[str, str], int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == DENIALS:
                    for point in metric.data.data_points:  # type: ignore[union-attr]
                        key = (str(point.attributes["kind"]), str(point.attributes["listener"]))
                        counts[key] = int(point.value)  # type: ignore[union-attr]
    return counts


def test_a_strict_listener_refuses_calls_without_a_client_certificate(tmp_path: Path) -> None:
    """A port added without TLS does not serve plaintext past PeerAuthentication STRICT."""
    path = tmp_path / "mesh.yaml"
    path.write_text(mesh_yaml(50053, "STRICT", ""))
    node = NodeInfo(id="n", cluster="c", locality="r/z/s")
    name = listener_name(TEMPLATE, "127.0.0.1", 50053)
    message = translate(load_config(path), [], node)[b.LDS][name]
    source = _Source()
    policy = InboundPolicy(lambda: source, TEMPLATE)
    source.watchers[policy.serve("127.0.0.1", 50053)].on_changed(LISTENER.decode(b.pack(message)))
    plaintext = policy.check(_call("/test.Echo/Who"))
    assert isinstance(plaintext, Deny) and "requires mTLS" in plaintext.message
    spiffe = "spiffe://cluster.local/ns/conference/sa/app"
    with_certificate = IncomingCall(
        protocol="grpc",
        method="/test.Echo/Who",
        path="/test.Echo/Who",
        peer="127.0.0.1:5000",
        headers=(),
        deadline=lambda: None,
        peer_tls=lambda: PeerTls(uri_sans=(spiffe,)),
    )
    assert policy.check(with_certificate) is PASS
