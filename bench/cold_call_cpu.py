"""Thread CPU one sync gRPC call adds over the bare client's, each call run cold.

    python bench/cold_call_cpu.py                 # 3000 rounds, about 30 s
    python bench/cold_call_cpu.py --rounds 2000

Starts the bench stack (bench_stack.py), warms the three sync gRPC clients of
``overhead.py``'s group up (bare, meshlib, grpcio's ``xds:///``), then in each round
calls each once after a 0.4 ms sleep (other processes run and evict the caches, as a
real call follows its network wait) and reads the calling thread's CPU time around the
call. Prints the median, over the rounds, of each client's CPU minus the bare client's
in the same round (µs). Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

WARMUP = 300
SLEEP_S = 0.0004


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3000, help="calls per client")
    args = parser.parse_args(argv)
    from bench_clients import grpc_sync_variants
    from bench_stack import running_stack

    import meshlib

    cpu = time.thread_time_ns
    with running_stack() as stack, meshlib.Mesh(bootstrap=str(stack.bootstrap)) as mesh:
        os.environ["GRPC_XDS_BOOTSTRAP"] = str(stack.bootstrap)  # grpcio's own xDS client
        variants = grpc_sync_variants(stack, mesh)
        for variant in variants:
            for _ in range(WARMUP):
                variant.call()
        excess: dict[str, list[int]] = {v.client: [] for v in variants[1:]}
        for _ in range(args.rounds):
            spent = {}
            for variant in variants:
                time.sleep(SLEEP_S)
                started = cpu()
                variant.call()
                spent[variant.client] = cpu() - started
            bare = spent[variants[0].client]
            for client, values in excess.items():
                values.append(spent[client] - bare)
        for variant in variants:
            variant.close()
    for client, values in excess.items():
        print(f"{client:>12}: {statistics.median(values) / 1000:.1f} µs CPU over bare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
