"""YAML builders shared by the config tests."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from controlplane.config import ConfigError, load_config
from controlplane.model import MeshConfig

API = "networking.istio.io/v1"


def _indent(body: str) -> str:
    return textwrap.indent(textwrap.dedent(body).strip("\n"), "  ") + "\n"


def service_entry(spec: str, name: str = "svc", namespace: str = "conference") -> str:
    """A ServiceEntry document around ``spec`` (YAML, any indentation)."""
    return (
        f"apiVersion: {API}\nkind: ServiceEntry\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{_indent(spec)}"
    )


def workload_entry(spec: str, name: str = "wl", namespace: str = "conference") -> str:
    """A WorkloadEntry document around ``spec``."""
    return (
        f"apiVersion: {API}\nkind: WorkloadEntry\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{_indent(spec)}"
    )


def _metadata(name: str, namespace: str, annotations: dict[str, str] | None) -> str:
    lines = f"metadata:\n  name: {name}\n  namespace: {namespace}\n"
    if annotations:
        lines += "  annotations:\n" + "".join(
            f"    {key}: {json.dumps(value)}\n" for key, value in annotations.items()
        )
    return lines


def virtual_service(
    spec: str,
    name: str = "vs",
    namespace: str = "conference",
    annotations: dict[str, str] | None = None,
) -> str:
    """A VirtualService document around ``spec``; annotation values are written as given."""
    return (
        f"apiVersion: {API}\nkind: VirtualService\n"
        f"{_metadata(name, namespace, annotations)}spec:\n{_indent(spec)}"
    )


def destination_rule(
    spec: str,
    name: str = "dr",
    namespace: str = "conference",
    annotations: dict[str, str] | None = None,
) -> str:
    """A DestinationRule document around ``spec``."""
    return (
        f"apiVersion: {API}\nkind: DestinationRule\n"
        f"{_metadata(name, namespace, annotations)}spec:\n{_indent(spec)}"
    )


def documents(*docs: str) -> str:
    """Several documents in one file."""
    return "---\n".join(docs)


# A valid ServiceEntry spec with one inline endpoint, for tests to vary.
STATIC_SPEC = """
hosts: [svc]
ports: [{number: 8080, name: http, protocol: HTTP}]
resolution: STATIC
endpoints: [{address: 127.0.0.1, ports: {http: 18080}}]
"""

CONFERENCE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: attendees, namespace: conference}
spec:
  hosts: [attendees]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {http: 18081}
    locality: us-east/zone-a
  - address: 127.0.0.1
    ports: {http: 18082}
    locality: us-east/zone-b
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sessions, namespace: conference}
spec:
  hosts: [sessions]
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  resolution: STATIC
  workloadSelector: {labels: {app: sessions}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sessions-v1, namespace: conference}
spec:
  address: 127.0.0.1
  ports: {grpc: 18091}
  labels: {app: sessions, version: v1}
  locality: us-east/zone-a
"""


# Two services for VirtualService / DestinationRule tests: `svc` on one port,
# `multi` on two (so a destination to it must name its port).
SERVICES = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc, namespace: conference}
spec:
  hosts: [svc]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: multi, namespace: conference}
spec:
  hosts: [multi]
  ports:
  - {number: 8080, name: http, protocol: HTTP}
  - {number: 9090, name: grpc, protocol: GRPC}
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
"""


def assert_refused(file: Path, text: str, document: int, path: str, message: str) -> None:
    """Loading ``text`` from ``file`` fails with a line ``FILE#DOC: PATH: ...MESSAGE...``."""
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    prefix = f"{file}#{document}: {path}: "
    lines = str(caught.value).splitlines()
    assert any(line.startswith(prefix) and message in line for line in lines), (
        f"expected a line starting {prefix!r} containing {message!r}, got:\n{caught.value}"
    )


def load_text(file: Path, text: str) -> MeshConfig:
    file.write_text(text)
    return load_config(file)
