"""meshlib.testing: the documented example runs, and bad declarations are named."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from meshlib.testing import FakeXds, endpoints, listener, prefix_route

ROOT = Path(__file__).resolve().parent.parent.parent


def _documented_example() -> str:
    text = (ROOT / "docs/api.md").read_text()
    section = text[text.index("## Testing your code") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "docs/api.md: no example under 'Testing your code'"
    return found.group(1)


def test_the_documented_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _documented_example()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_declared_clusters_and_routes_reach_the_mesh() -> None:
    with FakeXds() as xds, xds.mesh(ready_timeout_s=2.0) as mesh:
        xds.set_service(
            "shop:80",
            {"v1": ["127.0.0.1:9001", ("127.0.0.1", 9002)], "v2": endpoints("v2", ["[::1]:9003"])},
            routes=[prefix_route("/beta", "v2"), prefix_route("/", "v1")],
        )
        mesh.wait_ready("xds:///shop:80")
        clusters = mesh.config_dump()["services"]["shop:80"]["clusters"]
        assert clusters == {"v1": ["127.0.0.1:9001", "127.0.0.1:9002"], "v2": ["[::1]:9003"]}


@pytest.mark.parametrize(
    ("declare", "error", "names"),
    [
        (lambda xds: xds.set("xds", "a", None), ValueError, "'xds': expected one of lds"),
        (lambda xds: xds.set("eds", "a", listener("a", "r")), TypeError, "EndpointsResource"),
        (lambda xds: xds.set_service("shop", {"c": []}), ValueError, "expected HOST:PORT"),
        (lambda xds: xds.set_service("shop:80", {}), ValueError, "at least one cluster"),
        (lambda xds: xds.set_service("shop:80", {"c": ["nope"]}), ValueError, "'nope'"),
        (lambda xds: xds.set_service("shop:80", {"c": ["h:0"]}), ValueError, "1-65535"),
        (
            lambda xds: xds.set_service("shop:80", {"c": []}, routes=[prefix_route("/", "d")]),
            ValueError,
            "clusters not given: ['d']",
        ),
        (lambda xds: xds.active("cluster"), ValueError, "'cluster'"),
        (lambda xds: xds.set_service("shop:80", ["h:1"]), TypeError, "{cluster: endpoints}"),
        (lambda xds: xds.set_service("shop:80", {"c": "h:1"}), TypeError, "of 'c': expected"),
        (
            lambda xds: xds.set_service("shop:80", {"c": []}, routes=["/"]),
            TypeError,
            "routes: expected a Route, got str",
        ),
    ],
)
def test_bad_declarations_are_named(declare: object, error: type[Exception], names: str) -> None:
    with FakeXds() as xds:
        with pytest.raises(error, match=re.escape(names)):
            declare(xds)  # type: ignore[operator]
        assert not any(xds.served(kind) for kind in ("lds", "rds", "cds", "eds"))
