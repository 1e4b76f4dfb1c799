"""Microbenchmark: route match + endpoint pick, and applying an EDS update.

Not a test. For 1, 100 and 10,000 endpoints and 1, 50 and 500 routes (the
request matches the LAST route: the worst case for a linear scan), per LB
policy, it times ``RouteTable.match`` followed by ``ClusterState.picker.pick``
(hash policies get a per-request hash, as a route hash policy would give),
and the time ``build_cluster_state`` takes to apply an EDS update of 10,000
endpoints. It also times ``RouteTable.match`` alone on two route shapes
(``prefix``: one prefix per route; ``mixed``: exact, case-insensitive prefix,
header-matched and, every 25th, regex routes; at 50 and 500 routes the last,
matching route is a regex, so one RE2 full match is in the figure) and the
Maglev table build for 10,000 endpoints. Prints tables; ``--json FILE`` also
writes the figures. Timings are wall clock: on a shared machine, read the
fastest run as the code's own cost and the median as what the load allowed.

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

from meshlib.balancing._maglev import build_table
from meshlib.balancing.picker import PickContext
from meshlib.routing._route_table import RouteTable
from meshlib.routing.snapshot import ClusterState, build_cluster_state
from meshlib.xds_client.resources import (
    ClusterResource,
    ClusterType,
    Endpoint,
    EndpointsResource,
    HeaderMatcher,
    HeaderMatchKind,
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


def mixed_route(i: int) -> Route:
    """Route ``i`` of the ``mixed`` shape; every shape matches ``/svc{i}/items``."""
    action = RouteAction(cluster="bench")
    if i % 25 == 24:
        return Route(f"r{i}", RouteMatch(PathMatchKind.SAFE_REGEX, f"/svc{i}/[a-z]+"), action)
    if i % 4 == 1:
        return Route(f"r{i}", RouteMatch(PathMatchKind.PATH, f"/svc{i}/items"), action)
    if i % 4 == 2:
        match = RouteMatch(PathMatchKind.PREFIX, f"/SVC{i}/", case_sensitive=False)
        return Route(f"r{i}", match, action)
    if i % 4 == 3:
        header = HeaderMatcher("x-tenant", HeaderMatchKind.EXACT, "bench")
        return Route(
            f"r{i}", RouteMatch(PathMatchKind.PREFIX, f"/svc{i}/", headers=(header,)), action
        )
    return Route(f"r{i}", RouteMatch(PathMatchKind.PREFIX, f"/svc{i}/"), action)


def mixed_table(routes: int) -> RouteTable:
    vhost = VirtualHost("bench", (AUTHORITY,), tuple(mixed_route(i) for i in range(routes)))
    return RouteTable(RouteConfigResource("bench", (vhost,)))


def bench_match(shape: str, routes: int, seconds: float) -> float:
    """µs per ``RouteTable.match`` for a request that matches the last route."""
    table = route_table(routes) if shape == "prefix" else mixed_table(routes)
    path = f"/svc{routes - 1}/items"
    headers = {"x-tenant": "bench"}
    last = f"r{routes - 1}"
    assert table.match(AUTHORITY, path, headers).route.name == last
    return time_per_call(lambda: table.match(AUTHORITY, path, headers), seconds)


def bench_maglev_table(endpoints: int, repeats: int) -> tuple[float, float]:
    """(median, fastest) milliseconds to build the default (65,537-slot) Maglev table."""
    resource = endpoints_resource(endpoints)
    hosts = [e for loc in resource.localities for e in loc.endpoints]
    weighted = [(e, 1 / len(hosts)) for e in hosts]
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        build_table(weighted, 65537)
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples), min(samples)


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


def bench_update(policy: str, endpoints: int, repeats: int) -> tuple[float, float]:
    """(median, fastest) milliseconds to apply an EDS update (new endpoint set) to a
    live cluster. On a shared machine the fastest run is the code's own cost."""
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
    return statistics.median(samples), min(samples)


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
    matches: list[dict[str, object]] = []
    print(f"\n{'route shape':<14}{'routes':>8}{'us/match':>10}")
    for shape in ("prefix", "mixed"):
        for routes in ROUTE_COUNTS:
            us = bench_match(shape, routes, budget)
            matches.append({"shape": shape, "routes": routes, "us_per_match": round(us, 3)})
            print(f"{shape:<14}{routes:>8}{us:>10.2f}", flush=True)
    updates: list[dict[str, object]] = []
    repeats = 3 if args.quick else 7
    print(f"\n{'policy':<14}{'endpoints':>10}{'ms/EDS update':>16}{'fastest':>10}")
    for policy in POLICIES:
        ms, fastest = bench_update(policy, 10_000, repeats)
        updates.append(
            {
                "policy": policy,
                "endpoints": 10_000,
                "ms_per_update": round(ms, 2),
                "fastest_ms": round(fastest, 2),
            }
        )
        print(f"{policy:<14}{10_000:>10}{ms:>16.1f}{fastest:>10.1f}", flush=True)
    maglev_ms, maglev_fastest = bench_maglev_table(10_000, repeats)
    print(
        f"\nmaglev table build, 10000 endpoints, 65537 slots: {maglev_ms:.1f} ms "
        f"(fastest {maglev_fastest:.1f} ms)"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            figures = {
                "python": sys.version,
                "picks": picks,
                "matches": matches,
                "updates": updates,
                "maglev_table_ms": round(maglev_ms, 2),
                "maglev_table_fastest_ms": round(maglev_fastest, 2),
            }
            json.dump(figures, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
