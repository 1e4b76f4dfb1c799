"""Header and path routing (VirtualService match: headers exact / prefix / regex,
uri exact, first match wins, no match -> the default rule): every client gives
the same answers, the ones the config says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.clients import (
    ENVOY_GRPC,
    ENVOY_HTTP,
    GRPC_KINDS,
    GRPCIO,
    MESHLIB_GRPC,
    MESHLIB_HTTPX,
    HttpCaller,
)
from tests.support.echo_servers import WHO, grpc_echoes, http_echoes
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

SUBSETS = ("stable", "v1", "v2", "v3")
HTTP_PORT = 8080
GRPC_PORT = 50051

# (headers sent, subset expected); gRPC always calls /test.Echo/Who, HTTP GETs that path too.
CASES: list[tuple[dict[str, str], str]] = [
    ({}, "stable"),
    ({"x-version": "v2"}, "v2"),
    ({"x-version": "v2x"}, "stable"),  # exact means exact
    ({"x-tier": "golden"}, "v3"),  # prefix "gold"
    ({"x-tier": "silver"}, "stable"),
    ({"x-user": "admin-42"}, "v1"),  # regex admin-[0-9]+
    ({"x-user": "admin-42x"}, "stable"),  # RE2 full match, not search
    ({"x-user": "xadmin-42"}, "stable"),
    ({"x-version": "v2", "x-tier": "gold"}, "v2"),  # first matching rule wins
    ({"x-tier": "gold", "x-user": "admin-1"}, "v3"),
    ({"x-path-test": "yes"}, "v3"),  # uri exact /test.Echo/Who + header
    ({"x-path-test": "no"}, "stable"),  # uri exact /test.Echo/Other does not match
]
HTTP_ONLY_CASES: list[tuple[dict[str, str], str]] = [
    ({"X-Version": "v2"}, "v2"),  # header names ignore case (gRPC metadata keys are lower case)
]


def _rules(host: str) -> list[dict[str, Any]]:
    def rule(match: list[dict[str, Any]], subset: str) -> dict[str, Any]:
        return {"match": match, "route": [to(host, subset)]}

    return [
        rule([{"headers": {"x-version": {"exact": "v2"}}}], "v2"),
        rule([{"headers": {"x-tier": {"prefix": "gold"}}}], "v3"),
        rule([{"headers": {"x-user": {"regex": "admin-[0-9]+"}}}], "v1"),
        rule([{"uri": {"exact": WHO}, "headers": {"x-path-test": {"exact": "yes"}}}], "v3"),
        rule([{"uri": {"exact": "/test.Echo/Other"}, "headers": {"x-path-test": {}}}], "v1"),
        {"route": [to(host, "stable")]},
    ]


def _docs(host: str, protocol: str, port: int, ports: list[int]) -> list[Doc]:
    endpoints = [endpoint(p, labels={"version": s}) for p, s in zip(ports, SUBSETS, strict=True)]
    return [
        service(host, port, protocol, endpoints),
        destination_rule(host, subsets={s: {"version": s} for s in SUBSETS}),
        virtual_service(host, _rules(host)),
    ]


def _more_rules(host: str) -> list[dict[str, Any]]:
    """HTTP-only matchers (grpc's client has no query, method or case-folding match)."""

    def rule(match: list[dict[str, Any]], subset: str) -> dict[str, Any]:
        return {"match": match, "route": [to(host, subset)]}

    return [
        rule([{"queryParams": {"tier": {"exact": "gold"}}}], "v1"),
        rule([{"method": {"exact": "POST"}}], "v2"),
        rule([{"uri": {"prefix": "/caseless"}, "ignoreUriCase": True}], "v3"),
        rule([{"uri": {"prefix": "/guarded"}, "withoutHeaders": {"x-block": {}}}], "v1"),
        rule([{"uri": {"regex": "/items/[0-9]+"}}], "v2"),
        rule([{"headers": {"x-present": {}}}], "v3"),
        rule([{"uri": {"prefix": "/either"}}, {"headers": {"x-either": {"exact": "1"}}}], "v1"),
        {"route": [to(host, "stable")]},
    ]


# (method, path, headers, subset expected)
MORE_CASES: list[tuple[str, str, dict[str, str], str]] = [
    ("GET", "/?tier=gold", {}, "v1"),
    ("GET", "/?tier=golden", {}, "stable"),
    ("GET", "/?other=1&tier=gold", {}, "v1"),
    ("POST", "/", {}, "v2"),
    ("GET", "/caseless/x", {}, "v3"),
    ("GET", "/CaseLess/x", {}, "v3"),
    ("GET", "/guarded", {}, "v1"),
    ("GET", "/guarded", {"x-block": "1"}, "stable"),
    ("GET", "/items/12", {}, "v2"),
    ("GET", "/items/12/x", {}, "stable"),
    ("GET", "/items/12?q=1", {}, "v2"),  # the query is not part of the path
    ("GET", "/", {"x-present": "anything"}, "v3"),
    ("GET", "/either/1", {}, "v1"),  # match blocks are ORed
    ("GET", "/", {"x-either": "1"}, "v1"),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrafficEnv]:
    with http_echoes(SUBSETS) as https, grpc_echoes(SUBSETS) as grpcs:
        docs = _docs("web", "HTTP", HTTP_PORT, [b.port for b in https])
        more = _docs("web-more", "HTTP", HTTP_PORT, [b.port for b in https])
        docs += [*more[:2], virtual_service("web-more", _more_rules("web-more"))]
        docs += _docs("echo", "GRPC", GRPC_PORT, [b.port for b in grpcs])
        with traffic_env(tmp_path_factory.mktemp("headers"), docs) as mesh_env:
            yield mesh_env


KINDS = [
    (MESHLIB_HTTPX, "web", HTTP_PORT),
    (ENVOY_HTTP, "web", HTTP_PORT),
    (MESHLIB_GRPC, "echo", GRPC_PORT),
    (GRPCIO, "echo", GRPC_PORT),
    (ENVOY_GRPC, "echo", GRPC_PORT),
]


@pytest.mark.parametrize(("kind", "host", "port"), KINDS, ids=[k[0] for k in KINDS])
def test_header_and_path_matches_pick_the_configured_subset(
    env: TrafficEnv, kind: str, host: str, port: int
) -> None:
    cases = CASES if kind in GRPC_KINDS else CASES + HTTP_ONLY_CASES
    wrong: list[str] = []
    with env.caller(kind, f"{host}:{port}") as caller:
        for headers, subset in cases:
            outcomes = caller.calls(3, headers, path=WHO)
            if outcomes != [subset] * 3:
                wrong.append(f"{headers} -> {outcomes}, expected {subset}")
    assert not wrong, f"{kind}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("kind", [MESHLIB_HTTPX, ENVOY_HTTP])
def test_http_only_matchers_pick_the_configured_subset(env: TrafficEnv, kind: str) -> None:
    wrong: list[str] = []
    with env.caller(kind, f"web-more:{HTTP_PORT}") as caller:
        assert isinstance(caller, HttpCaller)
        for method, path, headers, subset in MORE_CASES:
            response = caller.request(method, path, headers)
            got = response.json()["served_by"] if response.status_code == 200 else response
            if got != subset:
                wrong.append(f"{method} {path} {headers} -> {got}, expected {subset}")
    assert not wrong, f"{kind}:\n" + "\n".join(wrong)
