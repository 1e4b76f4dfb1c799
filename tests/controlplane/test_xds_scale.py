"""What keeps the control plane's cost per client and per change small (issue 12, scale):
only the watchers of a changed resource are pushed, responses are encoded once and
shared, a checked change is not translated again, and an unchanged file is not
parsed again. Against a real grpc.aio server where a stream is involved."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.config.errors import ConfigError, ConfigIssue
from controlplane.config.loader import load_config
from controlplane.config.yaml_files import read_documents
from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import Resources, TranslationError, reuse, translate
from controlplane.translate.caller_node import NODE_LABELS_KEY
from controlplane.translate.endpoints import build_load_assignment
from controlplane.translate.routes import plan_routing
from controlplane.translate.security_inbound import server_workloads
from controlplane.translate.services import collect_services
from controlplane.translate.source_match import Caller
from controlplane.translate.typeurls import (
    CLUSTER_TYPE_URL,
    ENDPOINTS_TYPE_URL,
    ROUTE_CONFIG_TYPE_URL,
)
from controlplane.xds import XdsService, dependents
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.snapshot import Snapshot
from controlplane.xds.subscription import Subscription
from controlplane.xds.updater import SnapshotUpdater
from tests.controlplane.ads_harness import RawAdsClient, mesh, resource_names, service_entry
from tests.support.meshconfig import service_entry as service_entry_yaml
from tests.support.meshconfig import write_config
from tests.support.xds_service import xds_channel

CDS, EDS, RDS = CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL, ROUTE_CONFIG_TYPE_URL
A_CLUSTER = "outbound|80||a"
B_CLUSTER = "outbound|80||b"


class CountingTranslate:
    """The real translate, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(
        self, config: MeshConfig, workloads: Sequence[RegisteredWorkload], node: NodeInfo
    ) -> Resources:
        self.calls += 1
        return translate(config, workloads, node)


@pytest.fixture
def counting() -> CountingTranslate:
    return CountingTranslate()


@pytest.fixture
async def served(counting: CountingTranslate) -> AsyncIterator[tuple[XdsService, grpc.aio.Channel]]:
    service = XdsService(debounce_s=0.05, max_debounce_s=0.5, translate_fn=counting)
    async with xds_channel(service) as channel:
        yield service, channel


def _workload(service: str, address: str) -> RegisteredWorkload:
    return RegisteredWorkload(id=address, service=service, address=address, ports={80: 8080})


async def test_a_registration_pushes_only_the_watchers_of_its_service(
    served: tuple[XdsService, grpc.aio.Channel],
) -> None:
    service, channel = served
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    watch_a, watch_b = RawAdsClient(channel, "na"), RawAdsClient(channel, "nb")
    try:
        watch_a.send(EDS, [A_CLUSTER])
        watch_b.send(EDS, [B_CLUSTER])
        first_a, first_b = await watch_a.recv(), await watch_b.recv()
        watch_a.ack(first_a, [A_CLUSTER])
        watch_b.ack(first_b, [B_CLUSTER])

        service.update(workloads=[_workload("b", "10.0.0.9")])
        pushed = await watch_b.recv()
        assert resource_names(pushed) == [B_CLUSTER]
        assert "10.0.0.9" in str(pushed.resources[0].value)
        await watch_a.expect_silence(0.5)  # a's assignment did not change: nothing sent

        service.update(workloads=[_workload("b", "10.0.0.9"), _workload("a", "10.0.0.7")])
        assert "10.0.0.7" in str((await watch_a.recv()).resources[0].value)
    finally:
        await watch_a.close()
        await watch_b.close()


async def test_streams_asking_alike_get_the_same_bytes_but_their_own_nonce(
    served: tuple[XdsService, grpc.aio.Channel],
) -> None:
    service, channel = served
    service.update(config=mesh(service_entry("a"), service_entry("b")))
    clients = [RawAdsClient(channel, f"n{i}") for i in range(3)]
    try:
        for client in clients:
            client.send(CDS)
        responses = [await client.recv() for client in clients]
        versions = service.snapshot_versions()
        for client, response in zip(clients, responses, strict=True):
            assert resource_names(response) == [A_CLUSTER, B_CLUSTER]
            assert response.version_info == versions[client.node_id][CDS]
            assert response.nonce == "1"
        # The same resources, byte for byte, whichever stream sent them.
        assert len({tuple(r.SerializeToString() for r in x.resources) for x in responses}) == 1
    finally:
        for client in clients:
            await client.close()


def test_an_encoded_response_is_the_response_with_its_nonce() -> None:
    snapshot = Snapshot.from_resources(
        translate(mesh(service_entry("a"), service_entry("b")), (), NodeInfo(id="n"))
    )
    clusters = snapshot.get(CDS)
    names = (B_CLUSTER,)
    for nonce in ("7", "x" * 300):  # a nonce longer than 127 bytes takes a 2-byte length
        decoded = discovery_pb2.DiscoveryResponse.FromString(
            clusters.sotw_response(CDS, names, nonce)
        )
        assert decoded == discovery_pb2.DiscoveryResponse(
            version_info=clusters.version,
            type_url=CDS,
            nonce=nonce,
            resources=[clusters.resources[B_CLUSTER]],
        )


async def test_a_checked_change_is_not_translated_again(
    served: tuple[XdsService, grpc.aio.Channel], counting: CountingTranslate
) -> None:
    service, channel = served
    client = RawAdsClient(channel, "n1")
    try:
        client.send(CDS)
        await client.recv()
        config = mesh(service_entry("a"))
        service.check(config=config)
        checked = counting.calls
        service.update(config=config)
        response = await client.recv()
        assert resource_names(response) == [A_CLUSTER]
        assert counting.calls == checked  # the rebuild reused the check's translations
    finally:
        await client.close()


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    file = tmp_path / "mesh.yaml"
    file.write_text("kind: A\n---\nkind: B\n")
    issues: list[ConfigIssue] = []
    first = read_documents(file, issues)
    again = read_documents(file, issues)
    assert [d.data for d in first] == [{"kind": "A"}, {"kind": "B"}]
    assert all(a is b for a, b in zip(first, again, strict=True))  # the kept parse
    file.write_text("kind: A\n---\nkind: C\n")
    changed = read_documents(file, issues)
    assert [d.data for d in changed] == [{"kind": "A"}, {"kind": "C"}]
    assert issues == []


def test_a_file_with_an_error_reports_it_on_every_read(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("a: [1\n")
    for _ in range(2):
        issues: list[ConfigIssue] = []
        assert read_documents(file, issues) == []
        assert len(issues) == 1 and "invalid YAML at line" in issues[0].message


def test_nodes_differing_in_id_and_cluster_share_one_translation(
    counting: CountingTranslate,
) -> None:
    cache = SnapshotCache()
    updater = SnapshotUpdater(cache, counting)
    config = mesh(service_entry("a"), service_entry("b"))
    updater.set_inputs(config=config)
    updater.check(config=config)  # translates the trial nodes, one a plain proxyless client
    checked = counting.calls
    updater.set_inputs(config=config)
    updater.rebuild()
    for index in range(3):
        updater.connect(NodeInfo(id=f"pod-{index}", cluster=f"workload-{index}"))
    # Like the check's proxyless trial node in all translate reads: no translation at all.
    assert counting.calls == checked
    snapshots = [cache.get(f"pod-{index}") for index in range(3)]
    assert snapshots[0] is not None and all(s is snapshots[0] for s in snapshots)
    updater.connect(NodeInfo(id="zoned", cluster="workload-0", locality="eu/a"))
    assert counting.calls == checked + 1  # locality is read (failover): its own translation


def test_an_edit_validates_again_only_the_documents_of_its_file(tmp_path: Path) -> None:
    write_config(tmp_path / "a.yaml", service_entry_yaml("a", 80, [8080]))
    write_config(tmp_path / "b.yaml", service_entry_yaml("b", 80, [8080]))
    first = load_config(tmp_path)
    write_config(tmp_path / "b.yaml", service_entry_yaml("b", 80, [8081]))
    second = load_config(tmp_path)
    (a1, b1), (a2, b2) = first.service_entries, second.service_entries
    assert a2 is a1  # a.yaml's bytes did not change: its validated resource is kept
    assert b2 is not b1 and b2 != b1
    # A document with an issue is validated on every load, so its issue is always told.
    (tmp_path / "b.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: b}\nspec: {hosts: [b], ports: [{number: nope}]}\n"
    )
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"b\.yaml"):
            load_config(tmp_path)


async def test_a_push_works_out_only_the_types_that_changed(
    served: tuple[XdsService, grpc.aio.Channel], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, channel = served
    service.update(config=mesh(service_entry("a")))
    client = RawAdsClient(channel, "n1")
    try:
        client.send(CDS)
        client.ack(await client.recv())
        client.send(EDS, [A_CLUSTER])
        client.ack(await client.recv(), [A_CLUSTER])
        worked_out: list[str] = []
        wanted = Subscription.wanted

        def spy(sub: Subscription, available: Collection[str]) -> tuple[str, ...] | None:
            worked_out.append(sub.type_url)
            return wanted(sub, available)

        monkeypatch.setattr(Subscription, "wanted", spy)
        service.update(workloads=[_workload("a", "10.0.0.7")])  # EDS changes, CDS does not
        pushed = await client.recv()
        assert pushed.type_url == EDS and "10.0.0.7" in str(pushed.resources[0].value)
        assert CDS not in worked_out  # CDS's subscription was not looked at (EDS's ACK was)
        await client.expect_silence(0.2)
    finally:
        await client.close()


async def test_what_a_cluster_refers_to_is_read_once_per_snapshot(
    served: tuple[XdsService, grpc.aio.Channel], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, channel = served
    service.update(config=mesh(service_entry("a")))
    read: list[str] = []
    dependent, refers_to = dependents._REFERENCES[CDS]

    def counting(cluster: Any) -> Iterable[str]:
        read.append(cluster.name)
        return refers_to(cluster)

    monkeypatch.setitem(dependents._REFERENCES, CDS, (dependent, counting))
    clients = [RawAdsClient(channel, f"n{i}") for i in range(3)]
    try:
        for client in clients:
            client.send(CDS)
            assert resource_names(await client.recv()) == [A_CLUSTER]
        assert read == [A_CLUSTER]  # three streams sent it, its EDS name was read once
    finally:
        for client in clients:
            await client.close()


def test_a_server_workload_is_every_service_its_address_and_port_serves() -> None:
    services = collect_services(
        mesh(service_entry("a", addresses=("10.0.0.1", "10.0.0.2")), service_entry("b")), ()
    )
    workloads = server_workloads(services)
    assert [(w.address, w.port, w.hosts) for w in workloads] == [
        ("10.0.0.1", 80, ("a", "b")),  # a's and b's endpoint: one workload serving both
        ("10.0.0.2", 80, ("a",)),
    ]


def test_a_registered_hostname_for_a_static_service_is_refused_every_time() -> None:
    """The IP check is remembered per address (every translation asks it for every
    endpoint): a bad address is still refused on each translation, a good one passes."""
    config = mesh(service_entry("a"))
    bad = RegisteredWorkload(id="w", service="a", address="db.example", ports={80: 8080})
    for _ in range(2):
        with pytest.raises(TranslationError, match="must be an IP address"):
            translate(config, (bad,), NodeInfo(id="n"))
    good = RegisteredWorkload(id="w", service="a", address="10.0.0.9", ports={80: 8080})
    assert translate(config, (good, good), NodeInfo(id="n"))[EDS]


def test_endpoint_labels_built_once_are_each_endpoints_own_copy() -> None:
    labels = {"version": "v1"}
    workloads = [
        RegisteredWorkload(id=a, service="a", address=a, ports={80: 8080}, labels=labels)
        for a in ("10.0.0.8", "10.0.0.9")
    ]
    config = mesh(service_entry("a", addresses=()))
    assignment = translate(config, workloads, NodeInfo(id="n"))[EDS][A_CLUSTER]
    first, second = assignment.endpoints[0].lb_endpoints  # type: ignore[attr-defined]
    assert first.metadata.filter_metadata["envoy.lb"]["version"] == "v1"
    first.metadata.filter_metadata["envoy.lb"]["version"] = "changed"  # a copy: others keep v1
    again = translate(config, workloads, NodeInfo(id="n"))[EDS][A_CLUSTER]
    for endpoint in (second, *again.endpoints[0].lb_endpoints):  # type: ignore[attr-defined]
        assert endpoint.metadata.filter_metadata["envoy.lb"]["version"] == "v1"


def test_translations_of_the_same_inputs_share_services_and_assignments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []

    def counting(plan: Any, node: NodeInfo, policy: Any) -> Any:
        built.append(plan.name)
        return build_load_assignment(plan, node, policy)

    monkeypatch.setattr(reuse, "build_load_assignment", counting)
    config, workloads = mesh(service_entry("a"), service_entry("b")), ()
    sidecar = NodeInfo(id="s", metadata={"mesh.proxy": "sidecar", "mesh.outbound_port": 15001})
    proxyless = translate(config, workloads, NodeInfo(id="p"))
    assert translate(config, workloads, sidecar)[EDS] == proxyless[EDS]
    assert sorted(built) == [A_CLUSTER, B_CLUSTER]  # once each, for both callers
    zoned = translate(config, workloads, NodeInfo(id="z", locality="eu/a"))
    assert sorted(built) == [A_CLUSTER, A_CLUSTER, B_CLUSTER, B_CLUSTER]  # another caller
    assert zoned[EDS].keys() == proxyless[EDS].keys()


def test_a_check_collects_the_services_of_its_inputs_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    collected: list[int] = []

    def counting(config: MeshConfig, workloads: Sequence[RegisteredWorkload]) -> Any:
        collected.append(1)
        return collect_services(config, workloads)

    updater = SnapshotUpdater(SnapshotCache())
    served = mesh(service_entry("a"))
    updater.check(config=served)
    updater.set_inputs(config=served)
    monkeypatch.setattr(reuse, "collect_services", counting)
    updater.check(config=mesh(service_entry("a"), service_entry("b")))
    # Both trial shapes and the ambiguity check read one collection of the services.
    assert collected == [1]


def test_translations_for_alike_callers_plan_the_routing_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned: list[Caller] = []

    def counting(services: Any, config: MeshConfig, caller: Caller) -> Any:
        planned.append(caller)
        return plan_routing(services, config, caller)

    monkeypatch.setattr(reuse, "plan_routing", counting)
    config, workloads = mesh(service_entry("a")), ()
    sidecar = NodeInfo(id="s", metadata={"mesh.proxy": "sidecar", "mesh.outbound_port": 15001})
    translate(config, workloads, NodeInfo(id="p"))
    translate(config, workloads, sidecar)
    assert len(planned) == 1  # neither has labels or a namespace: one routing for both
    labelled = NodeInfo(id="l", metadata={NODE_LABELS_KEY: {"app": "x"}})
    assert translate(config, workloads, labelled)[RDS]
    assert len(planned) == 2 and dict(planned[1].labels) == {"app": "x"}
