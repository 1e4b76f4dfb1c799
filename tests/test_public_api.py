"""The public API DESIGN.md fixes: names, signatures, lifecycle."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import meshlib
from meshlib.transport.errors import MeshRequestError
from tests.routing.builders import endpoints
from tests.routing.fake_xds import FakeXds


def test_curated_names() -> None:
    for name in (
        "Mesh",
        "MeshTransport",
        "AsyncMeshTransport",
        "MeshError",
        "BootstrapError",
        "RoutingError",
        "NoRouteError",
        "ServiceNotReadyError",
        "NoHealthyEndpointError",
        "RegistrationError",
        "breakers",  # docs/resilience.md: a breaker registered here guards mesh calls
        "__version__",
    ):
        assert name in meshlib.__all__
        assert hasattr(meshlib, name)
    assert meshlib.__version__ == "0.1.0"
    assert issubclass(MeshRequestError, httpx.RequestError)
    assert issubclass(MeshRequestError, meshlib.RoutingError)


DOCS = Path(__file__).resolve().parent.parent / "docs"
PUBLIC_MODULES = (
    "meshlib",
    "meshlib.errors",
    "meshlib.asgi",
    "meshlib.serving",
    "meshlib.testing",
    "meshlib.resilience",
    "meshlib.xds_client",
)


def test_the_public_surface_is_documented_and_resolves() -> None:
    api = (DOCS / "api.md").read_text()
    every_doc = "".join(path.read_text() for path in DOCS.glob("*.md"))
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        assert f"`{name}`" in api, f"docs/api.md does not list {name}"
        for exported in getattr(module, "__all__", ()):
            assert hasattr(module, exported), f"{name}.__all__ names {exported!r}: missing"
    for exported in meshlib.__all__:
        assert exported == "__version__" or exported in every_doc, f"{exported} undocumented"
    for name in meshlib.errors.__dict__:
        value = getattr(meshlib.errors, name)
        if isinstance(value, type) and value.__module__ == "meshlib.errors":
            assert issubclass(value, meshlib.MeshError), f"meshlib.errors.{name}"


def test_public_submodules_are_attributes_of_a_bare_import() -> None:
    """docs/api.md writes ``meshlib.asgi.MeshMiddleware(app, ...)`` after ``import meshlib``:
    each public submodule is reachable that way (imported on first use)."""
    names = [name.removeprefix("meshlib.") for name in PUBLIC_MODULES[1:]]
    code = (
        "import sys, meshlib\n"
        f"for name in {names!r}:\n"
        "    assert getattr(meshlib, name) is sys.modules['meshlib.' + name], name\n"
        "    assert name in dir(meshlib), name\n"
        "print(meshlib.asgi.MeshMiddleware.__name__, meshlib.testing.FakeXds.__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["MeshMiddleware", "FakeXds"]


def test_design_server_names() -> None:
    """DESIGN.md's server side: mesh.grpc_server / aio_grpc_server and
    meshlib.asgi.MeshMiddleware(app, mesh=mesh) apply the mesh's server policies."""
    import meshlib.asgi

    assert "mesh" in inspect.signature(meshlib.asgi.MeshMiddleware).parameters
    for method in ("grpc_server", "aio_grpc_server", "server_policies"):
        assert callable(getattr(meshlib.Mesh, method))


def test_signatures() -> None:
    init = inspect.signature(meshlib.Mesh.__init__)
    assert list(init.parameters) == ["self", "bootstrap", "token", "ready_timeout_s"]
    assert init.parameters["token"].default is None  # DESIGN.md: Mesh(bootstrap=..., token=None)
    assert init.parameters["ready_timeout_s"].kind is inspect.Parameter.KEYWORD_ONLY
    assert init.parameters["ready_timeout_s"].default == 5.0
    register = inspect.signature(meshlib.Mesh.register)
    assert list(register.parameters)[:6] == [
        "self",
        "service",
        "port",
        "labels",
        "target_port",
        "address",
    ]


def test_missing_bootstrap_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRPC_XDS_BOOTSTRAP", raising=False)
    monkeypatch.delenv("GRPC_XDS_BOOTSTRAP_CONFIG", raising=False)
    with pytest.raises(meshlib.BootstrapError, match="GRPC_XDS_BOOTSTRAP"):
        meshlib.Mesh()


def test_bootstrap_from_path_starts_nothing_until_used(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(
        json.dumps(
            {
                "xds_servers": [
                    {"server_uri": "127.0.0.1:1", "channel_creds": [{"type": "insecure"}]}
                ],
                "node": {"id": "n"},
            }
        )
    )
    with meshlib.Mesh(bootstrap=path, ready_timeout_s=1) as mesh:
        assert mesh.bootstrap is not None and mesh.bootstrap.node.id == "n"
        assert mesh.config_dump() == {"services": {}}


def test_a_bad_ready_timeout_is_named_before_anything_starts(tmp_path: Path) -> None:
    path = tmp_path / "missing-bootstrap.json"  # not read: the argument is checked first
    with pytest.raises(TypeError, match=r"ready_timeout_s must be a number of seconds, got '5'"):
        meshlib.Mesh(bootstrap=path, ready_timeout_s="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ready_timeout_s must be >= 0, got -1"):
        meshlib.Mesh(bootstrap=path, ready_timeout_s=-1)
    with FakeXds() as feed, pytest.raises(TypeError, match="got None"):
        meshlib.Mesh.with_xds_client(feed, ready_timeout_s=None)  # type: ignore[arg-type]


def test_wait_ready_names_a_target_that_is_not_host_port() -> None:
    with FakeXds() as feed, meshlib.Mesh.with_xds_client(feed, ready_timeout_s=1) as mesh:
        for bad in ("attendees", "http://attendees:8080", "xds://attendees:8080"):
            with pytest.raises(ValueError, match=rf"target '{re.escape(bad)}': "):
                mesh.wait_ready(bad)
        with pytest.raises(meshlib.ServiceNotFoundError, match="attendees:8080"):
            mesh.wait_ready("xds:///attendees:8080")  # a good target the mesh does not have


def test_close_is_idempotent_and_final() -> None:
    feed = FakeXds()
    try:
        feed.set_service("svc:80", {"c": endpoints("c", [("127.0.0.1", 1)])})
        mesh = meshlib.Mesh.with_xds_client(feed)
        client = mesh.http_client()
        channel = mesh.grpc_channel("svc:80")
        mesh.wait_ready("xds:///svc:80")
        assert mesh.config_dump()["services"]["svc:80"]["clusters"] == {"c": ["127.0.0.1:1"]}
        mesh.close()
        mesh.close()
        assert client.is_closed
        with pytest.raises(RuntimeError, match="closed"):
            mesh.http_client()
        with pytest.raises(RuntimeError, match="closed"):
            mesh.grpc_channel("svc:80")
        channel.close()
    finally:
        feed.close()
