"""Server policies are written once: one table of cases, run through every adapter
(a real sync ``grpc.server``, a real ``grpc.aio`` server, a real uvicorn ASGI app).

Each case gives the policy list and the request, and what a gRPC caller and an
HTTP caller see. A case gRPC cannot express (grpcio computes the deadline itself,
so a caller cannot send one already past, or a malformed one) has no gRPC column.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest

import meshlib
import meshlib.asgi
from meshlib.resilience.rate_limit import TokenBucket
from meshlib.serving import (
    PASS,
    DeadlinePolicy,
    Decision,
    Deny,
    IncomingCall,
    RateLimitPolicy,
    ServerPolicy,
    Wrap,
    admit,
)
from tests.serving.policy_servers import (
    ADAPTERS,
    TAG,
    Answer,
    Request,
    probe_app,
    run,
    run_asgi,
    run_grpc_aio,
    run_grpc_sync,
)


class HeaderDenyPolicy:
    """An authorization-like policy: ``x-deny: yes`` is refused as Envoy's RBAC does."""

    name = "deny-header"

    def check(self, call: IncomingCall) -> Decision:
        if call.headers.get("x-deny") == "yes":
            return Deny(http_status=403, grpc_status=7, message="RBAC: access denied")
        return PASS


@contextlib.contextmanager
def _tagged(tag: str) -> Iterator[None]:
    token = TAG.set(tag)
    try:
        yield
    finally:
        TAG.reset(token)


class TagPolicy:
    """A tracing-like policy: wraps the handler in a context carrying ``x-tag``."""

    name = "tag"

    def check(self, call: IncomingCall) -> Decision:
        tag = call.headers.get("x-tag")
        return PASS if tag is None else Wrap(partial(_tagged, tag))


class Recorder:
    """Records every call it is asked about (and passes it)."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[IncomingCall] = []

    def check(self, call: IncomingCall) -> Decision:
        self.seen.append(call)
        return PASS


def _empty_bucket() -> TokenBucket:
    bucket = TokenBucket(max_tokens=1, tokens_per_fill=1, fill_interval_s=3600.0)
    assert bucket.try_acquire()
    return bucket


@dataclass(frozen=True)
class Case:
    name: str
    policies: Callable[[], list[ServerPolicy]]  # fresh per run: policies hold state
    request: Request
    http: tuple[int, str]  # status, text in the body ("" when the handler answered)
    grpc: tuple[grpc.StatusCode, str] | None  # code, text in the details; None: not on gRPC
    remaining: tuple[float, float] | None = None  # deadline the handler saw (when it ran)
    tag: str | None = None  # the wrap's context the handler saw


OK = grpc.StatusCode.OK
CASES = [
    Case("no deadline sent", lambda: [DeadlinePolicy()], Request(), (200, ""), (OK, "")),
    Case(
        "the handler runs under the caller's deadline",
        lambda: [DeadlinePolicy()],
        Request(deadline_ms=1500),
        (200, ""),
        (OK, ""),
        remaining=(1.0, 1.5),
    ),
    Case(
        "a deadline already past is refused",
        lambda: [DeadlinePolicy()],
        Request(deadline_ms=0),
        (504, "meshlib: deadline already exceeded"),
        None,
    ),
    Case(
        "a malformed deadline is refused naming the header",
        lambda: [DeadlinePolicy()],
        Request(headers={"x-meshlib-deadline-ms": "soon"}),
        (400, "x-meshlib-deadline-ms"),
        None,
    ),
    Case(
        "an empty rate-limit bucket refuses as Envoy does",
        lambda: [RateLimitPolicy(_empty_bucket()), DeadlinePolicy()],
        Request(deadline_ms=1500),
        (429, "local_rate_limited"),
        (grpc.StatusCode.UNAVAILABLE, "token bucket empty"),
    ),
    Case(
        "a token left lets the call through",
        lambda: [RateLimitPolicy(TokenBucket(max_tokens=5, tokens_per_fill=5, fill_interval_s=60))],
        Request(),
        (200, ""),
        (OK, ""),
    ),
    Case(
        "a custom policy denies with its own statuses",
        lambda: [HeaderDenyPolicy(), DeadlinePolicy()],
        Request(headers={"x-deny": "yes"}),
        (403, "RBAC: access denied"),
        (grpc.StatusCode.PERMISSION_DENIED, "RBAC: access denied"),
    ),
    Case(
        "a custom policy that passes changes nothing",
        lambda: [HeaderDenyPolicy(), DeadlinePolicy()],
        Request(headers={"x-deny": "no"}, deadline_ms=2000),
        (200, ""),
        (OK, ""),
        remaining=(1.0, 2.0),
    ),
    Case(
        "wraps nest: the handler sees every wrap's context",
        lambda: [TagPolicy(), DeadlinePolicy()],
        Request(headers={"x-tag": "t-1"}, deadline_ms=3000),
        (200, ""),
        (OK, ""),
        remaining=(2.0, 3.0),
        tag="t-1",
    ),
    Case(
        "the first denial wins over later wraps",
        lambda: [HeaderDenyPolicy(), TagPolicy()],
        Request(headers={"x-deny": "yes", "x-tag": "t-2"}),
        (403, "RBAC: access denied"),
        (grpc.StatusCode.PERMISSION_DENIED, "RBAC: access denied"),
    ),
]


def _check(case: Case, answer: Answer, expected: tuple[Any, str]) -> None:
    status, text = expected
    assert answer.status == status, answer
    assert text in answer.text, answer
    if answer.ok:
        assert answer.probe is not None
        seen = answer.probe["remaining"]
        if case.remaining is None:
            assert seen is None
        else:
            low, high = case.remaining
            assert seen is not None and low < seen <= high + 0.05, seen
        assert answer.probe["tag"] == case.tag


RUNS = [
    pytest.param(case, adapter, id=f"{adapter}: {case.name}")
    for case in CASES
    for adapter in ADAPTERS
    if adapter == "asgi" or case.grpc is not None
]


@pytest.mark.parametrize(("case", "adapter"), RUNS)
async def test_each_policy_case_through_each_adapter(case: Case, adapter: str) -> None:
    expected = case.http if adapter == "asgi" else case.grpc
    assert expected is not None
    _check(case, await run(adapter, case.policies(), case.request), expected)


@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_a_policy_sees_the_call(adapter: str) -> None:
    recorder = Recorder()
    request = Request(headers={"x-probe": "seen"}, deadline_ms=5000)
    answer = await run(adapter, [recorder], request)
    assert answer.ok
    assert len(recorder.seen) == (1 if adapter == "asgi" else 2)  # gRPC: unary + stream
    call = recorder.seen[0]
    assert call.peer is not None and call.peer.startswith("127.0.0.1:")
    assert call.headers["x-probe"] == "seen"
    deadline = call.deadline()
    # gRPC core rounds the grpc-timeout it sends up to the header's unit: a few ms over.
    assert deadline is not None and 0 < deadline.remaining() <= 5.05
    if adapter == "asgi":
        assert (call.protocol, call.method, call.path) == ("http", "GET", "/probe/path")
    else:
        assert call.protocol == "grpc"
        assert call.method == call.path == "/test.Probe/Unary"


def test_a_malformed_policy_list_is_refused_naming_the_entry() -> None:
    with pytest.raises(TypeError, match=r"policies\[1\]"):
        meshlib.MeshServerInterceptor(policies=[DeadlinePolicy(), object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not both"):
        meshlib.asgi.MeshMiddleware(probe_app, policies=[], rate_limit=_empty_bucket())


@pytest.mark.parametrize("port", [0, 65536, "8080", True])
def test_middleware_port_that_is_no_port_is_refused(port: object) -> None:
    """Not a watch for the inbound listener of port 0 (the app's calls would wait on it)."""
    with pytest.raises(ValueError, match=rf"port must be the app's port, 1..65535, got {port!r}"):
        meshlib.asgi.MeshMiddleware(probe_app, policies=[], port=port)  # type: ignore[arg-type]


class _BadAnswer:
    name = "bad"

    def check(self, call: IncomingCall) -> Decision:
        return "yes"  # type: ignore[return-value]


def test_a_policy_answering_something_else_fails_the_call_naming_it() -> None:
    answer = run_asgi(Request(), [_BadAnswer()])
    assert answer.status == 500  # the server's own answer to the TypeError below
    with pytest.raises(TypeError, match="server policy 'bad' answered 'yes'"):
        admit([_BadAnswer()], _plain_call())


def _plain_call() -> IncomingCall:
    return IncomingCall(
        protocol="http", method="GET", path="/", peer=None, headers=(), deadline=lambda: None
    )


# --- the mesh's list ------------------------------------------------------------------


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[meshlib.Mesh]:
    path = tmp_path / "bootstrap.json"
    server = {"server_uri": "127.0.0.1:1", "channel_creds": [{"type": "insecure"}]}
    path.write_text(json.dumps({"xds_servers": [server], "node": {"id": "n"}}))
    with meshlib.Mesh(bootstrap=path) as mesh:  # starts nothing: servers need no xDS yet
        yield mesh


async def test_the_mesh_applies_its_policies_on_every_server_kind(mesh: meshlib.Mesh) -> None:
    assert [type(p) for p in mesh.server_policies()] == [DeadlinePolicy]
    request = Request(deadline_ms=1500)
    answers = [
        run_grpc_sync(request, make_server=lambda: mesh.grpc_server(_pool())),
        await run_grpc_aio(request, make_server=mesh.aio_grpc_server),
        run_asgi(request, app=meshlib.asgi.MeshMiddleware(probe_app, mesh=mesh)),
    ]
    for answer in answers:
        assert answer.ok and answer.probe is not None
        assert 1.0 < answer.probe["remaining"] <= 1.55


def _pool() -> futures.ThreadPoolExecutor:
    return futures.ThreadPoolExecutor(max_workers=4)
