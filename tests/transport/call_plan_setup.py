"""Setup for the gRPC call-plan tests: publish a service on a FakeXds feed, call it
sync or aio, and the helpers the tests share (tests only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
import pytest

import meshlib
from meshlib.resilience.breaker import BreakerRegistry, breakers
from meshlib.resilience.call_plan import CallPlan
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import WHO
from tests.routing.builders import endpoints
from tests.routing.fake_xds import FakeXds
from tests.transport.polling import eventually_async

PORT = 50051
SYNC, AIO = "sync", "aio"
KINDS = pytest.mark.parametrize("kind", [SYNC, AIO])
ROUTER = xds.HttpFilter("envoy.filters.http.router", xds.RouterConfig())
FAULT = "envoy.filters.http.fault"
RATE_LIMIT = "envoy.filters.http.local_ratelimit"
MILLION = 1_000_000
UNAVAILABLE_ONLY = frozenset({xds.RetryOn.UNAVAILABLE})
DEFAULT_THRESHOLDS = xds.CircuitBreakerThresholds()
# Each try may take 0.2 s; a try cut by it (or a DEADLINE_EXCEEDED) is retried twice.
PER_TRY = xds.RetryPolicy(
    retry_on=frozenset({xds.RetryOn.FIVE_XX, xds.RetryOn.DEADLINE_EXCEEDED}),
    num_retries=2,
    per_try_timeout_s=0.2,
    back_off=xds.RetryBackOff(0.01, 0.02),
)


def cluster_of(host: str) -> str:
    return f"outbound|{PORT}||{host}"


def publish(
    feed: FakeXds,
    host: str,
    ports: Sequence[int],
    *,
    action: dict[str, Any] | None = None,
    before: Sequence[xds.Route] = (),
    fault: xds.HTTPFault | xds.LocalRateLimit | None = None,
    thresholds: xds.CircuitBreakerThresholds = DEFAULT_THRESHOLDS,
    more_clusters: dict[str, Sequence[int]] | None = None,
    route_headers: xds.HeaderMutations = xds.NO_HEADER_MUTATIONS,
) -> str:
    """LDS ``host:PORT`` (with a fault / rate-limit filter when given) -> one catch-all route to the
    service's cluster (``action``: extra RouteAction fields; ``before``: routes tried first)."""
    target = f"{host}:{PORT}"
    cluster = cluster_of(host)
    route = xds.Route(
        "main",
        xds.RouteMatch(xds.PathMatchKind.PREFIX, "/"),
        xds.RouteAction(cluster=cluster, **(action or {})),
        headers=route_headers,
    )
    config = xds.RouteConfigResource(
        f"{target}-routes", (xds.VirtualHost("vh", (target, host), (*before, route)),)
    )
    feed.set("rds", config.name, config)
    all_clusters = {cluster: ports, **(more_clusters or {})}
    for name, cluster_ports in all_clusters.items():
        resource = xds.ClusterResource(
            name=name, type=xds.ClusterType.EDS, eds_service_name=name, circuit_breakers=thresholds
        )
        feed.set("cds", name, resource)
        feed.set("eds", name, endpoints(name, [("127.0.0.1", p) for p in cluster_ports]))
    filters: tuple[xds.HttpFilter, ...] = (ROUTER,)
    if fault is not None:
        name = FAULT if isinstance(fault, xds.HTTPFault) else RATE_LIMIT
        filters = (xds.HttpFilter(name, fault), ROUTER)
    feed.set(
        "lds",
        target,
        xds.ListenerResource(
            name=target,
            route_config_name=config.name,
            route_config=None,
            http_filters=tuple(f.name for f in filters),
            filters=filters,
        ),
    )
    return target


class Caller:
    """One channel flavour calling ``/test.Echo/Who``: sync (on a worker thread) or aio."""

    def __init__(self, kind: str, mesh: meshlib.Mesh, target: str) -> None:
        self.kind = kind
        self.channel: Any = (
            mesh.grpc_channel(target) if kind == SYNC else mesh.aio_grpc_channel(target)
        )
        self.stub: Any = self.channel.unary_unary(WHO)
        self.closed = False

    async def ready(self) -> None:
        await eventually_async(lambda: type(self.snapshot_or_none()) is ServiceSnapshot)

    def snapshot_or_none(self) -> object:
        return self.channel._core.routing.state.view

    @property
    def snapshot(self) -> ServiceSnapshot:
        view = self.snapshot_or_none()
        assert isinstance(view, ServiceSnapshot)
        return view

    @property
    def plan(self) -> CallPlan[Any, Any]:
        """The call plan of the method's reusable route (the one the calls used)."""
        entry = self.stub._compiled.entry
        assert entry is not None, "no call has compiled a reusable plan yet"
        assert entry[0] is self.snapshot_or_none()
        return entry[2]

    def compiled(self) -> list[CallPlan[Any, Any]]:
        """Every call plan the method holds for its current snapshot, one per (route,
        cluster)."""
        table = self.stub._compiled.by_route
        if table is None or table[0] is not self.snapshot_or_none():
            return []
        return [plan for _route, plan in table[1].values()]

    async def call(
        self,
        *,
        timeout: float | None = 5.0,
        metadata: Sequence[tuple[str, str]] = (),
        scope_s: float | None = None,
    ) -> str:
        """The backend's name; ``scope_s``: run the call inside ``deadline_scope(scope_s)``."""
        if self.kind == SYNC:

            def blocking() -> Any:
                if scope_s is None:
                    return self.stub(b"", timeout=timeout, metadata=tuple(metadata))
                with meshlib.deadline_scope(scope_s):
                    return self.stub(b"", timeout=timeout, metadata=tuple(metadata))

            answer = await asyncio.to_thread(blocking)
        elif scope_s is None:
            answer = await self.stub(b"", timeout=timeout, metadata=tuple(metadata))
        else:
            with meshlib.deadline_scope(scope_s):
                answer = await self.stub(b"", timeout=timeout, metadata=tuple(metadata))
        return bytes(answer).decode()

    async def outcome(self, **kwargs: Any) -> str:
        """The backend's name, or ``"error: CODE"`` (any other exception propagates)."""
        try:
            return await self.call(**kwargs)
        except grpc.RpcError as error:
            return f"error: {error.code().name}"

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.kind == SYNC:
            self.channel.close()
        else:
            await self.channel.close()


async def open_caller(kind: str, mesh: meshlib.Mesh, target: str) -> Caller:
    caller = Caller(kind, mesh, target)
    await caller.ready()
    return caller


def isolated_breakers(monkeypatch: pytest.MonkeyPatch) -> BreakerRegistry:
    """The process-wide breaker registry; what the test registers is forgotten after."""
    monkeypatch.setattr(breakers, "_breakers", dict(breakers._breakers))
    return breakers


def assert_planned(caller: Caller) -> None:
    """The method's calls ran through the call plan of its reusable route."""
    assert isinstance(caller.plan, CallPlan)


async def in_time(check: Callable[[], bool], timeout: float = 3.0) -> None:
    await eventually_async(check, timeout)


async def timed(work: Awaitable[str]) -> tuple[str, float]:
    started = time.monotonic()
    result = await work
    return result, time.monotonic() - started


def resilience(caller: Caller, host: str) -> ClusterResilience:
    return caller.snapshot.resilience_of(cluster_of(host))


async def raised_by(work: Awaitable[Any]) -> BaseException:
    try:
        await work
    except Exception as error:
        return error
    raise AssertionError("the call succeeded")


def assert_unavailable(error: BaseException, where: str) -> None:
    assert isinstance(error, grpc.RpcError), (
        f"{where}: expected grpc.RpcError UNAVAILABLE, got {type(error).__name__}: {error}"
    )
    assert error.code() is grpc.StatusCode.UNAVAILABLE


class MetricsSpy:
    """Stands in for the client metrics of one channel: active, remembers every record."""

    active = True

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record_rpc(self, elapsed: float, **attributes: Any) -> None:
        assert elapsed >= 0
        self.records.append(attributes)
