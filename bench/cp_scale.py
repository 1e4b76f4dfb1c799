"""Control-plane scale: how many xDS clients one control plane serves.

    python bench/cp_scale.py                         # 100 -> 1,000 -> 5,000 clients
    python bench/cp_scale.py --max-clients 1000 --services 200 --procs 2

Starts ``mesh-controlplane serve`` on a generated config folder (one file per
service: a ServiceEntry with 5 endpoints; the first ``--routed`` services also
get a VirtualService and a DestinationRule with two subsets), then ramps
connected clients. The clients are simulated in ``--procs`` separate
processes (see bench/cp_scale_fleet.py: grpc.aio, many raw-bytes ADS streams
per process, ``--streams-per-channel`` streams per HTTP/2 connection), each its
own stream and node id, subscribing as grpcio's proxyless client does: LDS for
``--targets`` services (the first, svc-000, common to all), and the RDS, CDS
and EDS names they need.

Per step it measures: connect + initial sync time of the new clients (until
every one has all four types), convergence of a config change (an edit of
svc-000's VirtualService, which every client uses: time from the file write
to each client receiving the new route configuration), right after the
connects and again once steady, the control plane's RSS per client and its
CPU time. At the largest step it runs registration churn: ``--churn-callers``
concurrent Register/Deregister calls for ``--churn-s`` seconds on a service no
client uses, and counts the pushes the clients got meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cp_scale_fleet import CDS, EDS, LDS, RDS, worker_main

ENDPOINTS = 5
PORT = 50051


# --- config ----------------------------------------------------------------


def service_yaml(index: int, routed: bool, timeout_s: int = 5) -> str:
    name = f"svc-{index:03d}"
    endpoints = "\n".join(
        f"  - {{address: 10.{index // 250}.{index % 250}.{e + 1}, ports: {{grpc: {PORT}}}, "
        f"labels: {{version: v{1 + e % 2}}}}}"
        for e in range(ENDPOINTS)
    )
    text = (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata: {{name: {name}, namespace: bench}}\n"
        f"spec:\n  hosts: [{name}]\n"
        f"  ports: [{{number: {PORT}, name: grpc, protocol: GRPC}}]\n"
        f"  resolution: STATIC\n  endpoints:\n{endpoints}\n"
    )
    if routed:
        text += (
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
            f"metadata: {{name: {name}, namespace: bench}}\n"
            f"spec:\n  hosts: [{name}]\n  http:\n"
            "  - match: [{headers: {x-canary: {exact: 'yes'}}}]\n"
            f"    route: [{{destination: {{host: {name}, subset: v2}}}}]\n"
            f"  - timeout: {timeout_s}s\n"
            "    retries: {attempts: 2, retryOn: unavailable}\n"
            "    route:\n"
            f"    - {{destination: {{host: {name}, subset: v1}}, weight: 90}}\n"
            f"    - {{destination: {{host: {name}, subset: v2}}, weight: 10}}\n"
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
            f"metadata: {{name: {name}, namespace: bench}}\n"
            f"spec:\n  host: {name}\n"
            "  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\n"
            "  subsets:\n  - {name: v1, labels: {version: v1}}\n"
            "  - {name: v2, labels: {version: v2}}\n"
        )
    return text


CHURN_SERVICE = "svc-churn"


def write_config(folder: Path, services: int, routed: int) -> None:
    for index in range(services):
        (folder / f"svc-{index:03d}.yaml").write_text(service_yaml(index, index < routed))
    (folder / "churn.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata: {{name: {CHURN_SERVICE}, namespace: bench}}\n"
        f"spec:\n  hosts: [{CHURN_SERVICE}]\n"
        f"  ports: [{{number: {PORT}, name: grpc, protocol: GRPC}}]\n"
        "  resolution: STATIC\n  workloadSelector: {labels: {app: churn}}\n"
    )


def subscriptions(folder: Path, services: int, targets: int) -> list[dict[str, list[str]]]:
    """Per target set, what a proxyless client asks for: worked out from translate."""
    from controlplane.config.loader import load_config
    from controlplane.model import NodeInfo
    from controlplane.translate import translate
    from controlplane.xds.consistency import cluster_eds_names, listener_route_names

    resources = translate(load_config(folder), (), NodeInfo(id="bench-probe"))
    listeners = resources[LDS]
    by_service = {}
    for index in range(services):
        name = f"svc-{index:03d}"
        listener = next(n for n in listeners if n.startswith(name + ":") or n == name)
        routes = list(listener_route_names(listeners[listener]))  # type: ignore[arg-type]
        clusters = sorted({c for r in routes for c in _route_clusters(resources[RDS][r])})
        eds = sorted(
            {e for c in clusters for e in cluster_eds_names(resources[CDS][c])}  # type: ignore[arg-type]
        )
        by_service[index] = (listener, routes, clusters, eds)
    return [
        _union(
            [
                by_service[0],
                *(by_service[1 + (k * targets + j) % (services - 1)] for j in range(targets - 1)),
            ]
        )
        for k in range(services)
    ]


def _route_clusters(route_config: object) -> Iterator[str]:
    for host in route_config.virtual_hosts:  # type: ignore[attr-defined]
        for route in host.routes:
            if route.route.cluster:
                yield route.route.cluster
            for weighted in route.route.weighted_clusters.clusters:
                yield weighted.name


def _union(parts: Sequence[tuple[str, list[str], list[str], list[str]]]) -> dict[str, list[str]]:
    return {
        LDS: sorted({p[0] for p in parts}),
        RDS: sorted({r for p in parts for r in p[1]}),
        CDS: sorted({c for p in parts for c in p[2]}),
        EDS: sorted({e for p in parts for e in p[3]}),
    }


# --- the control plane -------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ControlPlane:
    def __init__(self, config: Path, log_path: Path) -> None:
        self.xds_port = free_port()
        self.admin_port = free_port()
        binary = Path(sys.executable).parent / "mesh-controlplane"
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                str(binary), "serve", "--config", str(config),
                "--xds-address", f"127.0.0.1:{self.xds_port}",
                "--admin-address", f"127.0.0.1:{self.admin_port}",
                "--log-level", "warning",
            ],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{self.admin_port}/readyz"
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            if self.process.poll() is not None:
                raise RuntimeError(f"control plane exited; see {log_path}")
            time.sleep(0.2)
        raise RuntimeError("control plane not ready in 60 s")

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


# --- the fleet ---------------------------------------------------------------


class Workers:
    def __init__(self, procs: int, target: str, streams_per_channel: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs = []
        for _ in range(procs):
            parent, child = context.Pipe()
            process = context.Process(
                target=worker_main, args=(child, target, streams_per_channel), daemon=True
            )
            process.start()
            self._conns.append(parent)
            self._procs.append(process)
        self.count = 0

    def _ask(self, command: str, *args: object) -> list[object]:
        for conn in self._conns:
            conn.send((command, args))
        return [conn.recv() for conn in self._conns]

    def connect(self, new: int, names: list[dict[str, list[str]]]) -> None:
        per: list[tuple[list[int], list[dict[str, list[str]]]]] = [([], []) for _ in self._conns]
        for index in range(self.count, self.count + new):
            indices, subs = per[index % len(per)]
            indices.append(index)
            subs.append(names[index % len(names)])
        for conn, (indices, subs) in zip(self._conns, per, strict=True):
            conn.send(("connect", (indices, subs)))
        for conn in self._conns:
            conn.recv()
        self.count += new

    def gather(self, command: str, *args: object) -> list[float | None]:
        return [value for part in self._ask(command, *args) for value in part]  # type: ignore[attr-defined]

    def errors(self) -> int:
        return sum(self._ask("errors"))  # type: ignore[arg-type]

    def trim(self) -> None:
        self._ask("trim")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._ask("stop")
        for process in self._procs:
            process.join(10)
            if process.is_alive():
                process.kill()


def wait_all(fetch: object, count: int, timeout_s: float, what: str) -> list[float | None]:
    start = time.monotonic()
    shown = start
    while True:
        values = fetch()  # type: ignore[operator]
        got = sum(v is not None for v in values)
        now = time.monotonic()
        if got >= count or now > start + timeout_s:
            return values  # type: ignore[no-any-return]
        if now - shown > 10:
            print(f"  {what}: {got} of {count} after {now - start:.0f} s", file=sys.stderr)
            shown = now
        time.sleep(0.1)


def quantiles(delays: list[float]) -> tuple[float, float, float]:
    if not delays:
        return (float("nan"),) * 3  # type: ignore[return-value]
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered), p99, ordered[-1]


def change(folder: Path, workers: Workers, timeout_s: int, count: int, wait_s: float) -> dict:
    workers.trim()
    t0 = time.time()
    (folder / "svc-000.yaml.tmp").write_text(service_yaml(0, True, timeout_s))
    os.replace(folder / "svc-000.yaml.tmp", folder / "svc-000.yaml")
    arrivals = wait_all(lambda: workers.gather("arrivals", t0, RDS), count, wait_s, "changed")
    delays = [t - t0 for t in arrivals if t is not None]
    p50, p99, worst = quantiles(delays)
    return {"got": len(delays), "p50": p50, "p99": p99, "max": worst}


async def churn(target: str, seconds: float, callers: int) -> dict:
    from meshlib._protos import registry_v1_pb2 as pb

    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        register = channel.unary_unary(
            "/meshlib.registry.v1.Registry/Register",
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        deregister = channel.unary_unary(
            "/meshlib.registry.v1.Registry/Deregister",
            request_serializer=pb.DeregisterRequest.SerializeToString,
            response_deserializer=pb.DeregisterResponse.FromString,
        )
        end = time.monotonic() + seconds
        failures = 0

        async def caller(k: int) -> None:
            nonlocal failures
            n = 0
            while time.monotonic() < end:
                n += 1
                start = time.monotonic()
                try:
                    if n % 2:
                        await register(pb.RegisterRequest(
                            service=CHURN_SERVICE, address=f"10.250.{k}.{n % 200 + 1}",
                            ports={PORT: PORT}, labels={"app": "churn"}, ttl_seconds=60,
                            id=f"churn-{k}",
                        ), timeout=30)  # fmt: skip
                    else:
                        await deregister(pb.DeregisterRequest(id=f"churn-{k}"), timeout=30)
                except grpc.aio.AioRpcError:
                    failures += 1
                    continue
                latencies.append(time.monotonic() - start)

        await asyncio.gather(*(caller(k) for k in range(callers)))
    p50, p99, worst = quantiles(latencies)
    return {
        "calls": len(latencies), "failures": failures, "rate": len(latencies) / seconds,
        "p50": p50, "p99": p99, "max": worst,
    }  # fmt: skip


# --- the run -----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-clients", type=int, default=5000)
    parser.add_argument("--steps", default="100,1000,5000", help="client counts to ramp through")
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--routed", type=int, default=49, help="services with a VS and a DR")
    parser.add_argument("--targets", type=int, default=3, help="services each client calls")
    parser.add_argument("--procs", type=int, default=8, help="client processes")
    parser.add_argument("--streams-per-channel", type=int, default=50)
    parser.add_argument("--sync-timeout", type=float, default=600)
    parser.add_argument("--churn-s", type=float, default=10)
    parser.add_argument("--churn-callers", type=int, default=8)
    args = parser.parse_args(argv)
    steps = [int(s) for s in args.steps.split(",") if int(s) <= args.max_clients]

    folder = Path(tempfile.mkdtemp(prefix="cp-scale-"))
    config = folder / "config"
    config.mkdir()
    write_config(config, args.services, args.routed)
    names = subscriptions(config, args.services, args.targets)
    control_plane = ControlPlane(config, folder / "controlplane.log")
    target = f"127.0.0.1:{control_plane.xds_port}"
    workers = Workers(args.procs, target, args.streams_per_channel)
    print(
        f"config: {args.services} services x {ENDPOINTS} endpoints, {args.routed} VirtualServices, "
        f"{args.routed} DestinationRules; clients: {args.procs} processes (grpc.aio, raw-bytes "
        f"ADS streams, {args.streams_per_channel} streams per connection), each client its own "
        f"stream and node id, {args.targets} targets (LDS/RDS/CDS/EDS by name)",
        flush=True,
    )
    rows = []
    base_rss = control_plane.rss_kb()
    timeout = 5
    try:
        for step in steps:
            cpu0 = control_plane.cpu_s()
            t0 = time.time()
            workers.connect(step - workers.count, names)
            synced = wait_all(lambda: workers.gather("synced"), step, args.sync_timeout, "synced")
            done = [t for t in synced if t is not None]
            sync_s = max(done) - t0 if done else float("nan")
            sync_cpu = control_plane.cpu_s() - cpu0
            rss_connected = control_plane.rss_kb()
            timeout += 1
            first = change(config, workers, timeout, len(done), 60)
            time.sleep(2)
            timeout += 1
            cpu1 = control_plane.cpu_s()
            steady = change(config, workers, timeout, len(done), 60)
            change_cpu = control_plane.cpu_s() - cpu1
            rss_changed = control_plane.rss_kb()
            row = {
                "clients": step, "synced": len(done), "sync_s": sync_s, "sync_cpu": sync_cpu,
                "first": first, "steady": steady, "change_cpu": change_cpu,
                "kb_connected": (rss_connected - base_rss) / step,
                "kb_changed": (rss_changed - base_rss) / step, "rss_mb": rss_changed / 1024,
                "errors": workers.errors(),
            }  # fmt: skip
            rows.append(row)
            print(row, flush=True)
        if args.churn_s > 0 and rows:
            workers.trim()
            cpu0 = control_plane.cpu_s()
            t0 = time.time()
            result = asyncio.run(churn(target, args.churn_s, args.churn_callers))
            result["cpu"] = control_plane.cpu_s() - cpu0
            pushed = workers.gather("arrivals", t0, EDS)
            result["pushed_clients"] = sum(t is not None for t in pushed)
            rows[-1]["churn"] = result
            print({"churn": result}, flush=True)
    finally:
        workers.stop()
        control_plane.stop()
    print_table(rows, base_rss)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


def print_table(rows: list[dict], base_rss: int) -> None:
    print(f"\ncontrol plane RSS with no clients: {base_rss / 1024:.0f} MB")
    print(
        "| clients | connect + sync s | sync CPU s | change after connect p50/p99/max s "
        "| steady change p50/p99/max s | change CPU s | KB/client connected / after changes "
        "| RSS MB |"
    )
    print("|---:|---:|---:|---|---|---:|---|---:|")
    for r in rows:
        f, s = r["first"], r["steady"]
        clients = f"{r['clients']:,}"
        if r["synced"] < r["clients"]:
            clients = f"{r['synced']:,} of {clients} ({r['errors']} streams failed)"
        print(
            f"| {clients} | {r['sync_s']:.2f} | {r['sync_cpu']:.1f} "
            f"| {f['p50']:.2f} / {f['p99']:.2f} / {f['max']:.2f} ({f['got']}) "
            f"| {s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ({s['got']}) "
            f"| {r['change_cpu']:.2f} | {r['kb_connected']:.0f} / {r['kb_changed']:.0f} "
            f"| {r['rss_mb']:.0f} |"
        )
    for r in rows:
        if "churn" in r:
            c = r["churn"]
            print(
                f"\nregistration churn at {r['clients']:,} clients: {c['calls']} calls in "
                f"the window ({c['rate']:.0f}/s, {c['failures']} failed), latency p50 "
                f"{c['p50'] * 1000:.0f} ms p99 {c['p99'] * 1000:.0f} ms, CPU {c['cpu']:.1f} s, "
                f"clients pushed EDS meanwhile: {c['pushed_clients']}"
            )


if __name__ == "__main__":
    sys.exit(main())
