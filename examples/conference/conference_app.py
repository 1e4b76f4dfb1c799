"""The legacy conference app: calls the Attendee and Session services through meshlib.

It only knows service names (``http://attendees:8080``, ``xds:///sessions:50051``);
meshlib asks the control plane (found through ``GRPC_XDS_BOOTSTRAP``) where they
live and spreads the calls over the instances. One line per call on stdout:

    [attendees] GET /attendees/42 -> attendees@18081 (Ada Lovelace) 1.4 ms
    [sessions ] GetSession(s-1) -> sessions-v2@50123 (Proxyless meshes, livestream) 0.9 ms

Run for ``--requests N`` rounds, ``--duration S`` seconds or ``--forever`` (one round = one
attendee call + one session call; every 5th round also streams ListSessions).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

import grpc
import httpx
from demo_logging import configure_logging
from gen.conference.sessions.v1 import sessions_pb2, sessions_pb2_grpc

import meshlib
from meshlib.errors import MeshError

ATTENDEE_URL = "http://attendees:8080/attendees/42"
SESSIONS_TARGET = "xds:///sessions:50051"
CALL_TIMEOUT_S = 5.0


@dataclass
class Tally:
    """Calls per answering instance, and failures."""

    answered: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    interrupted: bool = False

    def add(self, instance: str) -> None:
        self.answered[instance] = self.answered.get(instance, 0) + 1


def elapsed_ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.1f} ms"


def call_attendees(http: httpx.Client, tally: Tally) -> None:
    start = time.perf_counter()
    try:
        response = http.get(ATTENDEE_URL, timeout=CALL_TIMEOUT_S)
        body = response.json()
        response.raise_for_status()
    except (httpx.HTTPError, MeshError, ValueError) as exc:
        tally.failures += 1
        print(f"[attendees] GET /attendees/42 -> ERROR {type(exc).__name__}: {exc}", flush=True)
        return
    served_by = body["served_by"]
    tally.add(served_by)
    print(
        f"[attendees] GET /attendees/42 -> {served_by} ({body['name']}) {elapsed_ms(start)}",
        flush=True,
    )


def describe(session: sessions_pb2.Session) -> str:
    return f"{session.title}, livestream" if session.livestream_url else session.title


def call_get_session(stub: sessions_pb2_grpc.SessionsStub, session_id: str, tally: Tally) -> None:
    start = time.perf_counter()
    request = sessions_pb2.GetSessionRequest(session_id=session_id)
    try:
        reply = stub.GetSession(request, timeout=CALL_TIMEOUT_S)
    except (grpc.RpcError, MeshError) as exc:
        tally.failures += 1
        print(f"[sessions ] GetSession({session_id}) -> ERROR {rpc_error_text(exc)}", flush=True)
        return
    tally.add(reply.served_by.instance)
    print(
        f"[sessions ] GetSession({session_id}) -> {reply.served_by.instance} "
        f"({describe(reply.session)}) {elapsed_ms(start)}",
        flush=True,
    )


def call_list_sessions(stub: sessions_pb2_grpc.SessionsStub, tally: Tally) -> None:
    start = time.perf_counter()
    try:
        replies = list(
            stub.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=CALL_TIMEOUT_S)
        )
    except (grpc.RpcError, MeshError) as exc:
        tally.failures += 1
        print(f"[sessions ] ListSessions() -> ERROR {rpc_error_text(exc)}", flush=True)
        return
    instances = sorted({reply.served_by.instance for reply in replies})
    for instance in instances:
        tally.add(instance)
    print(
        f"[sessions ] ListSessions() -> {', '.join(instances)} "
        f"({len(replies)} sessions streamed) {elapsed_ms(start)}",
        flush=True,
    )


def rpc_error_text(exc: Exception) -> str:
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def run(mesh: meshlib.Mesh, rounds: int | None, duration: float | None, interval: float) -> Tally:
    """Call both services until the round count or the duration is reached."""
    tally = Tally()
    session_ids = ("s-1", "s-2", "s-3")
    deadline = None if duration is None else time.monotonic() + duration
    channel = mesh.grpc_channel(SESSIONS_TARGET)
    try:
        stub = sessions_pb2_grpc.SessionsStub(channel)
        with mesh.http_client() as http:
            done = 0
            while (rounds is None or done < rounds) and (
                deadline is None or time.monotonic() < deadline
            ):
                call_attendees(http, tally)
                call_get_session(stub, session_ids[done % len(session_ids)], tally)
                if done % 5 == 4:
                    call_list_sessions(stub, tally)
                done += 1
                if interval > 0:
                    time.sleep(interval)
    except KeyboardInterrupt:
        tally.interrupted = True  # Ctrl-C / SIGTERM: stop calling, still report
    finally:
        channel.close()
    return tally


def print_summary(tally: Tally) -> None:
    print("conference_app summary:", flush=True)
    for instance, count in sorted(tally.answered.items()):
        print(f"  {instance:<28} {count:>6}", flush=True)
    print(f"  {'failed calls':<28} {tally.failures:>6}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    limit = parser.add_mutually_exclusive_group()
    limit.add_argument("--requests", type=int, help="number of rounds to run")
    limit.add_argument("--duration", type=float, help="seconds to run (default 10)")
    limit.add_argument("--forever", action="store_true", help="run until Ctrl-C or SIGTERM")
    parser.add_argument(
        "--interval", type=float, default=0.2, help="pause between rounds in seconds (0: none)"
    )
    parser.add_argument("--bootstrap", help="bootstrap file (default: GRPC_XDS_BOOTSTRAP)")
    parser.add_argument(
        "--no-summary", action="store_true", help="skip the calls-per-instance table at the end"
    )
    args = parser.parse_args(argv)
    if args.requests is None and args.duration is None and not args.forever:
        args.duration = 10.0
    configure_logging()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        mesh = meshlib.Mesh(bootstrap=args.bootstrap) if args.bootstrap else meshlib.Mesh()
    except MeshError as exc:
        print(f"conference_app: {exc}", file=sys.stderr)
        return 2
    try:
        tally = run(mesh, args.requests, args.duration, args.interval)
    finally:
        mesh.close()
    if not args.no_summary:
        print_summary(tally)
    if tally.interrupted:
        return 130
    return 0 if tally.answered and tally.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
