"""How many meshlib Python calls one warmed-up request makes, and the memory a mesh adds.

    python bench/call_count.py                 # counts per client kind, and the RSS added
    python bench/call_count.py --json out.json

Starts the bench stack (bench_stack.py), warms each meshlib client up (xDS, pools,
compiled plans), then counts, with ``sys.setprofile``, the Python function calls
whose code lives in the ``meshlib`` package during one more request (median over a
few requests). Memory: the process's resident set size before ``import meshlib``
(httpx and grpcio already imported) and after a ``Mesh`` made one HTTP and one
gRPC call (Linux ``/proc/self/statm``).
Not a test: the numbers depend on the versions installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

REPEATS = 5
WARMUP = 50


def rss_bytes() -> int:
    """The resident set size of this process (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class CallCounter:
    """Counts the Python calls into meshlib's code between :meth:`start` and :meth:`stop`."""

    PACKAGE = os.sep + "meshlib" + os.sep

    def __init__(self) -> None:
        self.calls = 0

    def _profile(self, frame: FrameType, event: str, _arg: Any) -> None:
        if event == "call" and self.PACKAGE in frame.f_code.co_filename:
            self.calls += 1

    def start(self) -> None:
        self.calls = 0
        sys.setprofile(self._profile)

    def stop(self) -> int:
        sys.setprofile(None)
        return self.calls


def count_sync(call: Callable[[], object]) -> int:
    """Median meshlib calls of one warmed-up sync request."""
    for _ in range(WARMUP):
        call()
    counter, counts = CallCounter(), []
    for _ in range(REPEATS):
        counter.start()
        try:
            call()
        finally:
            counts.append(counter.stop())
    return int(statistics.median(counts))


async def count_async(call: Callable[[], Awaitable[object]]) -> int:
    """Median meshlib calls of one warmed-up async request (its whole coroutine)."""
    for _ in range(WARMUP):
        await call()
    counter, counts = CallCounter(), []
    for _ in range(REPEATS):
        counter.start()
        try:
            await call()
        finally:
            counts.append(counter.stop())
    return int(statistics.median(counts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    # The bare clients' own cost is not meshlib's: import them first.
    import grpc.aio  # noqa: F401
    import httpx  # noqa: F401

    before = rss_bytes()
    from bench_clients import (
        grpc_async_variants,
        grpc_sync_variants,
        http_async_variants,
        http_sync_variants,
    )
    from bench_stack import running_stack

    import meshlib

    results: dict[str, Any] = {}
    with running_stack() as stack, meshlib.Mesh(bootstrap=str(stack.bootstrap)) as mesh:
        http = next(v for v in http_sync_variants(stack, mesh) if v.client == "meshlib")
        grpc_ = next(v for v in grpc_sync_variants(stack, mesh) if v.client == "meshlib")
        for variant in (http, grpc_):
            variant.call()
        results["rss_added_mb"] = round((rss_bytes() - before) / 2**20, 1)
        results["httpx sync"] = count_sync(http.call)
        results["grpc sync"] = count_sync(grpc_.call)

        async def run_async() -> None:
            for variant in http_async_variants(stack, mesh) + grpc_async_variants(stack, mesh):
                if variant.client == "meshlib":
                    results[variant.group] = await count_async(variant.call)
                await variant.close()

        asyncio.run(run_async())
        http.close()
        grpc_.close()
    for key, value in results.items():
        print(f"{key:>14}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
