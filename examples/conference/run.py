"""Run the whole conference case study on loopback and show traffic flowing.

    python examples/conference/run.py               # 10 s of traffic, then a summary
    python examples/conference/run.py --forever     # until Ctrl-C

Starts two Attendee instances, the control plane (with mesh.yaml, the attendees
ports filled in; its CA in the temp dir, trust domain example.org), a join token
per service account (``meshctl token create``), Session v1 and v2 (which get
their certificates with their token, serve mTLS only and register themselves),
a plaintext call straight to v1 (refused: STRICT), then an unmodified grpcio
client (xDS credentials, certificates from ``meshctl agent``; its one
ListSessions call is denied by mesh.yaml's AuthorizationPolicy) and the
conference app (its token: mTLS to sessions). ``--scale-out 5`` adds a second
v2 instance 5 s into the app's run, to watch the app pick it up without a
restart. Exit 0 when every instance answered, the plaintext call was refused
and the kiosk's ListSessions was denied; 1 otherwise. Every child is stopped
on the way out, also on Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from demo_config import render_mesh_config
from demo_probe import plaintext_call
from demo_processes import ManagedProcess, ProcessFailed
from demo_summary import Tally, print_summary

HERE = Path(__file__).resolve().parent
SERVING_TIMEOUT_S = 20.0
BOTH_CALLERS = ("meshlib", "grpcio")  # sessions there from the start: both must reach them
CALLER_TIMEOUT_S = 60.0  # beyond --duration: start-up plus the last calls' timeouts
TRUST_DOMAIN = "example.org"
NAMESPACE = "conference"


class Demo:
    """The processes of one run. At the end, everything started after the control plane
    stops at once (each deregisters from the control plane still running), then the
    control plane and what came before it, in reverse order."""

    def __init__(self, workdir: Path, exits: ExitStack) -> None:
        self.workdir = workdir
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir()
        self.processes: list[ManagedProcess] = []
        self._first_wave = 0  # processes[first_wave:] stop together, first
        exits.callback(self.stop_all)

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.log_dir, env=env, cwd=HERE)
        self.processes.append(process)
        if name == "controlplane":
            self._first_wave = len(self.processes)
        return process

    def stop_all(self) -> None:
        wave = self.processes[self._first_wave :]
        if wave:
            with ThreadPoolExecutor(max_workers=len(wave)) as pool:
                list(pool.map(lambda process: process.stop(), wave))
        for process in reversed(self.processes[: self._first_wave]):
            process.stop()

    def start_service(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> dict[str, object]:
        process = self.start(name, argv, env)
        announcement = process.wait_serving(SERVING_TIMEOUT_S)
        process.drain_to_log()
        return announcement


def python_script(name: str, *args: str) -> list[str]:
    return [sys.executable, str(HERE / name), *args]


def console_script(name: str) -> str:
    """The venv's console script next to this interpreter, else the one on PATH."""
    sibling = Path(sys.executable).parent / name
    if sibling.exists():
        return str(sibling)
    found = shutil.which(name)
    if found is None:
        raise ProcessFailed(f"{name} not found: install the project (pip install -e .)")
    return found


def env_with_bootstrap(bootstrap: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["GRPC_XDS_BOOTSTRAP"] = str(bootstrap)
    env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_meshctl(demo: Demo, name: str, *args: str) -> ManagedProcess:
    """``meshctl ARGS...`` to completion (ProcessFailed when it fails); its stdout stays
    on the returned process."""
    meshctl = demo.start(name, [console_script("meshctl"), *args])
    code = meshctl.wait(SERVING_TIMEOUT_S)
    if code != 0:
        raise ProcessFailed(f"meshctl {args[0]} failed ({code}); log: {meshctl.log_path}")
    return meshctl


def write_bootstrap(
    demo: Demo, xds_address: str, node_id: str, cert_dir: Path | None = None
) -> Path:
    path = demo.workdir / f"bootstrap-{node_id}.json"
    certs = ["--cert-dir", str(cert_dir)] if cert_dir is not None else []
    run_meshctl(
        demo, f"meshctl-bootstrap-{node_id}", "bootstrap", "--xds-address", xds_address,
        "--node-id", node_id, *certs, "-o", str(path),
    )  # fmt: skip
    if not path.exists():
        raise ProcessFailed(f"meshctl bootstrap wrote no {path}")
    return path


def create_token(demo: Demo, admin_address: str, service_account: str) -> Path:
    """A join token for ``service_account`` in the conference namespace, in a file."""
    meshctl = run_meshctl(
        demo, f"meshctl-token-{service_account}", "token", "create",
        "--service-account", service_account, "--namespace", NAMESPACE,
        "--admin-address", admin_address,
    )  # fmt: skip
    token = "".join(meshctl.lines(timeout=1.0)).strip()
    if not token:
        raise ProcessFailed(f"meshctl token create printed no token; log: {meshctl.log_path}")
    path = demo.workdir / "tokens" / f"{service_account}.token"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return path


def with_token(env: dict[str, str], token_file: Path) -> dict[str, str]:
    return {**env, "MESH_TOKEN_FILE": str(token_file)}


@dataclass
class ControlPlane:
    xds_address: str
    secure_xds_address: str
    admin_address: str


@dataclass
class Scheduled:
    """Something to do once, ``after_s`` seconds into a caller's run."""

    after_s: float
    action: Callable[[], None]


def run_caller(
    process: ManagedProcess,
    tally: Tally,
    column: str,
    timeout: float | None,
    scheduled: Scheduled | None = None,
) -> None:
    """Echo a caller's lines and count who answered, until it exits."""
    started = time.monotonic()
    for line in process.lines(timeout):
        # Count before echoing: whoever reads our output (a test, a person pressing
        # Ctrl-C) may act on a line at once, and the summary must already hold it.
        tally.count_line(column, line)
        print(line, flush=True)
        if scheduled is not None and time.monotonic() - started >= scheduled.after_s:
            scheduled.action()
            scheduled = None
    try:
        code = process.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        raise ProcessFailed(f"{process.name} still running after {timeout} s") from None
    if code != 0:
        print(f"== {process.name} exited with code {code}", flush=True)


def start_sessions(
    demo: Demo,
    tally: Tally,
    cp: ControlPlane,
    token: Path,
    version: str,
    name: str,
    callers: tuple[str, ...],
) -> int:
    """One Session instance with its own bootstrap and the sessions token; returns its
    port once it has registered."""
    env = with_token(env_with_bootstrap(write_bootstrap(demo, cp.xds_address, name)), token)
    served = demo.start_service(
        name, python_script("sessions_service.py", "--port", "0", "--version", version), env
    )
    port = int(str(served["port"]))
    tally.expect(f"sessions-{version}@{port}", callers)
    print(
        f"== {name} on port {port} (mTLS only, as {served.get('identity')}), "
        "registered as sessions:50051",
        flush=True,
    )
    return port


def start_kiosk_agent(demo: Demo, cp: ControlPlane, token: Path) -> Path:
    """``meshctl agent`` writes the kiosk's certificate files (once: the demo is short;
    left running it renews them at half their lifetime)."""
    cert_dir = demo.workdir / "certs-kiosk"
    agent = run_meshctl(
        demo, "meshctl-agent-kiosk", "agent", "--token-file", str(token),
        "--cert-dir", str(cert_dir), "--once",
    )  # fmt: skip
    for line in agent.lines(timeout=1.0):
        if '"certificate_written"' in line:
            identity = json.loads(line).get("identity")
            print(f"== meshctl agent wrote the kiosk's certificate ({identity})", flush=True)
    return write_bootstrap(demo, cp.secure_xds_address, "kiosk", cert_dir)


def probe_plaintext(tally: Tally, port: int) -> None:
    refused = plaintext_call(port)
    tally.plaintext_refused = refused is not None
    if refused is None:
        print(f"== a plaintext call to sessions-v1@{port} was ANSWERED: mTLS is off", flush=True)
    else:
        print(
            f"== a plaintext call to sessions-v1@{port} (no certificate): refused, {refused}",
            flush=True,
        )


def run_demo(args: argparse.Namespace, demo: Demo, tally: Tally) -> None:
    attendee_ports = []
    for n in (1, 2):
        served = demo.start_service(
            f"attendees-{n}", python_script("attendees_service.py", "--port", "0")
        )
        attendee_ports.append(int(str(served["port"])))
        tally.expect(f"attendees@{served['port']}")
    config = demo.workdir / "mesh.yaml"
    render_mesh_config(HERE / "mesh.yaml", config, attendee_ports)
    print(f"== attendees listening on {attendee_ports}; mesh config: {config}", flush=True)

    data_dir = demo.workdir / "controlplane"
    control_plane = demo.start_service(
        "controlplane",
        [console_script("mesh-controlplane"), "serve", "--config", str(config),
         "--xds-address", "127.0.0.1:0", "--secure-xds-address", "127.0.0.1:0",
         "--admin-address", "127.0.0.1:0",
         "--data-dir", str(data_dir), "--trust-domain", TRUST_DOMAIN],
    )  # fmt: skip
    cp = ControlPlane(
        str(control_plane["xds_address"]),
        str(control_plane["secure_xds_address"]),
        str(control_plane["admin_address"]),
    )
    print(
        f"== control plane: xDS on {cp.xds_address}, secure xDS (certificates) on "
        f"{cp.secure_xds_address}, CA for {TRUST_DOMAIN} in {data_dir}",
        flush=True,
    )
    tokens = {sa: create_token(demo, cp.admin_address, sa) for sa in ("sessions", "app", "kiosk")}
    print(
        f"== join tokens (meshctl token create) for {', '.join(tokens)} "
        f"in namespace {NAMESPACE}; mesh.yaml: STRICT mTLS, sessions callers app and kiosk",
        flush=True,
    )

    sessions = tokens["sessions"]
    ports = [
        start_sessions(demo, tally, cp, sessions, version, f"sessions-{version}", BOTH_CALLERS)
        for version in ("v1", "v2")
    ]
    probe_plaintext(tally, ports[0])

    kiosk_env = env_with_bootstrap(start_kiosk_agent(demo, cp, tokens["kiosk"]))
    print(
        "== an unmodified grpcio client (the kiosk), xds:///sessions:50051, xDS credentials:",
        flush=True,
    )
    native = demo.start(
        "grpcio-client",
        python_script("native_grpc_client.py", "--requests", "6", "--try-list-sessions"),
        kiosk_env,
    )
    tally.expected_denials.add("grpcio")
    run_caller(native, tally, "grpcio", CALLER_TIMEOUT_S)

    app_env = with_token(
        env_with_bootstrap(write_bootstrap(demo, cp.xds_address, "conference-app")), tokens["app"]
    )
    length = ["--forever"] if args.forever else ["--duration", str(args.duration)]
    mode = ["--async"] if args.use_async else []
    print("== the conference app through meshlib (Ctrl-C to stop):", flush=True)
    app = demo.start(
        "conference-app",
        python_script(
            "conference_app.py", *length, *mode, "--interval", str(args.interval), "--no-summary"
        ),
        app_env,
    )
    scale_out = None
    if args.scale_out is not None:

        def start_another_v2() -> None:
            start_sessions(demo, tally, cp, sessions, "v2", "sessions-v2-b", ("meshlib",))

        scale_out = Scheduled(args.scale_out, start_another_v2)
    timeout = None if args.forever else args.duration + CALLER_TIMEOUT_S
    run_caller(app, tally, "meshlib", timeout, scale_out)  # --forever: until Ctrl-C (main)


def raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of app traffic")
    parser.add_argument("--forever", action="store_true", help="run the app until Ctrl-C")
    parser.add_argument("--interval", type=float, default=0.2, help="pause between app rounds")
    parser.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="run the app on asyncio (mesh.async_http_client, mesh.aio_grpc_channel)",
    )
    parser.add_argument(
        "--scale-out",
        type=float,
        metavar="SECONDS",
        help="start a second v2 instance this long into the app's run: it joins with no restart",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--summary-json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # keep our lines in order with the children's
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)

    tally = Tally()
    workdir = Path(tempfile.mkdtemp(prefix="conference-demo-"))
    failed = interrupted = False
    demo: Demo | None = None
    try:
        with ExitStack() as exits:
            demo = Demo(workdir, exits)
            try:
                run_demo(args, demo, tally)
            except KeyboardInterrupt:
                interrupted = True
                print("\n== interrupted: stopping every process", flush=True)
            except (ProcessFailed, OSError, subprocess.TimeoutExpired) as exc:
                failed = True
                print(f"== failed: {exc}", file=sys.stderr, flush=True)
                show_logs(demo)
            finally:
                # Stopping takes a few seconds at most (SIGKILL after a grace period);
                # a second Ctrl-C must not cut it short and leave orphans behind.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
    finally:
        pids = [process.pid for process in demo.processes] if demo else []
        ok = print_summary(tally) and not failed
        if args.summary_json is not None:
            summary = {**tally.as_json(), "ok": ok, "interrupted": interrupted, "pids": pids}
            args.summary_json.write_text(json.dumps(summary, indent=2))
        if args.keep_temp or failed:
            print(f"== logs kept in {workdir / 'logs'}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if interrupted and not args.forever:
        return 130
    return 0 if ok else 1


def show_logs(demo: Demo) -> None:
    for process in demo.processes:
        if process.log_path.exists():
            print(f"--- {process.name} (last lines of {process.log_path})", file=sys.stderr)
            print(process.log_tail(), file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
