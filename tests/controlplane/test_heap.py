"""The control plane's collector settings once serving (in a fresh interpreter: they
are process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

from controlplane.heap import THRESHOLDS

PROBE = """
import gc, json
from controlplane.heap import settle_after_start
before = gc.get_freeze_count()
settle_after_start()
seen = {"frozen": gc.get_freeze_count(), "thresholds": gc.get_threshold()}
print(json.dumps({"before": before, **seen}))
"""


def test_start_up_objects_are_frozen_and_collections_run_less_often() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(result.stdout)
    assert seen["before"] == 0 and seen["frozen"] > 1000  # the modules loaded, at least
    assert tuple(seen["thresholds"]) == THRESHOLDS
    assert THRESHOLDS[0] > 700  # CPython's default young threshold
