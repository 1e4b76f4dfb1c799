"""Garbage collector settings for a process that holds a fleet's streams.

CPython collects its young generation every 700 allocations and, now and then,
walks every tracked object. A fleet connecting allocates a few hundred objects
per stream and keeps most of them, and every change allocates again per
client, so with the defaults the collector keeps walking thousands of
long-lived streams (a tenth of the control plane's CPU while a fleet connects).
Once serving, what start-up loaded (modules, config, the first translations)
is frozen out of every collection, and collections run less often: cyclic
garbage lives a little longer, a few MB at most.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)  # young allocations, young runs per middle, middle per old


def settle_after_start() -> None:
    """Call once, when the control plane serves (see the module docstring)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
