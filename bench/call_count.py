"""How many meshlib Python calls one warmed-up request makes, and the memory a mesh adds.

    python bench/call_count.py                 # counts per client kind, and the RSS added
    python bench/call_count.py --json out.json

Starts the bench stack (bench_stack.py), warms each meshlib client up (xDS, pools,
compiled plans), then counts, with ``sys.setprofile``, the Python function calls
whose code lives in the ``meshlib`` package during one more request (median over a
few requests).

Memory, in a fresh child process that imports no bench module: its resident set size
(Linux ``/proc/self/statm``) after ``import httpx, grpc, grpc.aio``, then after
``import meshlib``, ``Mesh(bootstrap=...)``, one HTTP call (``mesh.http_client().get``)
and one unary gRPC call (``mesh.grpc_channel``) through the mesh; the difference is
what the mesh adds (``rss_added_mb``). Measured plaintext (no token) and with a join
token (``rss_mtls_mb``: the workload certificate, the mesh's mTLS to the mTLS
servers). ``rss_beyond_bare_mb``: plaintext again, the baseline taken after one bare
httpx call and one bare gRPC call to the same servers, so the clients' own first-call
costs (grpc-core's start, httpx's transport and TLS context) are not counted.
Not a test: the numbers depend on the versions installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

REPEATS = 5
WARMUP = 50
RSS_TIMEOUT_S = 120.0
ECHO_METHOD = "/bench.Echo/Ping"  # bench_clients.ECHO_METHOD (not imported: the child imports none)


def rss_bytes() -> int:
    """The resident set size of this process (Linux)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In this fresh process: the RSS a mesh adds with one HTTP and one gRPC call."""
    import grpc
    import grpc.aio
    import httpx

    if spec.get("bare_url"):  # the bare clients' first calls, before the baseline
        with httpx.Client() as bare_http:
            bare_http.get(spec["bare_url"]).raise_for_status()
        with grpc.insecure_channel(spec["bare_target"]) as bare_channel:
            bare_channel.unary_unary(ECHO_METHOD)(b"x" * 64, timeout=RSS_TIMEOUT_S)
    before = rss_bytes()
    import meshlib

    with meshlib.Mesh(bootstrap=spec["bootstrap"], token=spec.get("token")) as mesh:
        with mesh.http_client() as http:
            http.get(spec["url"]).raise_for_status()
        with mesh.grpc_channel(spec["target"]) as channel:
            channel.unary_unary(ECHO_METHOD)(b"x" * 64, timeout=RSS_TIMEOUT_S)
        added = rss_bytes() - before
    return {
        "rss_mb": round(added / 2**20, 1),
        "modules": sorted(m for m in ("cryptography", "jwt") if m in sys.modules),
    }


def measure_rss(**spec: Any) -> dict[str, Any]:
    """:func:`rss_child` run in a fresh interpreter (this one holds the bench modules)."""
    done = subprocess.run(
        [sys.executable, __file__, "--rss-child", json.dumps(spec, default=str)],
        check=True, capture_output=True, text=True, timeout=RSS_TIMEOUT_S,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def memory(stack: Any) -> dict[str, Any]:
    """The three memory figures of the module docstring, over the running ``stack``."""
    from bench_stack import (
        GRPC_HOST,
        GRPC_MTLS_HOST,
        GRPC_PORT,
        HTTP_HOST,
        HTTP_MTLS_HOST,
        HTTP_PORT,
    )

    plain = {
        "bootstrap": stack.bootstrap,
        "url": f"http://{HTTP_HOST}:{HTTP_PORT}/ping",
        "target": f"xds:///{GRPC_HOST}:{GRPC_PORT}",
    }
    added = measure_rss(**plain)
    mtls = measure_rss(
        bootstrap=stack.bootstrap,
        url=f"http://{HTTP_MTLS_HOST}:{HTTP_PORT}/ping",
        target=f"xds:///{GRPC_MTLS_HOST}:{GRPC_PORT}",
        token=stack.client_token,
    )
    beyond = measure_rss(
        **plain,
        bare_url=f"http://127.0.0.1:{stack.http_port}/ping",
        bare_target=f"127.0.0.1:{stack.grpc_port}",
    )
    return {
        "rss_added_mb": added["rss_mb"],
        "plaintext loads": ", ".join(added["modules"]) or "no cryptography, no jwt",
        "rss_mtls_mb": mtls["rss_mb"],
        "rss_beyond_bare_mb": beyond["rss_mb"],
    }


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
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        print(json.dumps(rss_child(json.loads(args.rss_child))))
        return 0
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
        results.update(memory(stack))
        http = next(v for v in http_sync_variants(stack, mesh) if v.client == "meshlib")
        grpc_ = next(v for v in grpc_sync_variants(stack, mesh) if v.client == "meshlib")
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
