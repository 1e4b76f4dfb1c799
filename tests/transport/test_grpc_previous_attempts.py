"""gRFC A6: every retry and hedged try carries ``grpc-previous-rpc-attempts``, as grpcio's
own retries send it (sync and aio).

Real cue-driven gRPC upstreams record the metadata each request arrived with.
"""

from __future__ import annotations

import json

import grpc

import meshlib
from meshlib.xds_client import resources as xds
from tests.resilience_e2e.upstreams import WHO, Upstream, grpc_upstreams
from tests.routing.fake_xds import FakeXds
from tests.transport.call_plan_setup import (
    KINDS,
    UNAVAILABLE_ONLY,
    assert_planned,
    open_caller,
    publish,
)

HEADER = "grpc-previous-rpc-attempts"
RETRIES = xds.RetryPolicy(
    retry_on=UNAVAILABLE_ONLY, num_retries=2, back_off=xds.RetryBackOff(0.001, 0.002)
)


def sent(upstream: Upstream) -> list[str | None]:
    """``grpc-previous-rpc-attempts`` of each request the upstream received, in order."""
    return [seen.headers.get(HEADER) for seen in upstream.cue.requests()]


def test_grpcio_own_retries_send_the_header() -> None:
    """The reference: what grpcio sends with a retry policy in its service config."""
    config = {
        "methodConfig": [
            {
                "name": [{"service": "test.Echo"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    # (grpcio 1.85 at times never sends a retry due in 1 ms)
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("UNAVAILABLE", "UNAVAILABLE")
        options = [("grpc.service_config", json.dumps(config))]
        with grpc.insecure_channel(f"127.0.0.1:{a.port}", options=options) as channel:
            assert channel.unary_unary(WHO)(b"", timeout=5) == b"a"
        assert sent(a) == [None, "1", "2"]


@KINDS
async def test_retries_send_the_number_of_previous_attempts(kind: str, feed: FakeXds) -> None:
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("UNAVAILABLE", "UNAVAILABLE")
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"previous-{kind}", [a.port], action={"retry_policy": RETRIES})
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call(metadata=[("x-user", "u1")]) == "a"
                assert sent(a) == [None, "1", "2"]  # as grpcio's own retries
                assert all(seen.headers["x-user"] == "u1" for seen in a.cue.requests())
                a.cue.reset()
                assert await caller.call() == "a"  # a first try that answers: no header
                assert sent(a) == [None]
                assert_planned(caller)
            finally:
                await caller.close()


@KINDS
async def test_a_hedged_try_sends_the_number_of_previous_attempts(kind: str, feed: FakeXds) -> None:
    hedging = {
        "retry_policy": xds.RetryPolicy(
            retry_on=UNAVAILABLE_ONLY, num_retries=1, per_try_timeout_s=0.1
        ),
        "hedge_policy": xds.HedgePolicy(hedge_on_per_try_timeout=True),
    }
    with grpc_upstreams(["a"]) as (a,):
        a.cue.push("stall 5")  # the first try stalls: a hedge starts after 0.1 s
        async with meshlib.Mesh.with_xds_client(feed) as mesh:
            target = publish(feed, f"hedged-{kind}", [a.port], action=hedging)
            caller = await open_caller(kind, mesh, target)
            try:
                assert await caller.call(timeout=10.0) == "a"
                assert sent(a) == [None, "1"]
            finally:
                await caller.close()
