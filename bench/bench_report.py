"""Statistics per client and the side-by-side table with ratios to the bare client."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bench_clients import BARE


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Result:
    group: str
    client: str
    calls: int
    median_ms: float
    p99_ms: float
    sequential_rps: float
    concurrent_rps: float
    round_medians_ms: tuple[float, ...] = ()
    # meshlib (or grpcio xds) / bare of the same group; 1.0 for the bare client itself.
    # median_ratio pairs the clients round by round (median of the per-round ratios),
    # so load that drifts between rounds on a shared machine cancels out.
    median_ratio: float | None = None
    p99_ratio: float | None = None
    concurrent_rps_ratio: float | None = None

    @classmethod
    def from_samples(
        cls,
        group: str,
        client: str,
        latencies_ns: Sequence[int],
        *,
        round_medians_ns: Sequence[float],
        sequential_s: float,
        concurrent_calls: int,
        concurrent_s: float,
    ) -> Result:
        ordered = sorted(latencies_ns)
        return cls(
            group=group,
            client=client,
            calls=len(ordered),
            median_ms=percentile(ordered, 0.5) / 1e6,
            p99_ms=percentile(ordered, 0.99) / 1e6,
            sequential_rps=len(ordered) / sequential_s,
            concurrent_rps=concurrent_calls / concurrent_s,
            round_medians_ms=tuple(round(median / 1e6, 4) for median in round_medians_ns),
        )


def paired_ratio(result: Result, base: Result) -> float:
    """Median over rounds of (this client's round median / the bare client's)."""
    pairs = zip(result.round_medians_ms, base.round_medians_ms, strict=True)
    return statistics.median(mine / bare for mine, bare in pairs)


def with_ratios(results: Sequence[Result]) -> list[Result]:
    """Each result with its ratios to the bare client of its group."""
    bare = {result.group: result for result in results if result.client == BARE}
    rated = []
    for result in results:
        base = bare.get(result.group)
        if base is None:
            rated.append(result)
            continue
        rated.append(
            replace(
                result,
                median_ratio=round(paired_ratio(result, base), 3),
                p99_ratio=round(result.p99_ms / base.p99_ms, 3),
                concurrent_rps_ratio=round(result.concurrent_rps / base.concurrent_rps, 3),
            )
        )
    return rated


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_table(
    results: Sequence[Result], *, requests: int, concurrency: int, took_s: float
) -> None:
    header = (
        f"{'group':<16} {'client':<11} {'median ms':>9} {'p99 ms':>8} {'seq req/s':>10} "
        f"{'conc req/s':>10} {'median':>7} {'p99':>7} {'conc':>7}"
    )
    print(
        f"\nmeshlib overhead on loopback: {requests} sequential calls per client, "
        f"then {requests} more with {concurrency} concurrent callers"
    )
    print(f"{'':<69}{'ratio to bare':^24}")
    print(header)
    print("-" * len(header))
    for result in results:
        print(
            f"{result.group:<16} {result.client:<11} {result.median_ms:>9.3f} "
            f"{result.p99_ms:>8.3f} {result.sequential_rps:>10.0f} {result.concurrent_rps:>10.0f} "
            f"{_ratio(result.median_ratio):>7} {_ratio(result.p99_ratio):>7} "
            f"{_ratio(result.concurrent_rps_ratio):>7}"
        )
    print(
        f"\n(took {took_s:.1f} s; ratio > 1 = slower for median/p99, fewer req/s for conc < 1;"
        "\n the median ratio is the median of per-round ratios, clients taking turns each round)"
    )
