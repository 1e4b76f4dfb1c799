"""DeadlineMiddleware (and MeshMiddleware with a policy list) in real FastAPI and
Starlette apps served by uvicorn.

Both ways of adding it (``app.add_middleware`` and wrapping the app) must answer
the deadline's 504 (and a resilience error's own status), although the app's
``ServerErrorMiddleware`` answers 500 for any exception it sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from meshlib.asgi import DeadlineMiddleware, MeshMiddleware
from meshlib.errors import CircuitOpenError, DeadlineExceeded
from meshlib.resilience.deadline import remaining_time
from meshlib.serving import server_policies
from tests.support.asgi_server import serve_asgi

SLOW_S = 20.0  # the slow handler's sleep: far beyond the deadlines sent
DEADLINE = {"x-meshlib-deadline-ms": "300"}


async def _remaining() -> str:
    await asyncio.sleep(0)
    return repr(remaining_time())


async def _raise(kind: str) -> None:
    await asyncio.sleep(0)
    if kind == "deadline":  # what a mesh call made by the handler raises when the budget ends
        raise DeadlineExceeded("downstream deadline exceeded", timeout_s=0.3)
    if kind == "open":
        raise CircuitOpenError("breaker open", name="b", state="OPEN", retry_after_s=1.0)
    raise RuntimeError("a plain bug")


def _fastapi() -> Any:
    app = FastAPI()

    @app.get("/remaining", response_class=PlainTextResponse)
    async def remaining() -> str:
        return await _remaining()

    @app.get("/raise/{kind}")
    async def raising(kind: str) -> None:
        await _raise(kind)

    @app.get("/slow")
    async def slow() -> str:
        await asyncio.sleep(SLOW_S)
        return "finished"

    @app.get("/slow-sync")
    def slow_sync() -> str:
        # a blocking handler runs in a thread; the answer still comes at the deadline
        # (the thread is left to finish: a short sleep keeps the test's shutdown quick)
        import time

        time.sleep(1.0)
        return "finished"

    return app


def _starlette() -> Any:
    async def remaining(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await _remaining())

    async def raising(request: Request) -> PlainTextResponse:
        await _raise(request.path_params["kind"])
        return PlainTextResponse("unreachable")

    async def slow(request: Request) -> PlainTextResponse:
        await asyncio.sleep(SLOW_S)
        return PlainTextResponse("finished")

    return Starlette(
        routes=[
            Route("/remaining", remaining),
            Route("/raise/{kind}", raising),
            Route("/slow", slow),
        ]
    )


def _added(make: Callable[[], Any]) -> Any:
    app = make()
    app.add_middleware(DeadlineMiddleware)
    return app


def _wrapped(make: Callable[[], Any]) -> Any:
    return DeadlineMiddleware(make())


def _policy_list_added(make: Callable[[], Any]) -> Any:
    app = make()
    app.add_middleware(MeshMiddleware, policies=server_policies())
    return app


APPS = {
    "fastapi-add_middleware": lambda: _added(_fastapi),
    "fastapi-wrapped": lambda: _wrapped(_fastapi),
    "starlette-add_middleware": lambda: _added(_starlette),
    "starlette-wrapped": lambda: _wrapped(_starlette),
    "fastapi-add_middleware-policy-list": lambda: _policy_list_added(_fastapi),
}


@pytest.fixture(params=sorted(APPS))
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with serve_asgi(APPS[request.param]()) as url:
        yield url


def _get(base_url: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=SLOW_S / 2) as client:
        return client.get(path, headers=headers)


def test_the_handler_runs_under_the_callers_deadline(base_url: str) -> None:
    seen = float(_get(base_url, "/remaining", {"x-meshlib-deadline-ms": "1500"}).text)
    assert 1.0 < seen <= 1.5
    assert _get(base_url, "/remaining").text == "None"


def test_a_deadline_error_from_the_handler_is_504_not_500(base_url: str) -> None:
    answer = _get(base_url, "/raise/deadline", DEADLINE)
    assert answer.status_code == 504
    assert "downstream deadline exceeded" in answer.text


def test_a_handler_outliving_the_deadline_is_answered_504_at_the_deadline(base_url: str) -> None:
    # the client waits SLOW_S / 2 at most: an answer at all proves the handler was cut short
    answer = _get(base_url, "/slow", DEADLINE)
    assert answer.status_code == 504
    assert "deadline exceeded" in answer.text


def test_other_resilience_errors_get_their_status_and_bugs_stay_500(base_url: str) -> None:
    opened = _get(base_url, "/raise/open")
    assert opened.status_code == 503
    assert opened.headers["x-envoy-overloaded"] == "true"
    bug = _get(base_url, "/raise/bug", DEADLINE)
    assert bug.status_code == 500
    assert bug.text == "Internal Server Error"


def test_a_blocking_fastapi_handler_past_the_deadline_is_504() -> None:
    with serve_asgi(_added(_fastapi)) as url:
        answer = _get(url, "/slow-sync", DEADLINE)
    assert answer.status_code == 504
