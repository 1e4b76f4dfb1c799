"""YAML builders shared by the config tests."""

from __future__ import annotations

import textwrap

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
