"""Tolerances for traffic splits, derived from the sample size instead of guessed.

A client that sends each of ``n`` calls to a destination with probability ``p``
(independently, as Envoy's and gRPC's weighted pickers do) delivers a count
``X ~ Binomial(n, p)``: mean ``n*p``, standard deviation ``sd = sqrt(n*p*(1-p))``.
We accept ``|X - n*p| <= k*sd + 0.5`` (the 0.5 is the continuity correction of
the normal approximation). With ``k = 5`` a correct client fails by chance about
once in 1.7 million runs (two-sided normal tail, 5.7e-7), while a client that is
off by more than ``k*sd / n`` in proportion is caught. A deterministic picker
(meshlib's weighted schedule) lands within a call or two of ``n*p`` and passes too.

Example: n = 2000, p = 0.20 -> mean 400, sd 17.9, 5 sd -> 400 +/- 89.9;
p = 0.01 -> mean 20, sd 4.45, 5 sd -> 20 +/- 22.7 (so 0..42 calls).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

DEFAULT_SIGMAS = 5.0


def binomial_bounds(n: int, p: float, sigmas: float = DEFAULT_SIGMAS) -> tuple[float, float]:
    """The accepted range of counts for ``n`` trials at probability ``p``."""
    if n <= 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need n > 0 and 0 <= p <= 1, got n={n}, p={p}")
    mean = n * p
    slack = sigmas * math.sqrt(n * p * (1.0 - p)) + 0.5
    return max(0.0, mean - slack), min(float(n), mean + slack)


def split_problems(
    counts: Mapping[str, int],
    expected: Mapping[str, float],
    sigmas: float = DEFAULT_SIGMAS,
) -> list[str]:
    """Why ``counts`` is not the ``expected`` split (proportions summing to 1); [] when it is.

    Every outcome must be one of the expected keys (an error or a stray backend
    is a problem, not noise).
    """
    n = sum(counts.values())
    problems = [
        f"unexpected outcome {key!r} x{counts[key]}" for key in counts if key not in expected
    ]
    for key, p in expected.items():
        low, high = binomial_bounds(n, p, sigmas)
        seen = counts.get(key, 0)
        if not low <= seen <= high:
            problems.append(
                f"{key}: {seen}/{n} calls, expected {n * p:.1f} within [{low:.1f}, {high:.1f}] "
                f"({sigmas:g} sd of Binomial({n}, {p}))"
            )
    return problems


def tally(outcomes: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
