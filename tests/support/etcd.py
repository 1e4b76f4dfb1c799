"""Real etcd members (Debian's ``etcd-server``) on loopback, with temp data dirs.

    with etcd_cluster(tmp_path, members=3) as cluster:
        cluster.url            # "etcd://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
        cluster.members[0].kill()

Tests that need etcd call :func:`require_etcd`, which skips (saying why) only when
the binary is absent.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.waiting import free_port

STARTUP_TIMEOUT_S = 30.0


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def require_etcd() -> str:
    binary = etcd_binary()
    if binary is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server; .ci/run installs it)")
    return binary


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, state: str = "new") -> None:
        args = [
            require_etcd(),
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", f"http://{self.endpoint}",
            "--advertise-client-urls", f"http://{self.endpoint}",
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", f"meshlib-test-{self.data_dir.parent.name}",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        try:
            answer = httpx.get(f"http://{self.endpoint}/health", timeout=1.0)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and answer.json().get("health") == "true"

    def kill(self) -> None:
        """SIGKILL: the member is gone at once, as a crashed host."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@dataclass
class EtcdCluster:
    members: list[EtcdMember]

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(self.endpoints)

    def logs(self) -> str:
        return "\n".join(m.log_path.read_text(errors="replace")[-3000:] for m in self.members)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


ATTEMPTS = 5


def _start_cluster(tmp_path: Path, members: int) -> EtcdCluster | None:
    """One try on freshly picked ports; None when a port was taken in between (a race
    with another process on the machine, not an etcd failure)."""
    root = tmp_path / f"etcd-{time.monotonic_ns()}"
    root.mkdir()
    cluster = EtcdCluster(
        [
            EtcdMember(f"m{i}", free_port(), free_port(), root / f"m{i}", root / f"m{i}.log")
            for i in range(members)
        ]
    )
    initial = ",".join(f"{m.name}={m.peer_url}" for m in cluster.members)
    for member in cluster.members:
        member.start(initial)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not all(member.healthy() for member in cluster.members):
        if any(m.proc is not None and m.proc.poll() is not None for m in cluster.members):
            cluster.stop()
            if "address already in use" in cluster.logs():
                return None
            raise RuntimeError(f"etcd exited while starting:\n{cluster.logs()}")
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError(f"etcd did not become healthy:\n{cluster.logs()}")
        time.sleep(0.1)
    return cluster


@contextmanager
def etcd_cluster(tmp_path: Path, members: int = 1) -> Iterator[EtcdCluster]:
    """``members`` etcd processes forming one cluster, healthy before the block runs.

    Ports are picked free and then bound by etcd, so another process may take one in
    between; such a start is retried on new ports."""
    cluster = None
    for _ in range(ATTEMPTS):
        cluster = _start_cluster(tmp_path, members)
        if cluster is not None:
            break
    if cluster is None:
        raise RuntimeError(f"etcd found its ports taken on {ATTEMPTS} tries")
    try:
        yield cluster
    finally:
        cluster.stop()
