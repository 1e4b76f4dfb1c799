"""Fuzz meshlib's xDS client through a real ADS stream, tens of thousands of cases.

Not a test: ``tests/xds_client/test_fuzz_ads.py`` runs a few hundred cases in
CI with the same harness (``tests/xds_client/fuzz_harness.py``). A loopback ADS
server pushes mutated resources of every type (out-of-range enums, emptied and
deleted messages, odd and huge strings and numbers, wrong ``Any`` types,
duplicate names, corrupt bytes) at one XdsClient; every push must be ACKed or
NACKed within the bound, the last good config must keep routing, and no
exception may escape. A seed replays the same cases; a failure prints its case
number and mutations. Exits 1 when any case failed.

    python bench/fuzz_xds.py [--seed N] [--cases N] [--answer-bound S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness lives in tests/

from tests.xds_client.fuzz_harness import CaseMaker, fuzz_setup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--answer-bound", type=float, default=1.0, help="seconds per ACK/NACK")
    parser.add_argument("--stop-after", type=int, default=20, help="failures before stopping")
    args = parser.parse_args()

    started = time.monotonic()
    maker = CaseMaker(args.seed)
    with fuzz_setup(answer_bound_s=args.answer_bound) as (fuzzer, crash_log):
        for index in range(args.cases):
            fuzzer.run_case(maker.make(index))
            if len(fuzzer.report.failures) >= args.stop_after:
                print(f"stopping after {len(fuzzer.report.failures)} failures", flush=True)
                break
            if (index + 1) % 1000 == 0:
                print(f"{index + 1} cases, {time.monotonic() - started:.0f}s", flush=True)
        if fuzzer.ads.stream_count() != 1:
            fuzzer.report.failures.append(f"the ADS stream restarted ({fuzzer.ads.stream_count()})")
        report = fuzzer.report
    elapsed = time.monotonic() - started
    print(f"seed {args.seed}: {report.summary()}; {elapsed:.0f}s")
    for failure in report.failures:
        print(f"FAILED {failure[:1000]}")
    for record in crash_log.records:
        print(f"CRASH {record}")
    return 1 if report.failures or crash_log.records else 0


if __name__ == "__main__":
    sys.exit(main())
