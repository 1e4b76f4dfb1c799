"""Config documents the security tests share: a workload with a service account behind a
ServiceEntry, and a namespace's PeerAuthentication (YAML text, as a user writes it)."""

from __future__ import annotations


def workload_with_account(
    service: str,
    workload: str,
    *,
    number: int,
    protocol: str,
    port: int,
    namespace: str = "conference",
) -> str:
    """ServiceEntry ``service`` (port ``number``, named ``protocol`` lowercased) selecting
    ``app: SERVICE``, and its WorkloadEntry ``workload`` on 127.0.0.1:``port`` running as
    service account ``service``."""
    name = protocol.lower()
    return f"""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {service}, namespace: {namespace}}}
spec:
  hosts: [{service}]
  ports: [{{number: {number}, name: {name}, protocol: {protocol}}}]
  resolution: STATIC
  workloadSelector: {{labels: {{app: {service}}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {workload}, namespace: {namespace}}}
spec:
  address: 127.0.0.1
  ports: {{{name}: {port}}}
  labels: {{app: {service}}}
  serviceAccount: {service}
"""


def peer_authentication(mode: str, namespace: str = "conference") -> str:
    """The namespace-wide PeerAuthentication ``default`` with mTLS ``mode``."""
    return f"""\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {namespace}}}
spec:
  mtls: {{mode: {mode}}}
"""
