"""gRPC (sync + aio) through meshlib against upstreams that fail on cue: gRPC retry
conditions, per-try and route timeouts, thresholds, faults and rate limits, and
the same retry policy side by side with grpcio's own xDS client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest

from meshlib.errors import CircuitBreakerOverflow, InjectedFaultError, RateLimitedError
from tests.resilience_e2e.harness import (
    ASYNC,
    GRPC_PORT,
    SYNC,
    Doc,
    GrpcCaller,
    MeshEnv,
    destination_rule,
    mesh_env,
    service,
    virtual_service,
)
from tests.resilience_e2e.upstreams import WHO, Cue, Upstream, grpc_upstreams
from tests.support.native_grpc import native_grpc_client
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def _retry(on: str, **extra: Any) -> dict[str, Any]:
    return {"retries": {"attempts": 2, "retryOn": on, **extra}}


SCENARIOS: dict[str, dict[str, Any]] = {
    "g-unavailable": _retry("unavailable"),
    "g-exhausted": _retry("resource-exhausted"),
    "g-internal": _retry("internal"),
    "g-cancelled": _retry("cancelled"),
    "g-deadline": _retry("deadline-exceeded"),
    "g-per-try": _retry("5xx", perTryTimeout="200ms"),
    "g-timeout": {"timeout": "300ms", "retries": {"attempts": 0}},
    "g-max-req": {"retries": {"attempts": 0}},
    "g-native": _retry("unavailable"),
}
OPT_IN = {"headers": {"x-testing": {"exact": "true"}}}
ABORT = {"grpcStatus": "RESOURCE_EXHAUSTED", "percentage": {"value": 100}}
NO_RETRY = {"retries": {"attempts": 0}}
ABORT = {"grpcStatus": "RESOURCE_EXHAUSTED", "percentage": {"value": 100}}
NO_RETRY = {"retries": {"attempts": 0}}
LIMIT = {"maxTokens": 2, "tokensPerFill": 1, "fillInterval": "60s"}
NAMES = [*SCENARIOS, "g-fault", "g-limited"]


def _docs(upstreams: dict[str, Upstream]) -> list[Doc]:
    docs: list[Doc] = []
    for host, rule in SCENARIOS.items():
        docs += [service(host, GRPC_PORT, "GRPC", [upstreams[host].port]),
                 virtual_service(host, rule)]  # fmt: skip
    docs += [
        destination_rule("g-max-req", {"http": {"http2MaxRequests": 1}}),
        service("g-fault", GRPC_PORT, "GRPC", [upstreams["g-fault"].port]),
        virtual_service("g-fault", {"match": [OPT_IN], "fault": {"abort": ABORT}}, NO_RETRY),
    ]
    for kind in (SYNC, ASYNC):
        host = f"g-limited-{kind}"
        limited = {"meshlib.dev/local-rate-limit": LIMIT}
        docs += [
            service(host, GRPC_PORT, "GRPC", [upstreams["g-limited"].port]),
            virtual_service(host, {}, annotations=limited),
        ]
    return docs


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, Upstream]]:
    with grpc_upstreams(NAMES) as started:
        yield {u.name: u for u in started}


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, upstreams: dict[str, Upstream]
) -> Iterator[MeshEnv]:
    with mesh_env(tmp_path_factory.mktemp("grpc-resilience"), _docs(upstreams)) as started:
        for host in [*SCENARIOS, "g-fault"]:
            started.mesh.wait_ready(f"{host}:{GRPC_PORT}", timeout=15)
        yield started


@pytest.fixture(autouse=True)
def fresh_cues(upstreams: dict[str, Upstream]) -> None:
    for upstream in upstreams.values():
        upstream.cue.reset()


class Opener:
    """Opens callers of one kind (sync or aio) by host; closes their channels."""

    def __init__(self, kind: str, env: MeshEnv) -> None:
        self.kind = kind
        self.env = env
        self.sync_channels: list[grpc.Channel] = []
        self.aio_channels: list[grpc.aio.Channel] = []

    def __call__(self, host: str) -> GrpcCaller:
        target = f"xds:///{host}:{GRPC_PORT}"
        if self.kind == SYNC:
            channel = self.env.mesh.grpc_channel(target)
            self.sync_channels.append(channel)
            return GrpcCaller(SYNC, channel, None)
        aio = self.env.mesh.aio_grpc_channel(target)
        self.aio_channels.append(aio)
        return GrpcCaller(ASYNC, None, aio)

    async def close(self) -> None:
        for channel in self.sync_channels:
            channel.close()
        for aio in self.aio_channels:
            await aio.close(None)


@pytest.fixture(params=[SYNC, ASYNC])
async def open_caller(request: pytest.FixtureRequest, env: MeshEnv) -> AsyncIterator[Opener]:
    opener = Opener(request.param, env)
    try:
        yield opener
    finally:
        await opener.close()


RETRY_CASES = [
    ("g-unavailable", ["UNAVAILABLE", "UNAVAILABLE"], "g-unavailable", 3),
    ("g-unavailable", ["UNAVAILABLE"] * 3, "error: UNAVAILABLE", 3),
    ("g-unavailable", ["INTERNAL"], "error: INTERNAL", 1),
    ("g-exhausted", ["RESOURCE_EXHAUSTED"], "g-exhausted", 2),
    ("g-internal", ["INTERNAL"], "g-internal", 2),
    ("g-cancelled", ["CANCELLED"], "g-cancelled", 2),
    ("g-deadline", ["DEADLINE_EXCEEDED"], "g-deadline", 2),
    ("g-per-try", ["stall 2"], "g-per-try", 2),
]


@pytest.mark.parametrize(("host", "script", "outcome", "tries"), RETRY_CASES)
async def test_grpc_retry_conditions(
    open_caller: Opener,
    upstreams: dict[str, Upstream],
    host: str,
    script: list[str],
    outcome: str,
    tries: int,
) -> None:
    caller = open_caller(host)
    upstreams[host].cue.push(*script)
    started = time.monotonic()
    assert await caller.outcome() == outcome
    assert upstreams[host].cue.count() == tries
    assert time.monotonic() - started < 1.5


async def test_route_timeout_caps_the_call(
    open_caller: Opener, upstreams: dict[str, Upstream]
) -> None:
    caller = open_caller("g-timeout")
    upstreams["g-timeout"].cue.push("stall 2")
    started = time.monotonic()
    assert await caller.outcome(timeout=10.0) == "error: DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 1.5
    seen = upstreams["g-timeout"].cue.requests()[0].deadline_s
    assert seen is not None and seen <= 0.3  # the route timeout travelled as grpc-timeout


async def test_max_requests_overflow_is_unavailable(
    open_caller: Opener, upstreams: dict[str, Upstream]
) -> None:
    caller = open_caller("g-max-req")
    cue = upstreams["g-max-req"].cue
    cue.push("stall 1")
    first = asyncio.ensure_future(caller.who())
    await asyncio.to_thread(wait_for, lambda: cue.count() == 1, 5.0)
    with pytest.raises(grpc.RpcError) as caught:
        await caller.who()
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert isinstance(caught.value, CircuitBreakerOverflow)
    assert await first == "g-max-req"


async def test_fault_abort_for_opted_in_calls(
    open_caller: Opener, upstreams: dict[str, Upstream]
) -> None:
    caller = open_caller("g-fault")
    assert await caller.who() == "g-fault"
    with pytest.raises(grpc.RpcError) as caught:
        await caller.who(metadata=[("x-testing", "true")])
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert isinstance(caught.value, InjectedFaultError)
    assert upstreams["g-fault"].cue.count() == 1


async def test_local_rate_limit_is_unavailable(open_caller: Opener) -> None:
    caller = open_caller(f"g-limited-{open_caller.kind}")
    assert await caller.who() == "g-limited"
    assert await caller.who() == "g-limited"
    with pytest.raises(grpc.RpcError) as caught:
        await caller.who()
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert isinstance(caught.value, RateLimitedError)


# --- side by side with grpcio's own xDS client ------------------------------------------

SIDE_BY_SIDE_CALLS = 5


def _tries_seen(call_once: Callable[[], str], cue: Cue) -> tuple[list[str], int]:
    """Calls against a backend failing twice per call, then one failing three times."""
    cue.reset()
    outcomes = []
    for _ in range(SIDE_BY_SIDE_CALLS):
        cue.push("UNAVAILABLE", "UNAVAILABLE")
        outcomes.append(call_once())
    cue.push("UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE")
    outcomes.append(call_once())
    return outcomes, cue.count()


def test_same_retry_policy_same_tries_as_grpcio(
    env: MeshEnv, upstreams: dict[str, Upstream]
) -> None:
    """``attempts: 2, retryOn: unavailable``: both clients send 3 tries per call and
    give up after 3 failures with UNAVAILABLE."""
    cue = upstreams["g-native"].cue
    target = f"xds:///g-native:{GRPC_PORT}"
    with native_grpc_client(env.bootstrap("grpcio-native")) as native:
        wait_for(lambda: native.calls(target, 1) == ["g-native"], 30.0, 0.2, "grpcio ready")
        native_seen = _tries_seen(lambda: native.calls(target, 1)[0], cue)
    with env.mesh.grpc_channel(target) as channel:
        who = channel.unary_unary(WHO)

        def meshlib_call() -> str:
            try:
                return bytes(who(b"", timeout=5.0)).decode()
            except grpc.RpcError as error:
                return f"error: {error.code().name}"

        meshlib_seen = _tries_seen(meshlib_call, cue)
    expected = ["g-native"] * SIDE_BY_SIDE_CALLS + ["error: UNAVAILABLE"]
    assert native_seen == (expected, 3 * SIDE_BY_SIDE_CALLS + 3)
    assert meshlib_seen == native_seen
