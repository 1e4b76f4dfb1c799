"""The control plane's metrics object: convergence bookkeeping, refusals and the
exposition; a failed write counted by the real ADS servicer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from prometheus_client.parser import text_string_to_metric_families

from controlplane.cp_metrics import ControlPlaneMetrics
from controlplane.translate.typeurls import CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.observer import client_kind
from controlplane.xds.server import AdsServicer
from controlplane.xds.subscription import Rejection, Sent
from controlplane.xds.updater import SnapshotUpdater
from tests.controlplane.ads_harness import mesh, service_entry

CDS, EDS = CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sent(nonce: str) -> Sent:
    return Sent(version="v", nonce=nonce, names=("a",), at=0.0)


def test_convergence_is_change_to_last_ack_of_what_it_pushed() -> None:
    clock = Clock()
    metrics = ControlPlaneMetrics(clock=clock)
    stream = object()
    metrics.stream_opened(stream, "meshlib")
    metrics.change_accepted()
    clock.now += 0.2
    metrics.change_accepted()  # same burst: the first change counts
    metrics.rebuilt(True)
    metrics.sent(stream, CDS, sent("1"), push=True)
    metrics.sent(stream, EDS, sent("2"), push=True)
    clock.now += 0.5
    metrics.acked(stream, CDS, sent("1"))
    assert metrics.convergence.count == 0  # EDS still owed
    metrics.acked(stream, EDS, sent("9"))  # an ACK of something else
    assert metrics.convergence.count == 0
    clock.now += 1.0
    metrics.acked(stream, EDS, sent("2"))
    assert metrics.convergence.count == 1
    assert metrics.convergence.total == pytest.approx(1.7)
    assert metrics.convergence.counts == [0, 0, 0, 1, 0, 0, 0]  # in (1, 3]


def test_answers_to_requests_and_nacked_pushes_never_converge() -> None:
    clock = Clock()
    metrics = ControlPlaneMetrics(clock=clock)
    stream = object()
    metrics.stream_opened(stream, "grpc")
    metrics.sent(stream, CDS, sent("1"), push=False)  # initial answer: no change behind it
    metrics.acked(stream, CDS, sent("1"))
    metrics.change_accepted()
    metrics.rebuilt(True)
    metrics.sent(stream, CDS, sent("2"), push=True)
    metrics.nacked(stream, CDS, Rejection("v", "2", "bad", 0.0))
    metrics.acked(stream, CDS, sent("2"))
    assert metrics.convergence.count == 0
    assert metrics.rejects["cds"] == 1
    assert metrics.pushes["cds"] == 2
    metrics.stream_closed(stream)
    assert metrics.connected["grpc"] == 0


def test_refused_rebuild_counts_and_keeps_the_change_pending() -> None:
    clock = Clock()
    metrics = ControlPlaneMetrics(clock=clock)
    stream = object()
    metrics.change_accepted()
    metrics.rebuilt(False)
    assert metrics.push_context_errors == 1
    clock.now += 2.0
    metrics.rebuilt(True)  # the next good rebuild carries the change from its acceptance
    metrics.sent(stream, CDS, sent("1"), push=True)
    metrics.acked(stream, CDS, sent("1"))
    assert metrics.convergence.total == pytest.approx(2.0)


def test_exposition_parses_and_keeps_istiod_names() -> None:
    metrics = ControlPlaneMetrics(replica='host:1 "x"\\y', version="1.0")
    metrics.config_reload("refused")
    metrics.send_failed(object(), CDS)
    text = metrics.render()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["pilot_xds_pushes"].type == "counter"
    assert families["pilot_proxy_convergence_time"].type == "histogram"
    assert 'pilot_xds_pushes{type="cds_senderr"} 1\n' in text
    assert "# TYPE pilot_xds_pushes counter\n" in text
    assert 'mesh_controlplane_config_reloads_total{result="refused",source="file"} 1' in text
    (info,) = families["mesh_controlplane_info"].samples
    assert info.labels["replica"] == 'host:1 "x"\\y'


class FailingContext:
    """A servicer context whose writes fail (a real call cannot be made to fail a
    write on demand)."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    async def write(self, message: Any) -> None:
        raise ConnectionResetError("the client went away")

    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"abort {code} {details}")


async def test_a_failed_write_is_a_senderr_push() -> None:
    cache = SnapshotCache()
    updater = SnapshotUpdater(cache)
    updater.set_inputs(config=mesh(service_entry("a")))
    updater.rebuild()
    metrics = ControlPlaneMetrics()
    servicer = AdsServicer(cache, updater, observer=metrics)

    async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        yield discovery_pb2.DiscoveryRequest(type_url=CDS, node={"id": "n1"})

    await servicer.StreamAggregatedResources(requests(), FailingContext())  # type: ignore[arg-type]
    assert metrics.pushes["cds"] == 1
    assert metrics.pushes["cds_senderr"] == 1
    assert metrics.connected["unknown"] == 0  # the stream ended and was forgotten
    assert servicer.streams() == []


@pytest.mark.parametrize(
    ("user_agent_name", "kind"),
    [
        ("meshlib", "meshlib"),
        ("gRPC C-core linux Python", "grpc"),  # what grpcio 1.x sends
        ("gRPC Go", "grpc"),
        ("grpc-java-netty", "grpc"),
        ("envoy", "envoy"),
        ("", "unknown"),
        ("my-proxy", "unknown"),
    ],
)
def test_client_kind_from_user_agent(user_agent_name: str, kind: str) -> None:
    assert client_kind(user_agent_name) == kind
