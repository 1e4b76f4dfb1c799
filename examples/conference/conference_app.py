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
import asyncio
import signal
import sys
import time
from types import FrameType

from conference_calls import (
    SESSIONS_TARGET,
    Tally,
    call_attendees,
    call_attendees_async,
    call_get_session,
    call_get_session_async,
    call_list_sessions,
    call_list_sessions_async,
)
from demo_logging import configure_logging
from gen.conference.sessions.v1 import sessions_pb2_grpc

import meshlib
from meshlib.errors import MeshError

SESSION_IDS = ("s-1", "s-2", "s-3")


class Pace:
    """When to stop (round count or deadline) and how long to pause between rounds."""

    def __init__(self, rounds: int | None, duration: float | None, interval: float) -> None:
        self.rounds = rounds
        self.deadline = None if duration is None else time.monotonic() + duration
        self.interval = interval
        self.done = 0

    def more(self) -> bool:
        return (self.rounds is None or self.done < self.rounds) and (
            self.deadline is None or time.monotonic() < self.deadline
        )

    def session_id(self) -> str:
        return SESSION_IDS[self.done % len(SESSION_IDS)]

    def stream_this_round(self) -> bool:
        return self.done % 5 == 4


def run(mesh: meshlib.Mesh, pace: Pace, tally: Tally) -> None:
    """Call both services until ``pace`` says stop (sync: httpx.Client, grpc.Channel)."""
    channel = mesh.grpc_channel(SESSIONS_TARGET)
    try:
        stub = sessions_pb2_grpc.SessionsStub(channel)
        with mesh.http_client() as http:
            while pace.more():
                call_attendees(http, tally)
                call_get_session(stub, pace.session_id(), tally)
                if pace.stream_this_round():
                    call_list_sessions(stub, tally)
                pace.done += 1
                if pace.interval > 0:
                    time.sleep(pace.interval)
    except KeyboardInterrupt:
        tally.interrupted = True  # Ctrl-C / SIGTERM: stop calling, still report
    finally:
        channel.close()


async def run_async(mesh: meshlib.Mesh, pace: Pace, tally: Tally) -> None:
    """The async twin of :func:`run` (httpx.AsyncClient, grpc.aio channel)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    channel = mesh.aio_grpc_channel(SESSIONS_TARGET)
    try:
        stub = sessions_pb2_grpc.SessionsStub(channel)  # typed as SessionsAsyncStub on aio
        async with mesh.async_http_client() as http:
            while pace.more():
                await call_attendees_async(http, tally)
                await call_get_session_async(stub, pace.session_id(), tally)
                if pace.stream_this_round():
                    await call_list_sessions_async(stub, tally)
                pace.done += 1
                if pace.interval > 0:
                    await asyncio.sleep(pace.interval)
    except asyncio.CancelledError:
        tally.interrupted = True  # Ctrl-C / SIGTERM: stop calling, still report
    finally:
        await channel.close()


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
        "--async",
        dest="use_async",
        action="store_true",
        help="use mesh.async_http_client() and mesh.aio_grpc_channel() on asyncio",
    )
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
    if mesh.certificates is not None:  # a join token (MESH_TOKEN_FILE): mTLS where the mesh says
        print(f"[app      ] calling as {mesh.certificates.current().identity}", flush=True)
    tally = Tally()
    pace = Pace(args.requests, args.duration, args.interval)
    try:
        if args.use_async:
            asyncio.run(run_async(mesh, pace, tally))
        else:
            run(mesh, pace, tally)
    finally:
        mesh.close()
    if not args.no_summary:
        print_summary(tally)
    if tally.interrupted:
        return 130
    return 0 if tally.answered and tally.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
