"""A running mesh for the resilience tests: the real control plane on YAML, one
meshlib ``Mesh``, and callers for httpx (sync + async) and gRPC (sync + aio).

Sync calls run on a worker thread (``asyncio.to_thread``) so every test can be
one ``async def`` parametrized over the client kind.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx

import meshlib
from tests.resilience_e2e.upstreams import WHO
from tests.support.meshconfig import write_config
from tests.support.processes import ControlPlaneProcess, running_controlplane

API = "networking.istio.io/v1"
HTTP_PORT = 8080
GRPC_PORT = 50051
SYNC, ASYNC = "sync", "async"

Doc = dict[str, Any]


def service(
    host: str, port: int, protocol: str, ports: Sequence[int], *, degraded: bool = False
) -> Doc:
    """A STATIC ServiceEntry with endpoints on 127.0.0.1 (port name ``main``)."""
    metadata: dict[str, Any] = {"name": host, "namespace": "default"}
    if degraded:
        metadata["annotations"] = {"meshlib.dev/degraded": "true"}
    return {
        "apiVersion": API,
        "kind": "ServiceEntry",
        "metadata": metadata,
        "spec": {
            "hosts": [host],
            "ports": [{"number": port, "name": "main", "protocol": protocol}],
            "resolution": "STATIC",
            "endpoints": [{"address": "127.0.0.1", "ports": {"main": p}} for p in ports],
        },
    }


def virtual_service(
    host: str, *rules: Mapping[str, Any], annotations: Mapping[str, Any] | None = None
) -> Doc:
    """Rules route to ``host`` unless they say otherwise."""
    metadata: dict[str, Any] = {"name": f"{host}-vs", "namespace": "default"}
    if annotations:
        metadata["annotations"] = {k: json.dumps(v) for k, v in annotations.items()}
    http = [{"route": [{"destination": {"host": host}}], **rule} for rule in rules]
    return {"apiVersion": API, "kind": "VirtualService", "metadata": metadata,
            "spec": {"hosts": [host], "http": http}}  # fmt: skip


def destination_rule(
    host: str, pool: Mapping[str, Any], annotations: Mapping[str, Any] | None = None
) -> Doc:
    metadata: dict[str, Any] = {"name": f"{host}-dr", "namespace": "default"}
    if annotations:
        metadata["annotations"] = {k: json.dumps(v) for k, v in annotations.items()}
    return {"apiVersion": API, "kind": "DestinationRule", "metadata": metadata,
            "spec": {"host": host, "trafficPolicy": {"connectionPool": dict(pool)}}}  # fmt: skip


@dataclass
class MeshEnv:
    workdir: Path
    config_path: Path
    cp: ControlPlaneProcess
    mesh: meshlib.Mesh
    http: httpx.Client

    def write(self, *docs: Doc) -> None:
        write_config(self.config_path, *docs)

    def bootstrap(self, node_id: str) -> Path:
        return self.cp.write_bootstrap(self.workdir / f"bootstrap-{node_id}.json", node_id)


@contextmanager
def mesh_env(workdir: Path, docs: Sequence[Doc]) -> Iterator[MeshEnv]:
    """The control plane serving ``docs`` and a Mesh on it; all closed at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = write_config(workdir / "mesh.yaml", *docs)
    with ExitStack() as stack:
        cp = stack.enter_context(running_controlplane(config_path))
        bootstrap = cp.write_bootstrap(workdir / "bootstrap.json", "resilience-e2e")
        mesh = stack.enter_context(meshlib.Mesh(bootstrap=str(bootstrap)))
        http = stack.enter_context(mesh.http_client(timeout=10.0))
        yield MeshEnv(workdir, config_path, cp, mesh, http)


class HttpCaller:
    """One httpx flavour (sync on a worker thread, or async) over the mesh."""

    def __init__(self, kind: str, env: MeshEnv, async_client: httpx.AsyncClient | None) -> None:
        self.kind = kind
        self.env = env
        self.async_client = async_client

    async def get(
        self, url: str, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        if self.kind == SYNC:
            return await asyncio.to_thread(self.env.http.get, url, headers=headers, **kwargs)
        assert self.async_client is not None
        return await self.async_client.get(url, headers=headers, **kwargs)

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.kind == SYNC:
            return await asyncio.to_thread(self.env.http.request, method, url, **kwargs)
        assert self.async_client is not None
        return await self.async_client.request(method, url, **kwargs)


class GrpcCaller:
    """One gRPC flavour (sync channel on a worker thread, or aio) calling ``/test.Echo/Who``."""

    def __init__(self, kind: str, sync: grpc.Channel | None, aio: grpc.aio.Channel | None) -> None:
        self.kind = kind
        self._sync = sync.unary_unary(WHO, None, None) if sync is not None else None
        self._aio = aio.unary_unary(WHO, None, None) if aio is not None else None

    async def who(
        self, *, timeout: float | None = 10.0, metadata: Sequence[tuple[str, str]] = ()
    ) -> str:
        if self._sync is not None:
            sync = self._sync
            answer = await asyncio.to_thread(
                lambda: sync(b"", timeout=timeout, metadata=tuple(metadata))
            )
        else:
            assert self._aio is not None
            answer = await self._aio(b"", timeout=timeout, metadata=tuple(metadata))
        return bytes(answer).decode()

    async def outcome(self, **kwargs: Any) -> str:
        """The backend's name, or ``"error: CODE"``."""
        try:
            return await self.who(**kwargs)
        except grpc.RpcError as error:
            return f"error: {error.code().name}"
