"""The conference app's calls, sync and async twins side by side, and how they print.

Each call prints one line naming the instance that answered (or the error) and
counts it in a :class:`Tally`; the twins share the printing so they cannot drift.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import httpx
from gen.conference.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from meshlib.errors import MeshError

ATTENDEE_URL = "http://attendees:8080/attendees/42"
SESSIONS_TARGET = "xds:///sessions:50051"
CALL_TIMEOUT_S = 5.0
HTTP_ERRORS = (httpx.HTTPError, MeshError, ValueError)
RPC_ERRORS = (grpc.RpcError, MeshError)


@dataclass
class Tally:
    """Calls per answering instance, and failures."""

    answered: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    interrupted: bool = False

    def add(self, instance: str) -> None:
        self.answered[instance] = self.answered.get(instance, 0) + 1


def _ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.1f} ms"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call | grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def _failed(tally: Tally, call: str, exc: BaseException) -> None:
    tally.failures += 1
    print(f"{call} -> ERROR {_error_text(exc)}", flush=True)


def _attendee_answered(tally: Tally, body: dict[str, Any], start: float) -> None:
    tally.add(body["served_by"])
    print(
        f"[attendees] GET /attendees/42 -> {body['served_by']} ({body['name']}) {_ms(start)}",
        flush=True,
    )


def _session_answered(
    tally: Tally, session_id: str, reply: sessions_pb2.GetSessionResponse, start: float
) -> None:
    tally.add(reply.served_by.instance)
    session = reply.session
    what = f"{session.title}, livestream" if session.livestream_url else session.title
    print(
        f"[sessions ] GetSession({session_id}) -> {reply.served_by.instance} ({what}) {_ms(start)}",
        flush=True,
    )


def _list_answered(
    tally: Tally, replies: Sequence[sessions_pb2.ListSessionsResponse], start: float
) -> None:
    instances = sorted({reply.served_by.instance for reply in replies})
    for instance in instances:
        tally.add(instance)
    print(
        f"[sessions ] ListSessions() -> {', '.join(instances)} "
        f"({len(replies)} sessions streamed) {_ms(start)}",
        flush=True,
    )


def _attendee_body(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    response.raise_for_status()
    return body


def call_attendees(http: httpx.Client, tally: Tally) -> None:
    start = time.perf_counter()
    try:
        body = _attendee_body(http.get(ATTENDEE_URL, timeout=CALL_TIMEOUT_S))
    except HTTP_ERRORS as exc:
        return _failed(tally, "[attendees] GET /attendees/42", exc)
    _attendee_answered(tally, body, start)


async def call_attendees_async(http: httpx.AsyncClient, tally: Tally) -> None:
    start = time.perf_counter()
    try:
        body = _attendee_body(await http.get(ATTENDEE_URL, timeout=CALL_TIMEOUT_S))
    except HTTP_ERRORS as exc:
        return _failed(tally, "[attendees] GET /attendees/42", exc)
    _attendee_answered(tally, body, start)


def call_get_session(stub: sessions_pb2_grpc.SessionsStub, session_id: str, tally: Tally) -> None:
    start = time.perf_counter()
    request = sessions_pb2.GetSessionRequest(session_id=session_id)
    try:
        reply = stub.GetSession(request, timeout=CALL_TIMEOUT_S)
    except RPC_ERRORS as exc:
        return _failed(tally, f"[sessions ] GetSession({session_id})", exc)
    _session_answered(tally, session_id, reply, start)


async def call_get_session_async(
    stub: sessions_pb2_grpc.SessionsAsyncStub, session_id: str, tally: Tally
) -> None:
    start = time.perf_counter()
    request = sessions_pb2.GetSessionRequest(session_id=session_id)
    try:
        reply = await stub.GetSession(request, timeout=CALL_TIMEOUT_S)
    except RPC_ERRORS as exc:
        return _failed(tally, f"[sessions ] GetSession({session_id})", exc)
    _session_answered(tally, session_id, reply, start)


def call_list_sessions(stub: sessions_pb2_grpc.SessionsStub, tally: Tally) -> None:
    start = time.perf_counter()
    request = sessions_pb2.ListSessionsRequest()
    try:
        replies = list(stub.ListSessions(request, timeout=CALL_TIMEOUT_S))
    except RPC_ERRORS as exc:
        return _failed(tally, "[sessions ] ListSessions()", exc)
    _list_answered(tally, replies, start)


async def call_list_sessions_async(stub: sessions_pb2_grpc.SessionsAsyncStub, tally: Tally) -> None:
    start = time.perf_counter()
    request = sessions_pb2.ListSessionsRequest()
    try:
        replies = [reply async for reply in stub.ListSessions(request, timeout=CALL_TIMEOUT_S)]
    except RPC_ERRORS as exc:
        return _failed(tally, "[sessions ] ListSessions()", exc)
    _list_answered(tally, replies, start)
