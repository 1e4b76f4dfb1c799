"""Resource names on the wire, as Istio names them for proxyless gRPC.

Keeping them in one place lets ``xds:///HOST:PORT`` work in grpcio, grpc-js
and meshlib alike, and lets later issues add subset clusters
(``outbound|PORT|SUBSET|HOST``) without touching the builders.
"""

from __future__ import annotations


def listener_name(host: str, port: int) -> str:
    """LDS name of a service: what clients dial (``HOST:PORT``)."""
    return f"{host}:{port}"


def route_config_name(host: str, port: int) -> str:
    """RDS name of a service's route table (same as its listener)."""
    return f"{host}:{port}"


def virtual_host_name(host: str, port: int) -> str:
    return f"{host}:{port}"


def virtual_host_domains(host: str, port: int) -> tuple[str, ...]:
    """``HOST:PORT``, plus bare ``HOST`` for port 80 (httpx omits the default port)."""
    if port == 80:
        return (f"{host}:{port}", host)
    return (f"{host}:{port}",)


def cluster_name(host: str, port: int, subset: str = "") -> str:
    """CDS (and EDS) name: ``outbound|PORT|SUBSET|HOST``, Istio's format."""
    return f"outbound|{port}|{subset}|{host}"


# The Envoy sidecar's outbound listener and its route table (one per sidecar node).
SIDECAR_OUTBOUND = "mesh_outbound"
