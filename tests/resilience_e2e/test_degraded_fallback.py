"""The operator marks a service degraded (ServiceEntry annotation
``meshlib.dev/degraded: "true"``): every ``@fallback(service=...)`` caller,
sync and async, HTTP and gRPC, answers from its handler within a second; the
switch back restores real calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from meshlib.resilience import degraded_services, fallback, fallback_cause
from tests.resilience_e2e.harness import (
    GRPC_PORT,
    HTTP_PORT,
    Doc,
    MeshEnv,
    mesh_env,
    service,
)
from tests.resilience_e2e.upstreams import WHO, Upstream, grpc_upstreams, http_upstreams
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SWITCH_WITHIN_S = 1.0


def _docs(http: Upstream, grpc_up: Upstream, *, degraded: bool) -> list[Doc]:
    return [
        service("sessions", HTTP_PORT, "HTTP", [http.port], degraded=degraded),
        service("agenda", GRPC_PORT, "GRPC", [grpc_up.port], degraded=degraded),
    ]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MeshEnv, Upstream, Upstream]]:
    with http_upstreams(["sessions"]) as (http,), grpc_upstreams(["agenda"]) as (grpc_up,):
        docs = _docs(http, grpc_up, degraded=False)
        with mesh_env(tmp_path_factory.mktemp("degraded"), docs) as started:
            started.mesh.wait_ready(f"sessions:{HTTP_PORT}", timeout=15)
            started.mesh.wait_ready(f"agenda:{GRPC_PORT}", timeout=15)
            yield started, http, grpc_up


async def test_every_caller_falls_back_within_a_second(
    env: tuple[MeshEnv, Upstream, Upstream],
) -> None:
    mesh_env_, http, grpc_up = env
    mesh = mesh_env_.mesh
    causes: list[BaseException | None] = []

    def whole_schedule() -> str:
        causes.append(fallback_cause())
        return "whole schedule"

    async def whole_schedule_async() -> str:
        return whole_schedule()

    @fallback(whole_schedule, service=f"sessions:{HTTP_PORT}")
    def personal_http() -> str:
        return str(mesh_env_.http.get(f"http://sessions:{HTTP_PORT}/").json()["served_by"])

    async with mesh.async_http_client() as client:

        @fallback(whole_schedule_async, service=f"sessions:{HTTP_PORT}")
        async def personal_async() -> str:
            response = await client.get(f"http://sessions:{HTTP_PORT}/")
            return str(response.json()["served_by"])

        with mesh.grpc_channel(f"xds:///agenda:{GRPC_PORT}") as channel:
            who = channel.unary_unary(WHO, None, None)

            @fallback(whole_schedule, service=f"agenda:{GRPC_PORT}")
            def personal_grpc() -> str:
                return bytes(who(b"", timeout=5.0)).decode()

            async def answers() -> list[str]:
                return [personal_http(), await personal_async(), personal_grpc()]

            assert await answers() == ["sessions", "sessions", "agenda"]
            mesh_env_.write(*_docs(http, grpc_up, degraded=True))
            switched = time.monotonic()
            seen_before = http.cue.count() + grpc_up.cue.count()
            await asyncio.to_thread(
                wait_for, lambda: _all_degraded(mesh_env_), 10.0, 0.01, "degraded"
            )
            took = time.monotonic() - switched
            assert await answers() == ["whole schedule"] * 3
            assert http.cue.count() + grpc_up.cue.count() == seen_before  # not called at all
            assert causes[-1] is None  # degraded, not an exception
            assert took < SWITCH_WITHIN_S  # config file change -> push -> every caller

            mesh_env_.write(*_docs(http, grpc_up, degraded=False))
            await asyncio.to_thread(
                wait_for, lambda: not _any_degraded(mesh_env_), 10.0, 0.01, "recovered"
            )
            assert await answers() == ["sessions", "sessions", "agenda"]


def _all_degraded(env: MeshEnv) -> bool:
    return degraded_services.is_degraded(f"sessions:{HTTP_PORT}") and (
        degraded_services.is_degraded(f"agenda:{GRPC_PORT}")
    )


def _any_degraded(env: MeshEnv) -> bool:
    return degraded_services.is_degraded(f"sessions:{HTTP_PORT}") or (
        degraded_services.is_degraded(f"agenda:{GRPC_PORT}")
    )
