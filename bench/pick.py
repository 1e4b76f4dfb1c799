"""Microbenchmark: route match + endpoint pick, and applying an EDS update.

Not a test. For 1, 100 and 10,000 endpoints and 1, 50 and 500 routes (the
request matches the LAST route: the worst case of first-match-wins), per LB
policy, it times ``RouteTable.match`` followed by ``ClusterState.picker.pick``
(hash policies get a per-request hash, as a route hash policy would give),
and the time ``build_cluster_state`` takes to apply an EDS update of 10,000
endpoints. Prints a table; ``--json FILE`` also writes the figures.

    python bench/pick.py [--json FILE] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import xxhash

from meshlib.balancing.picker import PickContext
from meshlib.routing.route_table import RouteTable
from meshlib.routing.snapshot import ClusterState, build_cluster_state
from meshlib.xds_client.resources import (
    ClusterResource,
    ClusterType,
    Endpoint,
    EndpointsResource,
    HealthStatus,
    Locality,
    LocalityEndpoints,
    PathMatchKind,
    Route,
    RouteAction,
    RouteConfigResource,
    RouteMatch,
    VirtualHost,
)

POLICIES = ("round_robin", "least_request", "random", "ring_hash", "maglev")
ENDPOINT_COUNTS = (1, 100, 10_000)
ROUTE_COUNTS = (1, 50, 500)
AUTHORITY = "bench:80"


def endpoints_resource(count: int, zones: int = 3, version: int = 0) -> EndpointsResource:
    per_zone: list[list[Endpoint]] = [[] for _ in range(min(zones, count))]
    for i in range(count):
        address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        per_zone[i % len(per_zone)].append(
            Endpoint(address, 8000 + version, HealthStatus.HEALTHY, 1)
        )
    localities = tuple(
        LocalityEndpoints(Locality("region", f"zone-{z}"), 1, 0, tuple(eps))
        for z, eps in enumerate(per_zone)
    )
    return EndpointsResource("bench", localities)


def cluster_resource(policy: str) -> ClusterResource:
    return ClusterResource("bench", ClusterType.EDS, "bench", lb_policy=policy)


def route_table(routes: int) -> RouteTable:
    table = tuple(
        Route(
            f"r{i}",
            RouteMatch(PathMatchKind.PREFIX, f"/svc{i}/"),
            RouteAction(cluster="bench"),
        )
        for i in range(routes)
    )
    vhost = VirtualHost("bench", (AUTHORITY,), table)
    return RouteTable(RouteConfigResource("bench", (vhost,)))


def time_per_call(fn: Callable[[], object], seconds: float) -> float:
    """Median microseconds per call over a few timed batches."""
    batch = 1000
    start = time.perf_counter()
    while True:  # size the batch to ~1/5 of the budget
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed > seconds / 20 or time.perf_counter() - start > seconds:
            break
        batch *= 2
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch * 1e6)
    return statistics.median(samples)


def bench_pick(policy: str, endpoints: int, routes: int, seconds: float) -> tuple[float, float]:
    """(µs per route match + pick, µs per pick alone)."""
    state: ClusterState = build_cluster_state(
        cluster_resource(policy), endpoints_resource(endpoints)
    )
    table = route_table(routes)
    path = f"/svc{routes - 1}/items"
    headers: dict[str, str] = {}
    hashes = [xxhash.xxh64_intdigest(str(i).encode()) for i in range(1024)]
    contexts = [PickContext(request_hash=h) for h in hashes]
    hashed = policy in ("ring_hash", "maglev")
    counter = iter(range(1 << 62))
    clusters = {"bench": state}

    def one() -> object:
        result = table.match(AUTHORITY, path, headers)
        picker = clusters[result.cluster].picker
        if hashed:
            return picker.pick(contexts[next(counter) & 1023])
        return picker.pick()

    def pick_only() -> object:
        picker = state.picker
        if hashed:
            return picker.pick(contexts[next(counter) & 1023])
        return picker.pick()

    return time_per_call(one, seconds), time_per_call(pick_only, seconds / 2)


def bench_update(policy: str, endpoints: int, repeats: int) -> float:
    """Milliseconds to apply an EDS update (new endpoint set) to a live cluster."""
    cluster = cluster_resource(policy)
    state = build_cluster_state(cluster, endpoints_resource(endpoints))
    runtime = state.reporter
    assert runtime is not None
    samples = []
    for version in range(1, repeats + 1):
        resource = endpoints_resource(endpoints, version=version)
        t0 = time.perf_counter()
        build_cluster_state(cluster, resource, runtime)  # type: ignore[arg-type]
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="shorter timing budget")
    args = parser.parse_args(argv)
    budget = 0.2 if args.quick else 0.6
    picks: list[dict[str, object]] = []
    print(f"{'policy':<14}{'endpoints':>10}{'routes':>8}{'us/match+pick':>15}{'us/pick':>10}")
    for policy in POLICIES:
        for endpoints in ENDPOINT_COUNTS:
            for routes in ROUTE_COUNTS:
                both, alone = bench_pick(policy, endpoints, routes, budget)
                picks.append(
                    {
                        "policy": policy,
                        "endpoints": endpoints,
                        "routes": routes,
                        "us_per_match_and_pick": round(both, 3),
                        "us_per_pick": round(alone, 3),
                    }
                )
                print(
                    f"{policy:<14}{endpoints:>10}{routes:>8}{both:>15.2f}{alone:>10.2f}", flush=True
                )
    updates: list[dict[str, object]] = []
    print(f"\n{'policy':<14}{'endpoints':>10}{'ms/EDS update':>16}")
    for policy in POLICIES:
        ms = bench_update(policy, 10_000, 3 if args.quick else 5)
        updates.append({"policy": policy, "endpoints": 10_000, "ms_per_update": round(ms, 2)})
        print(f"{policy:<14}{10_000:>10}{ms:>16.1f}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"python": sys.version, "picks": picks, "updates": updates}, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
