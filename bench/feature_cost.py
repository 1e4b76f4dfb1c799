"""What each resilience feature costs a gRPC call, in place (after the network wait).

    python bench/feature_cost.py                  # every variant, 3000 calls each
    python bench/feature_cost.py --calls 1000 --only defaults,all

For each variant the stack (bench_stack.py) is started with bench_stack's
all-features config minus some features, and bare grpcio and meshlib's sync
channel call the same server, interleaved call by call in 10 rounds. Printed:
the median of the per-round ratios (meshlib / bare) and of the per-round
differences in µs. Variants: ``defaults`` (ServiceEntry only: Istio's default
retry policy, meshlib's default budget and thresholds), ``all`` (everything, plus
a failure-rate breaker), and ``all`` minus one feature each. Not a test: the
numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any
from unittest import mock

import bench_stack
import grpc
from bench_clients import ECHO_METHOD, PAYLOAD
from bench_stack import GRPC_HOST, GRPC_PORT, register_breakers, running_stack

import meshlib

VARIANTS: dict[str, set[str]] = {
    "defaults": {"routes", "policy", "breaker"},
    "all": set(),
    "all - breaker": {"breaker"},
    "all - rate limit": {"rate-limit"},
    "all - fault headers": {"fault-headers"},
    "all - timeouts": {"timeouts"},
    "all - outlier detection": {"outlier"},
}


def config_without(drop: set[str]) -> Any:
    """bench_stack.mesh_config with the features in ``drop`` left out."""
    full = bench_stack.mesh_config

    def config(*ports: int) -> list[dict[str, Any]]:
        docs = []
        for doc in full(*ports):
            kind = doc["kind"]
            if kind == "VirtualService":
                if "routes" in drop:
                    continue
                notes = doc["metadata"]["annotations"]
                if "rate-limit" in drop:
                    notes.pop("meshlib.dev/local-rate-limit")
                if "fault-headers" in drop:
                    notes.pop("meshlib.dev/fault-headers")
                if "timeouts" in drop:
                    rule = doc["spec"]["http"][0]
                    rule.pop("timeout")
                    rule["retries"].pop("perTryTimeout")
            elif kind == "DestinationRule":
                if "policy" in drop:
                    continue
                if "outlier" in drop:
                    doc["spec"]["trafficPolicy"].pop("outlierDetection")
            docs.append(doc)
        return docs

    return config


def measure(drop: set[str], calls: int) -> tuple[float, float]:
    with (
        mock.patch.object(bench_stack, "mesh_config", config_without(drop)),
        running_stack() as stack,
        meshlib.Mesh(bootstrap=str(stack.bootstrap)) as mesh,
    ):
        if "breaker" not in drop:
            register_breakers()
        bare_channel = grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port}")
        mesh_channel = mesh.grpc_channel(f"xds:///{GRPC_HOST}:{GRPC_PORT}")
        try:
            return _rounds(
                bare_channel.unary_unary(ECHO_METHOD),
                mesh_channel.unary_unary(ECHO_METHOD),
                calls,
            )
        finally:
            bare_channel.close()
            mesh_channel.close()


def _rounds(bare: Any, meshed: Any, calls: int) -> tuple[float, float]:
    deadline = time.monotonic() + 15
    while True:  # the first call may wait for xDS
        try:
            meshed(PAYLOAD, timeout=5)
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    for _ in range(300):
        bare(PAYLOAD, timeout=5)
        meshed(PAYLOAD, timeout=5)
    ratios, differences = [], []
    for _ in range(10):
        bare_ns, mesh_ns = [], []
        for _ in range(max(1, calls // 10)):
            started = time.perf_counter_ns()
            bare(PAYLOAD, timeout=5)
            bare_ns.append(time.perf_counter_ns() - started)
            started = time.perf_counter_ns()
            meshed(PAYLOAD, timeout=5)
            mesh_ns.append(time.perf_counter_ns() - started)
        bare_median, mesh_median = statistics.median(bare_ns), statistics.median(mesh_ns)
        ratios.append(mesh_median / bare_median)
        differences.append((mesh_median - bare_median) / 1000)
    return statistics.median(ratios), statistics.median(differences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="measured calls per client")
    parser.add_argument("--only", help="comma-separated variant names")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(VARIANTS)
    print(f"gRPC sync, meshlib vs bare grpcio, {args.calls} interleaved calls per variant")
    print(f"{'variant':<26} {'median ratio':>12} {'extra µs':>9}")
    for name in names:
        ratio, extra = measure(VARIANTS[name], args.calls)
        print(f"{name:<26} {ratio:>11.3f}x {extra:>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
