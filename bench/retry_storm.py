"""Retry storms: how much extra load retries put on a failing upstream, and what it costs.

    python bench/retry_storm.py                    # storm (50% then 100% failing) + happy path
    python bench/retry_storm.py --skip-happy-path --calls 2000 --concurrency 32

Storm: an upstream answers 503 to 50% and then 100% of requests. Two callers
make the same calls with the same concurrency:

- naive: a plain httpx client retrying every 5xx, 3 attempts, Envoy's jittered
  back-off, no budget;
- meshlib: the mesh client with the route's ``retries: {attempts: 2, retryOn: 5xx}``
  (3 attempts) and meshlib's default retry budget (20% of active requests, at
  least 3 concurrent retries).

Printed per phase: upstream load amplification (upstream requests / calls) and
the callers' success rate. Target: at most 1.2x under 100% failure with the
budget, against about 3x naive.

Happy path: bench/overhead.py's comparison (bare vs meshlib, httpx sync/async,
gRPC sync/aio) with every resilience feature configured on the route and the
cluster (bench_stack.mesh_config: timeout, retries with per-try timeout, fault
filter with header faults, local rate limit, connection-pool thresholds, retry
budget, outlier detection; plus a failure-rate breaker per service): meshlib
should stay within 10% of the bare client's median.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import structlog
import yaml
from aiohttp import web
from bench_report import print_table, with_ratios
from bench_stack import Stack, mesh_config, register_breakers, running_stack, service_entry
from overhead import run_async, run_sync

import meshlib

STORM_HOST, STORM_PORT = "storm", 8080
ATTEMPTS = 3
BACK_OFF_BASE_S = 0.025
BACK_OFF_MAX_S = 0.25
READY_TIMEOUT_S = 15.0


class FailingUpstream:
    """An aiohttp server (own thread and loop) answering 503 to a fraction of requests."""

    def __init__(self) -> None:
        self.failure_rate = 0.0
        self.requests = 0
        self.port = 0
        self._random = random.Random(7)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="storm-upstream", daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1  # one loop thread: no lock needed
        if self._random.random() < self.failure_rate:
            return web.Response(status=503, text="failing")
        return web.Response(text="ok")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=512)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        self._stop = asyncio.Event()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> FailingUpstream:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("storm upstream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)


def write_config(stack: Stack, storm_port: int) -> None:
    """Replace the stack's mesh config (the control plane re-reads it on change)."""
    docs = [
        *mesh_config(stack.http_port, stack.grpc_port, stack.mtls_http_port, stack.mtls_grpc_port),
        service_entry(STORM_HOST, STORM_PORT, "http", "HTTP", storm_port),
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "storm-vs", "namespace": "bench"},
         "spec": {"hosts": [STORM_HOST], "http": [{
             "route": [{"destination": {"host": STORM_HOST}}],
             "retries": {"attempts": ATTEMPTS - 1, "retryOn": "5xx"}}]}},
    ]  # fmt: skip
    config = stack.bootstrap.parent / "mesh.yaml"
    tmp = config.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    tmp.replace(config)


# --- the storm ----------------------------------------------------------------------


@dataclass
class Phase:
    caller: str
    failure_rate: float
    calls: int
    ok: int
    upstream_requests: int
    seconds: float

    @property
    def amplification(self) -> float:
        return self.upstream_requests / self.calls

    @property
    def success_rate(self) -> float:
        return self.ok / self.calls


async def naive_get(client: httpx.AsyncClient, url: str) -> int:
    """Retry every 5xx, ``ATTEMPTS`` tries, Envoy's full-jitter back-off, no budget."""
    status = 0
    for attempt in range(ATTEMPTS):
        status = (await client.get(url)).status_code
        if status < 500 or attempt == ATTEMPTS - 1:
            break
        ceiling = min(((1 << (attempt + 1)) - 1) * BACK_OFF_BASE_S, BACK_OFF_MAX_S)
        await asyncio.sleep(random.random() * ceiling)
    return status


async def mesh_get(client: httpx.AsyncClient, url: str) -> int:
    return (await client.get(url)).status_code


async def run_phase(
    caller: str, client: httpx.AsyncClient, url: str, upstream: FailingUpstream,
    failure_rate: float, calls: int, concurrency: int,
) -> Phase:  # fmt: skip
    get = naive_get if caller == "naive" else mesh_get
    upstream.failure_rate = failure_rate
    before = upstream.requests
    remaining = calls
    ok = 0
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal remaining, ok
        while remaining > 0:
            remaining -= 1
            status = await get(client, url)  # not "ok += await ...": ok would be read first
            ok += status == 200

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Phase(caller, failure_rate, calls, ok, upstream.requests - before,
                 time.perf_counter() - started)  # fmt: skip


async def wait_ready(client: httpx.AsyncClient, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} never answered 200")
        await asyncio.sleep(0.1)


async def storm(
    mesh: meshlib.Mesh, upstream: FailingUpstream, calls: int, concurrency: int
) -> list[Phase]:
    phases = []
    mesh_url = f"http://{STORM_HOST}:{STORM_PORT}/"
    bare_url = f"http://127.0.0.1:{upstream.port}/"
    limits = httpx.Limits(
        max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2
    )
    async with httpx.AsyncClient(limits=limits) as bare, mesh.async_http_client() as meshed:
        await wait_ready(meshed, mesh_url)
        for failure_rate in (0.5, 1.0):
            phases.append(await run_phase("naive", bare, bare_url, upstream, failure_rate,
                                          calls, concurrency))  # fmt: skip
            phases.append(await run_phase("meshlib", meshed, mesh_url, upstream, failure_rate,
                                          calls, concurrency))  # fmt: skip
    return phases


def print_storm(phases: list[Phase], concurrency: int) -> None:
    print(f"\nRetry storm ({ATTEMPTS} attempts, retry on 5xx, {concurrency} concurrent callers)")
    print(
        f"{'failing':>8} {'caller':>8} {'calls':>7} {'upstream':>9} {'amplif.':>8} {'success':>8}"
    )
    for p in phases:
        print(f"{p.failure_rate:>8.0%} {p.caller:>8} {p.calls:>7} {p.upstream_requests:>9} "
              f"{p.amplification:>7.2f}x {p.success_rate:>8.1%}")  # fmt: skip


# --- main ---------------------------------------------------------------------------


@contextmanager
def storm_stack(keep_logs: bool) -> Iterator[tuple[Stack, FailingUpstream]]:
    with FailingUpstream() as upstream, running_stack(keep_logs=keep_logs) as stack:
        write_config(stack, upstream.port)
        yield stack, upstream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per caller and phase")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent callers")
    parser.add_argument("--requests", type=int, default=2000, help="happy path: calls per client")
    parser.add_argument("--warmup", type=int, default=200, help="happy path: warm-up calls")
    parser.add_argument("--skip-happy-path", action="store_true")
    parser.add_argument("--skip-storm", action="store_true")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    with storm_stack(args.keep_logs) as (stack, upstream):
        # grpcio's own xDS client (in the happy-path table) reads the bootstrap from here.
        os.environ["GRPC_XDS_BOOTSTRAP"] = str(stack.bootstrap)
        with meshlib.Mesh(bootstrap=str(stack.bootstrap)) as mesh:
            if not args.skip_storm:
                phases = asyncio.run(storm(mesh, upstream, args.calls, args.concurrency))
                print_storm(phases, args.concurrency)
            if not args.skip_happy_path:
                register_breakers()
                happy = argparse.Namespace(requests=args.requests, warmup=args.warmup,
                                           concurrency=16)  # fmt: skip
                results = run_sync(stack, mesh, happy)
                results += asyncio.run(run_async(stack, mesh, happy))
                print("\nHappy path, every resilience feature configured (ratios to bare):")
                print_table(with_ratios(results), requests=args.requests, concurrency=16,
                            took_s=0.0)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
