"""Registrations that only move endpoints are translated in part, to the same result.

:class:`EndpointTranslate` brings its last translation up to date when only
endpoints changed; every step of a churn here (adds, removals, labels picking
subsets, identities turning upstream mTLS on, localities, weights, a workload
serving two services, expiry of all) must equal a whole translation, for a
proxyless client, one with a locality and caller labels, and Envoy sidecars with
and without inbound; a new service or port is translated whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.endpoint_translate import EndpointTranslate
from controlplane.model import Locality, MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import PolicySettings, translate
from tests.controlplane.config_cases import documents, load_text

MESH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sessions, namespace: conference}
spec:
  hosts: [sessions]
  ports: [{number: 50051, name: grpc, protocol: GRPC}, {number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: sessions}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sessions-v1, namespace: conference}
spec:
  address: 127.0.0.1
  ports: {grpc: 18091}
  labels: {app: sessions, version: v1}
  serviceAccount: sessions
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: talks, namespace: conference}
spec:
  hosts: [talks]
  ports: [{number: 50052, name: grpc, protocol: GRPC}]
  resolution: STATIC
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: search, namespace: conference}
spec:
  hosts: [search.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sessions, namespace: conference}
spec:
  host: sessions
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
      localityLbSetting: {enabled: true}
    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sessions, namespace: conference}
spec:
  hosts: [sessions]
  http:
  - match: [{sourceLabels: {app: web}}]
    route: [{destination: {host: sessions, subset: v2, port: {number: 50051}}}]
  - route:
    - {destination: {host: sessions, subset: v1, port: {number: 50051}}, weight: 80}
    - {destination: {host: talks}, weight: 20}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: conference}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-web, namespace: conference}
spec:
  selector: {matchLabels: {app: sessions}}
  rules: [{from: [{source: {namespaces: [conference]}}]}]
"""

NODES = [
    NodeInfo(id="proxyless"),
    NodeInfo(
        id="web",
        locality="eu/eu-1",
        metadata={"LABELS": {"app": "web"}, "NAMESPACE": "conference"},
    ),
    NodeInfo(
        id="sidecar-in",
        metadata={
            "mesh.proxy": "sidecar",
            "mesh.outbound_port": 15001,
            "mesh.inbound_port": 15006,
            "mesh.app_port": 7000,
            "mesh.cert_dir": "/run/mesh",
            "NAMESPACE": "conference",
            "LABELS": {"app": "sessions"},
        },
    ),
    NodeInfo(id="sidecar-out", metadata={"mesh.proxy": "sidecar", "mesh.outbound_port": 15001}),
]
ID = "spiffe://example.org/ns/conference/sa/{}"


def workload(
    wid: str, service: str, address: str, ports: dict[int, int], **fields: object
) -> RegisteredWorkload:
    return RegisteredWorkload(
        id=wid,
        service=service,
        address=address,
        ports=ports,
        namespace=str(fields.pop("namespace", "conference")),
        **fields,  # type: ignore[arg-type]
    )


def churn() -> Iterator[tuple[str, tuple[RegisteredWorkload, ...]]]:
    """(what changed, the workloads after it), one step at a time."""
    a = workload("a", "sessions", "10.0.0.1", {50051: 7000}, labels={"version": "v2"})
    b = workload("b", "sessions", "10.0.0.2", {50051: 7000, 8080: 7080})
    c = workload("c", "talks", "10.0.1.1", {50052: 7000}, weight=5)
    yield "first endpoint", (a,)
    yield "another, two ports", (a, b)
    yield "a second service", (a, b, c)
    a = workload(
        "a", "sessions", "10.0.0.1", {50051: 7000}, labels={"version": "v1", "app": "sessions"}
    )
    yield "labels move it to v1 and under the policy", (a, b, c)
    b = workload("b", "sessions", "10.0.0.2", {50051: 7000}, identity=ID.format("b"))
    yield "an identity, one port less", (a, b, c)
    a = workload("a", "sessions", "10.0.0.1", {50051: 7000}, identity=ID.format("a"))
    yield "every registered endpoint with an identity", (a, b, c)
    c = workload("c", "talks", "10.0.1.1", {50052: 7000}, locality=Locality("eu", "eu-1"))
    d = workload("d", "talks", "10.0.0.1", {50052: 7000}, locality=Locality("us", "us-1"))
    yield "localities, one address serving two services", (a, b, c, d)
    yield "a removal", (a, c, d)
    yield "the same again", (a, c, d)
    yield "everything expired", ()


@pytest.mark.parametrize("node", NODES, ids=[n.id for n in NODES])
def test_each_step_of_a_churn_equals_a_whole_translation(tmp_path: Path, node: NodeInfo) -> None:
    config = load_text(tmp_path / "mesh.yaml", documents(MESH))
    policy = PolicySettings(trust_domain="example.org")
    incremental = EndpointTranslate(policy)
    incremental(config, (), node)
    for step, workloads in churn():
        assert incremental(config, workloads, node) == translate(config, workloads, node, policy), (
            step
        )
    assert incremental.partial == 9  # every step after the first translation


def test_a_new_service_or_port_is_translated_in_part_a_new_namespace_whole(
    tmp_path: Path,
) -> None:
    """Beyond endpoints, the config changes' bounds apply (config_changes)."""
    config = load_text(tmp_path / "mesh.yaml", documents(MESH))
    incremental = EndpointTranslate()
    node = NODES[0]
    base = (workload("a", "sessions", "10.0.0.1", {50051: 7000}),)
    incremental(config, base, node)
    for workloads, in_part in (
        ((*base, workload("n", "new", "10.0.9.1", {9000: 9000})), 1),
        ((*base, workload("n", "new", "10.0.9.1", {9000: 9000, 9001: 9001})), 2),
        ((*base, workload("n", "new", "10.0.9.1", {9000: 9000}, namespace="aaa")), 2),
    ):
        assert incremental(config, workloads, node) == translate(config, workloads, node)
        assert incremental.partial == in_part
    other = MeshConfig(service_entries=config.service_entries)  # routes and policies gone
    assert incremental(other, base, node) == translate(other, base, node)
    assert incremental.partial == 3
