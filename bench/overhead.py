"""What meshlib costs per call, next to the bare clients, in one run on loopback.

    python bench/overhead.py                      # 2000 requests per client
    python bench/overhead.py --requests 500 --json results.json

Groups: httpx sync and async (bare vs meshlib), gRPC sync and aio (bare vs
meshlib vs grpcio's own ``xds:///`` client), each against one server; then the
same four with mTLS (``... mtls``: the bare clients with the workload
certificate meshlib's ``Mesh(token=...)`` got, grpcio's xDS client with
``xds_channel_credentials``; servers requiring a client certificate). After
the table: the time from ``Mesh(...)`` to a first response (with a token: the
certificate is obtained first), and one certificate rotation under steady
calls (calls during it, failures). Per
client: median and p99 latency of sequential calls, sequential and concurrent
throughput, and the ratio to the bare client of its group. In each of the
rounds, the sequential calls of a group's clients are interleaved call by call
(then each client runs its concurrent burst), so drift on a shared machine hits
them alike; the median ratio is the median of the per-round ratios.
Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import structlog
from bench_clients import (
    AsyncVariant,
    SyncVariant,
    grpc_async_variants,
    grpc_sync_variants,
    http_async_variants,
    http_sync_variants,
)
from bench_mtls import (
    ClientCerts,
    client_certs,
    grpc_async_mtls_variants,
    grpc_sync_mtls_variants,
    http_async_mtls_variants,
    http_sync_mtls_variants,
    print_extras,
    rotation_cost,
    time_to_first_call,
)
from bench_report import Result, print_table, with_ratios
from bench_stack import Stack, register_breakers, running_stack

import meshlib

ROUNDS = 10
READY_TIMEOUT_S = 15.0


@dataclass
class Samples:
    """What one client collected over the rounds."""

    latencies_ns: list[int] = field(default_factory=list)
    round_medians_ns: list[float] = field(default_factory=list)
    sequential_s: float = 0.0
    concurrent_s: float = 0.0
    concurrent_calls: int = 0


def wait_ready_sync(variant: SyncVariant) -> None:
    """First calls may wait for xDS; retry until one succeeds or time runs out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            variant.call()
            return
        except Exception as exc:  # any failure means not ready yet, until the deadline
            if time.monotonic() > deadline:
                raise RuntimeError(f"{variant.group}/{variant.client} never answered") from exc
            time.sleep(0.1)


async def wait_ready_async(variant: AsyncVariant) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            await variant.call()
            return
        except Exception as exc:  # any failure means not ready yet, until the deadline
            if time.monotonic() > deadline:
                raise RuntimeError(f"{variant.group}/{variant.client} never answered") from exc
            await asyncio.sleep(0.1)


def run_sync_group(
    variants: Sequence[SyncVariant], requests: int, warmup: int, concurrency: int
) -> list[Samples]:
    samples = [Samples() for _ in variants]
    for variant in variants:
        wait_ready_sync(variant)
        for _ in range(warmup):
            variant.call()
    per_round = max(1, requests // ROUNDS)
    per_worker = max(1, per_round // concurrency)
    pairs = list(zip(variants, samples, strict=True))
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in range(ROUNDS):
            # Sequential calls interleaved client by client: drift hits all alike.
            for _ in range(per_round):
                for variant, sample in pairs:
                    t0 = time.perf_counter_ns()
                    variant.call()
                    elapsed = time.perf_counter_ns() - t0
                    sample.latencies_ns.append(elapsed)
                    sample.sequential_s += elapsed / 1e9
            for variant, sample in pairs:
                sample.round_medians_ns.append(statistics.median(sample.latencies_ns[-per_round:]))

                def worker(call: Any = variant.call) -> None:
                    for _ in range(per_worker):
                        call()

                started = time.perf_counter()
                for done in [pool.submit(worker) for _ in range(concurrency)]:
                    done.result()
                sample.concurrent_s += time.perf_counter() - started
                sample.concurrent_calls += per_worker * concurrency
    return samples


async def run_async_group(
    variants: Sequence[AsyncVariant], requests: int, warmup: int, concurrency: int
) -> list[Samples]:
    samples = [Samples() for _ in variants]
    for variant in variants:
        await wait_ready_async(variant)
        for _ in range(warmup):
            await variant.call()
    per_round = max(1, requests // ROUNDS)
    per_worker = max(1, per_round // concurrency)
    pairs = list(zip(variants, samples, strict=True))
    for _ in range(ROUNDS):
        # Sequential calls interleaved client by client: drift hits all alike.
        for _ in range(per_round):
            for variant, sample in pairs:
                t0 = time.perf_counter_ns()
                await variant.call()
                elapsed = time.perf_counter_ns() - t0
                sample.latencies_ns.append(elapsed)
                sample.sequential_s += elapsed / 1e9
        for variant, sample in pairs:
            sample.round_medians_ns.append(statistics.median(sample.latencies_ns[-per_round:]))

            async def worker(variant: AsyncVariant = variant) -> None:
                for _ in range(per_worker):
                    await variant.call()

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            sample.concurrent_s += time.perf_counter() - started
            sample.concurrent_calls += per_worker * concurrency
    return samples


def summarize(
    variants: Sequence[SyncVariant | AsyncVariant], samples: list[Samples]
) -> list[Result]:
    return [
        Result.from_samples(
            variant.group,
            variant.client,
            sample.latencies_ns,
            round_medians_ns=sample.round_medians_ns,
            sequential_s=sample.sequential_s,
            concurrent_calls=sample.concurrent_calls,
            concurrent_s=sample.concurrent_s,
        )
        for variant, sample in zip(variants, samples, strict=True)
    ]


@dataclass
class MtlsSide:
    """The mTLS groups' mesh (with a token) and its certificate in files."""

    mesh: meshlib.Mesh
    certs: ClientCerts


def sync_builds(
    stack: Stack, mesh: meshlib.Mesh, mtls: MtlsSide | None
) -> list[Callable[[], list[SyncVariant]]]:
    builds: list[Callable[[], list[SyncVariant]]] = [
        lambda: http_sync_variants(stack, mesh),
        lambda: grpc_sync_variants(stack, mesh),
    ]
    if mtls is not None:
        builds.append(lambda: http_sync_mtls_variants(stack, mtls.mesh, mtls.certs))
        builds.append(lambda: grpc_sync_mtls_variants(stack, mtls.mesh, mtls.certs))
    return builds


def async_builds(
    stack: Stack, mesh: meshlib.Mesh, mtls: MtlsSide | None
) -> list[Callable[[], list[AsyncVariant]]]:
    builds: list[Callable[[], list[AsyncVariant]]] = [
        lambda: http_async_variants(stack, mesh),
        lambda: grpc_async_variants(stack, mesh),
    ]
    if mtls is not None:
        builds.append(lambda: http_async_mtls_variants(stack, mtls.mesh, mtls.certs))
        builds.append(lambda: grpc_async_mtls_variants(stack, mtls.mesh, mtls.certs))
    return builds


def run_sync(
    stack: Stack, mesh: meshlib.Mesh, args: argparse.Namespace, mtls: MtlsSide | None = None
) -> list[Result]:
    """The plaintext groups, then (``mtls`` given) the mTLS ones."""
    results: list[Result] = []
    for build in sync_builds(stack, mesh, mtls):
        variants = build()
        try:
            samples = run_sync_group(variants, args.requests, args.warmup, args.concurrency)
        finally:
            for variant in variants:
                variant.close()
        results += summarize(variants, samples)
    return results


async def run_async(
    stack: Stack, mesh: meshlib.Mesh, args: argparse.Namespace, mtls: MtlsSide | None = None
) -> list[Result]:
    results: list[Result] = []
    for build in async_builds(stack, mesh, mtls):
        variants = build()
        try:
            samples = await run_async_group(variants, args.requests, args.warmup, args.concurrency)
        finally:
            for variant in variants:
                await variant.close()
        results += summarize(variants, samples)
    return results


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "grpcio": grpc.__version__,
        "httpx": httpx.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="measured calls per client")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls per client")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent callers")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    args = parser.parse_args(argv)
    if args.requests < ROUNDS or args.concurrency < 1 or args.warmup < 0:
        parser.error(f"--requests must be >= {ROUNDS}, --concurrency >= 1, --warmup >= 0")

    # As a service would run it: meshlib's log events at INFO and up, on stderr.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    started = time.perf_counter()
    with (
        running_stack(keep_logs=args.keep_logs) as stack,
        meshlib.Mesh(bootstrap=str(stack.bootstrap)) as plain,
        meshlib.Mesh(bootstrap=str(stack.bootstrap), token=stack.client_token) as mtls,
    ):
        side = MtlsSide(mtls, client_certs(stack, mtls))
        # grpcio's own xDS client reads the bootstrap from the environment (one per
        # process): the one with the workload certificate, over the secure xDS address,
        # for its plaintext and its mTLS channels alike.
        os.environ["GRPC_XDS_BOOTSTRAP"] = str(side.certs.bootstrap)
        register_breakers()
        results = run_sync(stack, plain, args, side)
        results += asyncio.run(run_async(stack, plain, args, side))
        first_calls = time_to_first_call(stack)
        rotation = rotation_cost(stack, mtls)
    took = time.perf_counter() - started
    results = with_ratios(results)
    print_table(results, requests=args.requests, concurrency=args.concurrency, took_s=took)
    print_extras(first_calls, rotation)
    if args.json is not None:
        document = {
            "requests": args.requests,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "rounds": ROUNDS,
            "took_s": round(took, 1),
            "environment": environment(),
            "results": [asdict(result) for result in results],
            "first_call": [asdict(first) for first in first_calls],
            "rotation": asdict(rotation),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
