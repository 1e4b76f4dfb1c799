"""meshlib's httpx clients answer what the mesh ends as an Envoy sidecar on the same
config does, side by side through the real control plane: status, body and the
headers Envoy sets, sync and async; ``raise_mesh_errors=True`` raises the typed
error (kept in ``response.extensions["meshlib.error"]`` otherwise)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import meshlib
from meshlib.errors import (
    InjectedFaultError,
    NoHealthyEndpointError,
    NoRouteError,
    RateLimitedError,
)
from tests.resilience_e2e.harness import HTTP_PORT, Doc, service, virtual_service
from tests.resilience_e2e.upstreams import http_upstreams
from tests.support.envoy import EnvoySidecar
from tests.support.waiting import free_port
from tests.traffic.harness import traffic_env

pytestmark = pytest.mark.integration

LIMIT = {"maxTokens": 1, "tokensPerFill": 1, "fillInterval": "60s"}
# host -> the typed error behind the answer (None: the upstream's own answer)
CASES: dict[str, type[BaseException]] = {
    "abort": InjectedFaultError,
    "empty": NoHealthyEndpointError,
    "refused": httpx.ConnectError,
    "noroute": NoRouteError,
    "limited": RateLimitedError,
}
COMPARED = ("content-type", "server", "content-length", "x-envoy-overloaded")


def _docs(ok_port: int) -> list[Doc]:
    abort = {"fault": {"abort": {"httpStatus": 500, "percentage": {"value": 100}}}}
    return [
        service("abort", HTTP_PORT, "HTTP", [ok_port]),
        virtual_service("abort", abort),
        service("empty", HTTP_PORT, "HTTP", []),
        service("refused", HTTP_PORT, "HTTP", [free_port()]),  # Istio's default retries
        service("noroute", HTTP_PORT, "HTTP", [ok_port]),
        virtual_service("noroute", {"match": [{"uri": {"prefix": "/only"}}]}),
        service("limited", HTTP_PORT, "HTTP", [ok_port]),
        virtual_service("limited", {}, annotations={"meshlib.dev/local-rate-limit": LIMIT}),
    ]


@dataclass
class Side:
    """Envoy and meshlib on one control plane and one config."""

    envoy: EnvoySidecar
    mesh: meshlib.Mesh
    answering: httpx.Client
    raising: httpx.Client


@pytest.fixture(scope="module")
def side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    with http_upstreams(["ok"]) as (ok,):
        workdir: Path = tmp_path_factory.mktemp("sidecar-answers")
        with traffic_env(workdir, _docs(ok.port)) as env:
            bootstrap = env.bootstrap("meshlib-httpx")
            with (
                meshlib.Mesh(bootstrap=str(bootstrap)) as mesh,
                mesh.http_client(timeout=10.0) as answering,
                mesh.http_client(timeout=10.0, raise_mesh_errors=True) as raising,
            ):
                for host in CASES:
                    mesh.wait_ready(f"{host}:{HTTP_PORT}", timeout=15)
                yield Side(env.envoy(), mesh, answering, raising)


def _seen(response: httpx.Response) -> tuple[int, bytes, dict[str, str | None]]:
    return response.status_code, response.content, {h: response.headers.get(h) for h in COMPARED}


def _first_local(responses: list[httpx.Response]) -> httpx.Response:
    """The first answer that is not the upstream's 200 (a rate limit lets one through)."""
    return next(r for r in responses if r.status_code != 200)


def _via_envoy(side: Side, host: str) -> httpx.Response:
    url = f"http://127.0.0.1:{side.envoy.outbound_port}/x"
    headers = {"host": f"{host}:{HTTP_PORT}"}
    return _first_local([httpx.get(url, headers=headers, timeout=10.0) for _ in range(2)])


async def _via_meshlib(side: Side, host: str, kind: str) -> httpx.Response:
    url = f"http://{host}:{HTTP_PORT}/x"
    if kind == "sync":
        return _first_local([await asyncio.to_thread(side.answering.get, url) for _ in range(2)])
    async with side.mesh.async_http_client(timeout=10.0) as client:
        return _first_local([await client.get(url) for _ in range(2)])


@pytest.mark.parametrize("host", list(CASES))
async def test_meshlib_answers_as_envoy_does(side: Side, host: str) -> None:
    envoy = await asyncio.to_thread(_via_envoy, side, host)
    for kind in ("sync", "async"):
        mine = await _via_meshlib(side, host, kind)
        assert _seen(mine) == _seen(envoy), (kind, mine.headers, envoy.headers)
        assert isinstance(mine.extensions["meshlib.error"], CASES[host])


@pytest.mark.parametrize("host", ["abort", "empty", "noroute"])
async def test_raise_mesh_errors_raises_the_typed_error(side: Side, host: str) -> None:
    url = f"http://{host}:{HTTP_PORT}/x"
    with pytest.raises(CASES[host]) as sync_raised:
        await asyncio.to_thread(side.raising.get, url)
    async with side.mesh.async_http_client(raise_mesh_errors=True) as client:
        with pytest.raises(CASES[host]) as async_raised:
            await client.get(url)
    for raised in (sync_raised.value, async_raised.value):
        assert isinstance(raised, meshlib.MeshError) and isinstance(raised, httpx.HTTPError)
