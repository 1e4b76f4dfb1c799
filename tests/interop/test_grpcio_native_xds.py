"""grpcio's own xDS client against our control plane: the interop contract.

An unmodified grpcio client dials `xds:///echo:50051` with the bootstrap that
`meshctl bootstrap` writes, reaches every real backend round-robin, and
follows an endpoint change made in the config file.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.backends import grpc_backends
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import running_controlplane

pytestmark = pytest.mark.integration

CLIENT = str(Path(__file__).with_name("native_client.py"))


def _native(bootstrap: Path, *args: str, timeout: float = 60) -> list[str]:
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
    result = subprocess.run(
        [sys.executable, CLIENT, "xds:///echo:50051", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


def test_native_client_round_robins_over_every_endpoint(tmp_path: Path) -> None:
    with grpc_backends(3) as backends:
        config = write_config(
            tmp_path / "mesh.yaml", service_entry("echo", 50051, [b.port for b in backends])
        )
        with running_controlplane(config) as cp:
            bootstrap = cp.write_bootstrap(tmp_path / "bootstrap.json", "native-1")
            answers = _native(bootstrap, "--calls", "90")
    # grpc's round_robin only cycles over sub-channels that are READY; once all
    # three have answered, every window of 30 calls is exactly 10/10/10.
    warm = next(i for i in range(len(answers)) if len(set(answers[: i + 1])) == 3) + 1
    window = answers[warm : warm + 30]
    assert len(window) == 30, answers
    assert collections.Counter(window) == {"g0": 10, "g1": 10, "g2": 10}


def test_native_client_follows_an_endpoint_change(tmp_path: Path) -> None:
    with grpc_backends(2) as backends:
        first, second = backends
        config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [first.port]))
        with running_controlplane(config) as cp:
            bootstrap = cp.write_bootstrap(tmp_path / "bootstrap.json", "native-2")
            env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
            proc = subprocess.Popen(
                [sys.executable, CLIENT, "xds:///echo:50051", "--until", "g1"],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == "g0"
                write_config(config, service_entry("echo", 50051, [second.port]))
                out, _ = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    assert proc.returncode == 0
    assert out.split()[-1] == "g1"
