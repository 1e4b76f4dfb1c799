"""A control plane process with a data dir and a ``--config`` file, driven by ``meshctl``
(its ``main(argv)``, in this process) against the admin API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.meshctl import main
from tests.support.processes import ControlPlaneProcess, running_controlplane

API = "networking.istio.io/v1"


def service_entry(name: str, port: int = 50051, **metadata: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ServiceEntry",
        "metadata": {"name": name, **metadata},
        "spec": {
            "hosts": [name],
            "ports": [{"number": port, "name": "grpc", "protocol": "GRPC"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1", "labels": {"version": "v1"}}],
        },
    }


def destination_rule(host: str, *subsets: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "DestinationRule",
        "metadata": {"name": host},
        "spec": {
            "host": host,
            "subsets": [{"name": s, "labels": {"version": s}} for s in subsets],
        },
    }


def virtual_service(host: str, subset: str | None = None, timeout: str = "2s") -> dict[str, Any]:
    destination: dict[str, Any] = {"host": host}
    if subset is not None:
        destination["subset"] = subset
    return {
        "apiVersion": API,
        "kind": "VirtualService",
        "metadata": {"name": host},
        "spec": {
            "hosts": [host],
            "http": [{"route": [{"destination": destination}], "timeout": timeout}],
        },
    }


def write_yaml(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


@dataclass
class Ctl:
    """``meshctl`` pointed at one control plane; each call returns (code, stdout, stderr)."""

    cp: ControlPlaneProcess
    capsys: pytest.CaptureFixture[str]
    folder: Path

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--admin-address", self.cp.admin_address])
        out, err = self.capsys.readouterr()
        return code, out, err

    def apply(self, *documents: dict[str, Any], name: str = "apply.yaml") -> tuple[int, str, str]:
        return self("apply", "-f", str(write_yaml(self.folder / name, *documents)))

    def get_json(self, *argv: str) -> Any:
        code, out, err = self("get", *argv, "-o", "json")
        assert code == 0, err
        return json.loads(out)


@contextmanager
def controlplane_with_ctl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *config: dict[str, Any]
) -> Iterator[tuple[Ctl, Path]]:
    """A control plane on ``config`` (one file) and a data dir in ``tmp_path``."""
    config_file = write_yaml(tmp_path / "mesh.yaml", *config)
    data_dir = tmp_path / "data"
    with running_controlplane(config_file, extra_args=["--data-dir", str(data_dir)]) as cp:
        yield Ctl(cp, capsys, tmp_path), config_file
