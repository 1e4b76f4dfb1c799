"""The CPU of a config change's check and rebuild, without clients.

    python bench/cp_change_check.py                 # 200 services, 49 routed, 20 changes
    python bench/cp_change_check.py --profile       # and where the time goes

Builds the config of bench/cp_scale.py (one file per service) in a temporary
folder, loads it as the control plane does (``read_files`` + ``compose``, so
unchanged documents keep their parsed resources), connects one proxyless
node, then edits svc-000's VirtualService (its timeout) again and again: per
edit, the thread CPU of the load, of ``SnapshotUpdater.check`` (the trial
translations for a proxyless client, an Envoy sidecar and the connected
shape, and the ambiguity check) and of the rebuild that follows. Then the same
for registrations that each make a service (a host no ServiceEntry declares),
as the registration admission checks them.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cp_scale import service_yaml, write_config

from controlplane.endpoint_translate import EndpointTranslate
from controlplane.layers import compose, read_files
from controlplane.model import NodeInfo, RegisteredWorkload
from controlplane.xds.cache import SnapshotCache
from controlplane.xds.updater import SnapshotUpdater

EDITS: dict[str, Callable[[int], str]] = {
    "vs": lambda odd: service_yaml(0, True, 6 + odd),
    "dr": lambda odd: service_yaml(0, True).replace(
        "LEAST_REQUEST", "ROUND_ROBIN" if odd else "RANDOM"
    ),
    "se": lambda odd: service_yaml(0, True).replace("10.0.0.5,", f"10.0.0.{6 + odd},"),
    "pa": lambda odd: (
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
        "metadata: {name: default, namespace: bench}\n"
        f"spec: {{mtls: {{mode: {'STRICT' if odd else 'PERMISSIVE'}}}}}\n"
    ),
}
# The file each edit writes.
EDITED = {"vs": "svc-000.yaml", "dr": "svc-000.yaml", "se": "svc-000.yaml", "pa": "peer.yaml"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--routed", type=int, default=49)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument(
        "--edit",
        choices=sorted(EDITS),
        default="vs",
        help="what each change edits in svc-000.yaml: its VirtualService's timeout (vs), "
        "its DestinationRule's load balancer (dr) or one of its ServiceEntry's endpoints (se); "
        "or the namespace's PeerAuthentication mode (pa, in peer.yaml)",
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cp-change-") as tmp:
        folder = Path(tmp)
        write_config(folder, args.services, args.routed)
        (folder / EDITED[args.edit]).write_text(EDITS[args.edit](1))
        updater = SnapshotUpdater(SnapshotCache(), EndpointTranslate())
        config = compose(read_files(folder), {})
        updater.check(config=config)
        updater.set_inputs(config=config)
        updater.connect(NodeInfo(id="bench-00000", cluster="bench"))
        updater.rebuild()
        loads, checks, rebuilds = [], [], []
        profile = cProfile.Profile() if args.profile else None
        for change in range(args.changes):
            (folder / EDITED[args.edit]).write_text(EDITS[args.edit](change % 2))
            t0 = time.thread_time()
            config = compose(read_files(folder), {})
            t1 = time.thread_time()
            if profile is not None:
                profile.enable()
            updater.check(config=config)
            t2 = time.thread_time()
            updater.set_inputs(config=config)
            updater.rebuild()
            t3 = time.thread_time()
            if profile is not None:
                profile.disable()
            loads.append(t1 - t0)
            checks.append(t2 - t1)
            rebuilds.append(t3 - t2)
        registrations: list[float] = []
        workloads: list[RegisteredWorkload] = []
        for index in range(args.changes):
            address = f"10.250.{index // 250}.{index % 250 + 1}"
            workloads.append(
                RegisteredWorkload(
                    f"new-{index}", f"new-{index}", address, {80: 8080}, namespace="bench"
                )
            )
            t0 = time.thread_time()
            updater.check(workloads=workloads)
            updater.set_inputs(workloads=workloads)
            updater.rebuild()
            registrations.append(time.thread_time() - t0)
    print(
        f"{args.services} services, {args.routed} routed, {args.changes} changes ({args.edit}); "
        "thread CPU ms, median (min-max):"
    )
    for what, values in (
        ("load", loads),
        ("check", checks),
        ("rebuild", rebuilds),
        ("new service: check + rebuild", registrations),
    ):
        print(
            f"  {what:28} {statistics.median(values) * 1e3:7.1f} "
            f"({min(values) * 1e3:.1f}-{max(values) * 1e3:.1f})"
        )
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
