"""Start the real control plane as a subprocess on ephemeral ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.meshctl_run import run_meshctl

STARTUP_TIMEOUT_S = 30.0


@dataclass
class ControlPlaneProcess:
    proc: subprocess.Popen[str]
    xds_address: str
    admin_address: str
    stderr_lines: list[str] = field(default_factory=list)
    secure_xds_address: str = ""  # "" with --secure-xds-address off

    @property
    def admin_url(self) -> str:
        return f"http://{self.admin_address}"

    def write_bootstrap(
        self,
        path: Path,
        node_id: str = "test-node",
        *,
        zone: str = "",
        region: str = "",
        labels: Mapping[str, str] | None = None,
        namespace: str = "",
    ) -> Path:
        """Write a bootstrap for this control plane with `meshctl bootstrap` (``labels``
        with ``--label``, ``namespace`` as the node metadata NAMESPACE)."""
        args = ["bootstrap", "--xds-address", self.xds_address, "--node-id", node_id]
        args += ["-o", str(path)]
        if zone:
            args += ["--zone", zone]
        if region:
            args += ["--region", region]
        for key, value in (labels or {}).items():
            args += ["--label", f"{key}={value}"]
        if namespace:
            args += ["--metadata", f"NAMESPACE={namespace}"]
        done = run_meshctl(*args)
        if done.returncode != 0:
            raise RuntimeError(f"meshctl {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def _drain(stream: object, sink: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line)


@contextmanager
def running_controlplane(
    config: Path | None,
    *,
    xds_address: str = "127.0.0.1:0",
    admin_address: str = "127.0.0.1:0",
    extra_args: Sequence[str] = (),
) -> Iterator[ControlPlaneProcess]:
    """Run `mesh-controlplane serve` until the block ends; ports are picked by the OS
    (unless given; the secure xDS port always, unless ``extra_args`` names one).
    ``config`` None: no --config (the store's config only)."""
    args = [sys.executable, "-m", "controlplane.cli", "serve"]
    if config is not None:
        args += ["--config", str(config)]
    args += ["--xds-address", xds_address, "--admin-address", admin_address, *extra_args]
    if "--secure-xds-address" not in extra_args:  # else port + 2, maybe taken by another test
        args += ["--secure-xds-address", "127.0.0.1:0"]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    stderr_lines: list[str] = []
    threading.Thread(target=_drain, args=(proc.stderr, stderr_lines), daemon=True).start()
    try:
        serving = _read_serving_line(proc, stderr_lines)
        cp = ControlPlaneProcess(
            proc,
            serving["xds_address"],
            serving["admin_address"],
            stderr_lines,
            serving.get("secure_xds_address", ""),
        )
        threading.Thread(target=_drain, args=(proc.stdout, []), daemon=True).start()
        yield cp
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _read_serving_line(proc: subprocess.Popen[str], stderr_lines: list[str]) -> dict[str, str]:
    assert proc.stdout is not None
    timer = threading.Timer(STARTUP_TIMEOUT_S, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "serving":
                return {k: str(v) for k, v in event.items()}
    finally:
        timer.cancel()
    proc.wait(timeout=10)
    raise RuntimeError(
        f"control plane exited ({proc.returncode}) before serving:\n" + "".join(stderr_lines)
    )
