"""Statistical tolerances derived from the sample size, not guessed.

A count of hits in ``n`` independent draws with probability ``p`` is
Binomial(n, p): mean ``n p``, standard deviation ``sqrt(n p (1 - p))``. The
tests allow :data:`SIGMAS` standard deviations (5 sigma: a false failure about
once in 1.7 million runs per check), and seed the random generator so a run
is reproducible anyway.
"""

from __future__ import annotations

import math

SIGMAS = 5.0


def binomial_tolerance(n: int, p: float, sigmas: float = SIGMAS) -> float:
    """The allowed distance of a count from ``n * p``."""
    return sigmas * math.sqrt(n * p * (1.0 - p))


def assert_binomial(count: int, n: int, p: float, what: str = "count") -> None:
    expected = n * p
    allowed = binomial_tolerance(n, p)
    assert abs(count - expected) <= allowed, (
        f"{what}: {count} of {n}, expected {expected:.1f} ± {allowed:.1f} (p={p})"
    )
