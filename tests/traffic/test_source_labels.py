"""Routing by caller (VirtualService match ``sourceLabels``): two callers with different
bootstrap labels (``node.metadata.LABELS``) send the same request and reach different
subsets, in every client kind: meshlib (httpx, gRPC), grpcio's own xDS client, Envoy.

A block whose ``sourceLabels`` the caller lacks is left out of its routes while the
rule's other blocks stay, so ``x-beta: 1`` is a beta request for the canary caller only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.clients import (
    ENVOY_GRPC,
    ENVOY_HTTP,
    GRPCIO,
    MESHLIB_GRPC,
    MESHLIB_HTTPX,
    open_caller,
)
from tests.support.echo_servers import WHO, grpc_echoes, http_echoes
from tests.support.envoy import EnvoySidecar, running_envoy_sidecar
from tests.support.traffic_config import (
    Doc,
    destination_rule,
    endpoint,
    service,
    to,
    virtual_service,
)
from tests.traffic.harness import TrafficEnv, traffic_env

pytestmark = pytest.mark.integration

SUBSETS = ("stable", "canary", "beta")
CANARY = {"app": "checkout", "track": "canary"}
PLAIN = {"app": "checkout", "pod": "checkout-7f9c"}  # no label a rule reads but app
# (caller labels, headers sent, subset expected)
CASES: list[tuple[Mapping[str, str], dict[str, str], str]] = [
    (CANARY, {}, "canary"),
    (PLAIN, {}, "stable"),
    (CANARY, {"x-beta": "1"}, "beta"),
    (PLAIN, {"x-beta": "1"}, "stable"),  # that block needs track=canary: dropped
    (CANARY, {"x-beta": "all"}, "beta"),
    (PLAIN, {"x-beta": "all"}, "beta"),  # the rule's other block stays
]


def _rules(host: str) -> list[dict[str, Any]]:
    canary_beta = {"sourceLabels": {"track": "canary"}, "headers": {"x-beta": {"exact": "1"}}}
    return [
        {
            "match": [canary_beta, {"headers": {"x-beta": {"exact": "all"}}}],
            "route": [to(host, "beta")],
        },
        {"match": [{"sourceLabels": {"track": "canary"}}], "route": [to(host, "canary")]},
        {"route": [to(host, "stable")]},
    ]


def _docs(host: str, protocol: str, port: int, ports: list[int]) -> list[Doc]:
    endpoints = [endpoint(p, labels={"version": s}) for p, s in zip(ports, SUBSETS, strict=True)]
    return [
        service(host, port, protocol, endpoints),
        destination_rule(host, subsets={s: {"version": s} for s in SUBSETS}),
        virtual_service(host, _rules(host)),
    ]


class LabelledMesh:
    """The running mesh, with an Envoy sidecar per label set (started on first use)."""

    def __init__(self, env: TrafficEnv) -> None:
        self.env = env
        self._envoys: dict[tuple[tuple[str, str], ...], EnvoySidecar] = {}

    def envoy(self, labels: Mapping[str, str]) -> Callable[[], EnvoySidecar]:
        key = tuple(sorted(labels.items()))

        def start() -> EnvoySidecar:
            if key not in self._envoys:
                name = f"envoy-{len(self._envoys)}"
                self._envoys[key] = self.env.stack.enter_context(
                    running_envoy_sidecar(
                        self.env.workdir / name, self.env.cp.xds_address, name, labels=labels
                    )
                )
            return self._envoys[key]

        return start

    def bootstrap(self, kind: str, labels: Mapping[str, str]) -> Path:
        node_id = f"{kind}-{labels.get('track', 'plain')}"
        path = self.env.workdir / f"bootstrap-{node_id}.json"
        return self.env.cp.write_bootstrap(path, node_id, labels=labels)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelledMesh]:
    with http_echoes(SUBSETS) as https, grpc_echoes(SUBSETS) as grpcs:
        docs = _docs("web", "HTTP", 8080, [b.port for b in https])
        docs += _docs("echo", "GRPC", 50051, [b.port for b in grpcs])
        with traffic_env(tmp_path_factory.mktemp("source-labels"), docs) as env:
            yield LabelledMesh(env)


KINDS = [
    (MESHLIB_HTTPX, "web:8080"),
    (MESHLIB_GRPC, "echo:50051"),
    (GRPCIO, "echo:50051"),
    (ENVOY_HTTP, "web:8080"),
    (ENVOY_GRPC, "echo:50051"),
]


@pytest.mark.parametrize(("kind", "target"), KINDS, ids=[k[0] for k in KINDS])
def test_callers_with_different_labels_reach_different_subsets(
    mesh: LabelledMesh, kind: str, target: str
) -> None:
    wrong: list[str] = []
    for labels in (CANARY, PLAIN):
        bootstrap = mesh.bootstrap(kind, labels)
        with open_caller(kind, target, bootstrap, mesh.envoy(labels)) as caller:
            for case_labels, headers, subset in CASES:
                if case_labels is not labels:
                    continue
                outcomes = caller.calls(3, headers, path=WHO)
                if outcomes != [subset] * 3:
                    wrong.append(f"{labels} {headers} -> {outcomes}, expected {subset}")
    assert not wrong, f"{kind}:\n" + "\n".join(wrong)
