"""Bad input to every config route of the admin API: a clear 4xx naming the field, and
nothing stored. Several hundred malformed apply bodies (seeded, so a failure replays):
broken JSON, wrong shapes, and valid resources with one value of the wrong type, one
unknown field or one required field taken out."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.controlplane.meshctl_harness import (
    destination_rule,
    service_entry,
    virtual_service,
    write_yaml,
)
from tests.support.processes import running_controlplane

pytestmark = pytest.mark.integration

SEED = 12
MUTATIONS = 300
VALID = (
    service_entry("attendees", 8080),
    destination_rule("attendees", "v1", "v2"),
    virtual_service("attendees", "v1"),
)
REQUIRED = [
    ("kind",),
    ("apiVersion",),
    ("metadata",),
    ("spec",),
    ("metadata", "name"),
]
RAW_BODIES = [
    b"",
    b"{",
    b"\xff\xfe\x00",
    b"[" * 100_000 + b"]" * 100_000,
    b"NaN",
    b'{"documents": [{"kind": "VirtualService", "spec": {"x": Infinity}}]}',
    b"null",
    b"1",
    b'"text"',
    b"[]",
    b"{}",
    b'{"documents": null}',
    b'{"documents": {}}',
    b'{"documents": []}',
    b'{"docs": []}',
    b'{"documents": [], "extra": 1}',
    b"[1]",
    b"[null]",
    b"[[]]",
    b"[{}]",
    b'[{"kind": "Gateway", "metadata": {"name": "g"}, "spec": {}}]',
    b'[{"kind": "Nonsense", "metadata": {"name": "g"}, "spec": {}}]',
    b"1" * 5000,
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path inside a document's spec (and its metadata name and namespace)."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*path, index))


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


def _wrong_type(value: Any, rng: random.Random) -> Any:
    choices: list[Any] = [
        12345,
        ["a", 1],
        {"unexpected": "mapping"},
        True,
        "not-what-is-expected-" * rng.randint(1, 20),
    ]
    return rng.choice([c for c in choices if type(c) is not type(value)])


def mutated_bodies(rng: random.Random) -> Iterator[tuple[str, Any]]:
    """(what, body) pairs, each a body the API must refuse."""
    for count in range(MUTATIONS):
        documents = copy.deepcopy(list(VALID))
        target = rng.choice(documents)
        how = count % 4
        if how == 0:
            candidates = [p for p in _paths(target) if p[0] in ("spec", "metadata")]
            candidates = [p for p in candidates if p[:2] != ("metadata", "namespace")]
            path = rng.choice(candidates)
            parent = _get(target, path[:-1])
            parent[path[-1]] = _wrong_type(parent[path[-1]], rng)
            yield f"wrong type at {path}", documents
        elif how == 1:
            mappings = [p for p in _paths(target) if isinstance(_get(target, p), dict)]
            mappings = [p for p in mappings if p[0] == "spec"]
            path = rng.choice(mappings)
            _get(target, path)["bogusField"] = 1
            yield f"unknown field under {path}", documents
        elif how == 2:
            path = rng.choice(REQUIRED)
            del _get(target, path[:-1])[path[-1]]
            yield f"{path} removed", documents
        else:
            version = rng.choice([-1, 0, "abc", "", 1.5, [], {}, True, "12x", 2**70])
            target["metadata"]["resourceVersion"] = version
            yield f"resourceVersion {version!r}", documents
    yield "duplicate document", [VALID[0], VALID[0]]
    yield "bad namespace", [service_entry("x", 1, namespace="Not_A_Label")]


@pytest.fixture
def admin_url(tmp_path: Path) -> Iterator[str]:
    config = write_yaml(tmp_path / "mesh.yaml", service_entry("sessions"))
    extra = ["--data-dir", str(tmp_path / "data")]
    with running_controlplane(config, extra_args=extra) as cp:
        yield cp.admin_url


def _refused(response: httpx.Response, what: str) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert body["error"], (what, body)
    assert isinstance(body.get("field"), str) and body["field"], (what, body)
    return body


def test_malformed_apply_bodies_are_refused_naming_the_field(admin_url: str) -> None:
    rng = random.Random(SEED)
    with httpx.Client(base_url=admin_url, timeout=30) as http:
        for raw in RAW_BODIES:
            _refused(http.post("/v1/apply", content=raw), repr(raw[:40]))
        for what, body in mutated_bodies(rng):
            for shaped in (body, {"documents": body}):
                refusal = _refused(http.post("/v1/apply", json=shaped), what)
                for issue in refusal["issues"]:
                    assert issue["message"] and issue["location"], (what, issue)
        status = http.get("/v1/config").json()
        assert status["store"]["revision"] == 0
        assert [i["metadata"]["name"] for i in http.get("/v1/resources").json()["items"]] == [
            "sessions"
        ]
        # The same documents, unharmed, do apply: the refusals were about the damage.
        assert http.post("/v1/apply", json=list(VALID)).status_code == 200


def test_bad_input_to_the_other_config_routes(admin_url: str) -> None:
    with httpx.Client(base_url=admin_url, timeout=30) as http:
        cases = [
            ("GET", "/v1/resources/gateway", None),
            ("GET", "/v1/resources/nonsense/x", None),
            ("GET", "/v1/resources/vs?namespace=Bad_NS", None),
            ("GET", "/v1/resources/vs?color=red", None),
            ("GET", "/v1/resources/vs?namespace=a&namespace=b", None),
            ("GET", "/v1/resources/vs/missing", None),
            ("DELETE", "/v1/resources/vs/missing", None),
            ("DELETE", "/v1/resources/se/sessions", None),
            ("DELETE", "/v1/resources/se/x?resourceVersion=abc", None),
            ("DELETE", "/v1/resources/se/x?resourceVersion=-3", None),
            ("DELETE", "/v1/resources/bogus/x", None),
            ("POST", "/v1/apply?dryRun=true", json.dumps(list(VALID))),
        ]
        for method, url, content in cases:
            _refused(http.request(method, url, content=content), f"{method} {url}")
        assert http.get("/v1/config").json()["store"]["revision"] == 0
