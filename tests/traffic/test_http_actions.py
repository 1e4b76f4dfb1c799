"""VirtualService actions through meshlib's httpx transport and an Envoy sidecar:
rewrites, redirects, direct responses, header manipulation and mirroring give the
same observable results (what the backend receives, what the caller gets back).
Envoy is the reference: each check states Envoy's documented behaviour."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.clients import ENVOY_HTTP, MESHLIB_HTTPX, HttpCaller
from tests.support.echo_servers import HttpEcho, http_echoes
from tests.support.stats import binomial_bounds
from tests.support.traffic_config import Doc, endpoint, service, to, virtual_service
from tests.support.waiting import free_port, wait_for
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

HOST = "act"
SERVICE = f"{HOST}:8080"
SHADOW = "mirror-sink"
DEAD = "dead-sink"  # its one endpoint refuses connections
HALF_MIRROR_CALLS = 400
RULES: list[dict[str, Any]] = [
    {
        "match": [{"uri": {"prefix": "/old/"}}],
        "rewrite": {"uri": "/new/", "authority": "rewritten.example"},
        "route": [to(HOST)],
    },
    {
        "match": [{"uri": {"regex": "/users/[0-9]+/profile"}}],
        "rewrite": {
            "uriRegexRewrite": {"match": "^/users/([0-9]+)/profile$", "rewrite": "/profiles/\\1"}
        },
        "route": [to(HOST)],
    },
    {
        "match": [{"uri": {"exact": "/moved"}}],
        "redirect": {"uri": "/elsewhere", "authority": "other.example", "redirectCode": 302},
    },
    {
        "match": [{"uri": {"exact": "/secure"}}],
        "redirect": {"scheme": "https", "port": 8443, "redirectCode": 308},
    },
    {
        "match": [{"uri": {"exact": "/derived"}}],
        "redirect": {"scheme": "https", "derivePort": "FROM_REQUEST_PORT"},
    },
    {
        "match": [{"uri": {"exact": "/teapot"}}],
        "directResponse": {"status": 418, "body": {"string": "short and stout"}},
    },
    {
        "match": [{"uri": {"prefix": "/headers"}}],
        "headers": {
            "request": {
                "set": {"x-set": "set-value"},
                "add": {"x-added": "added-value"},
                "remove": ["x-drop"],
            },
            "response": {"set": {"x-resp": "resp-value"}, "remove": ["x-backend"]},
        },
        "route": [
            {
                **to(HOST),
                "headers": {
                    "request": {"set": {"x-dest": "dest-value"}},
                    "response": {"add": {"x-dest-resp": "dest-resp-value"}},
                },
            }
        ],
    },
    {
        "match": [{"uri": {"prefix": "/mirror-half"}}],
        "mirror": {"host": SHADOW},
        "mirrorPercentage": {"value": 50.0},
        "route": [to(HOST)],
    },
    {
        "match": [{"uri": {"prefix": "/mirror-dead"}}],
        "mirror": {"host": DEAD},
        "route": [to(HOST)],
    },
    {
        "match": [{"uri": {"prefix": "/mirror"}}],
        "mirror": {"host": SHADOW},
        "mirrorPercentage": {"value": 100.0},
        "route": [to(HOST)],
    },
    {"route": [to(HOST)]},
]


def _docs(main_port: int, shadow_port: int) -> list[Doc]:
    return [
        service(HOST, 8080, "HTTP", [endpoint(main_port)]),
        service(SHADOW, 8080, "HTTP", [endpoint(shadow_port)]),
        service(DEAD, 8080, "HTTP", [endpoint(free_port())]),
        virtual_service(HOST, RULES),
    ]


@pytest.fixture(scope="module")
def backends() -> Iterator[list[HttpEcho]]:
    with http_echoes(["main", "shadow"]) as echoes:
        yield echoes


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, backends: list[HttpEcho]) -> Iterator[TrafficEnv]:
    main, shadow = backends
    with traffic_env(tmp_path_factory.mktemp("actions"), _docs(main.port, shadow.port)) as mesh_env:
        yield mesh_env


@pytest.fixture(params=[MESHLIB_HTTPX, ENVOY_HTTP])
def caller(env: TrafficEnv, request: pytest.FixtureRequest) -> Iterator[HttpCaller]:
    with env.caller(request.param, SERVICE) as opened:
        assert isinstance(opened, HttpCaller)
        opened.calls(1)  # waits for xDS
        yield opened


def test_prefix_rewrite_and_authority(caller: HttpCaller) -> None:
    answer = caller.request("GET", "/old/thing?q=1").json()
    assert (answer["path"], answer["host"]) == ("/new/thing?q=1", "rewritten.example")


def test_regex_rewrite(caller: HttpCaller) -> None:
    answer = caller.request("GET", "/users/42/profile").json()
    assert answer["path"] == "/profiles/42"


def test_redirect(caller: HttpCaller) -> None:
    response = caller.request("GET", "/moved")
    assert response.status_code == 302
    assert response.headers["location"] == "http://other.example/elsewhere"


def test_redirect_scheme_and_port(caller: HttpCaller) -> None:
    response = caller.request("GET", "/secure")
    assert response.status_code == 308
    assert response.headers["location"] == f"https://{HOST}:8443/secure"


def test_redirect_keeps_the_request_port(caller: HttpCaller) -> None:
    response = caller.request("GET", "/derived")
    assert response.status_code == 301
    assert response.headers["location"] == f"https://{SERVICE}/derived"


def test_direct_response(caller: HttpCaller) -> None:
    response = caller.request("GET", "/teapot")
    assert (response.status_code, response.text) == (418, "short and stout")


def test_request_and_response_header_operations(caller: HttpCaller) -> None:
    sent = {"x-set": "original", "x-added": "original", "x-drop": "gone", "x-keep": "kept"}
    response = caller.request("GET", "/headers", sent)
    seen = response.json()["headers"]
    assert seen["x-set"] == "set-value"
    assert seen["x-added"] == "original, added-value"  # appended, not replaced
    assert "x-drop" not in seen
    assert seen["x-keep"] == "kept"
    assert response.headers["x-resp"] == "resp-value"
    assert "x-backend" not in response.headers
    assert seen["x-dest"] == "dest-value"  # the destination's own header operations
    assert response.headers["x-dest-resp"] == "dest-resp-value"


def test_mirror_sends_a_copy_with_the_shadow_host_suffix(
    caller: HttpCaller, backends: list[HttpEcho]
) -> None:
    shadow = backends[1]
    path = f"/mirror/{caller.kind}"
    answer = caller.request("GET", path).json()
    assert answer["served_by"] == "main"

    def copy() -> list[Any]:
        return [r for r in shadow.seen() if r.path == path]

    copies = wait_for(copy, timeout=5, what="the mirrored copy")
    assert [c.host for c in copies] == [f"{HOST}-shadow:8080"]


def test_unmatched_paths_take_the_default_route(caller: HttpCaller) -> None:
    answer = caller.request("GET", "/plain").json()
    assert (answer["served_by"], answer["path"], answer["host"]) == ("main", "/plain", SERVICE)


def test_mirror_percentage_copies_about_half(caller: HttpCaller, backends: list[HttpEcho]) -> None:
    shadow = backends[1]
    prefix = f"/mirror-half/{caller.kind}/"
    for i in range(HALF_MIRROR_CALLS):
        assert caller.request("GET", f"{prefix}{i}").json()["served_by"] == "main"
    low, high = binomial_bounds(HALF_MIRROR_CALLS, 0.5)

    def copies() -> int:
        return sum(1 for r in shadow.seen() if r.path.startswith(prefix))

    wait_for(lambda: copies() >= low, timeout=5, what=f"at least {low:.0f} mirrored copies")
    settled = wait_for(_settled(copies), timeout=5, what="mirroring to settle")
    assert low <= settled <= high, f"{caller.kind}: {settled}/{HALF_MIRROR_CALLS} mirrored"


def _settled(count: Callable[[], int]) -> Callable[[], int | None]:
    """A probe that returns the count once two reads 0.2 s apart agree."""

    def probe() -> int | None:
        first = count()
        time.sleep(0.2)
        return first if count() == first else None

    return probe


def test_a_dead_mirror_never_fails_the_caller(caller: HttpCaller) -> None:
    started = time.monotonic()
    answers = [caller.request("GET", f"/mirror-dead/{i}") for i in range(20)]
    elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * 20
    assert elapsed < 5.0, f"{caller.kind}: 20 calls with a dead mirror took {elapsed:.1f}s"
