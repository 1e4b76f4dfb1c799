"""A plaintext mesh does not load what only identities, TLS or servers need.

The memory a ``Mesh`` adds (docs/benchmarks.md, ``bench/call_count.py``) was mostly
cryptography and PyJWT, loaded by every mesh before any token or certificate was in
sight. In a fresh interpreter (this one has imported everything), ``import meshlib``,
a ``Mesh`` over a real control plane and one HTTP and one gRPC call through it must
leave these modules unloaded; a mesh with an identity loads them where it uses them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.backends import WHO, grpc_backends, http_backends
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import running_controlplane

pytestmark = pytest.mark.integration

#: Modules a plaintext client never needs (top-level packages match their submodules).
NOT_FOR_PLAINTEXT = (
    "cryptography",
    "jwt",
    "re2",
    "meshlib.security.keeper",
    "meshlib.security.pki",
    "meshlib.serving",
    "meshlib.transport.registration",
    "meshlib.xds_client.decode_inbound",
)

CHILD = """
import json, sys
import meshlib

bootstrap, http_url, grpc_target, method = sys.argv[1:]
with meshlib.Mesh(bootstrap=bootstrap) as mesh:
    with mesh.http_client() as http:
        served = http.get(http_url).json()["served_by"]
    with mesh.grpc_channel(grpc_target) as channel:
        answer = channel.unary_unary(method)(b"", timeout=10).decode()
print(json.dumps({"http": served, "grpc": answer, "modules": sorted(sys.modules)}))
"""


def test_a_plaintext_mesh_and_its_first_calls_load_no_security_or_server_code(
    tmp_path: Path,
) -> None:
    with grpc_backends(1) as grpc_bs, http_backends(1) as http_bs:
        config = write_config(
            tmp_path / "mesh.yaml",
            service_entry("echo", 50051, [grpc_bs[0].port]),
            service_entry("attendees", 8080, [http_bs[0].port], protocol="HTTP"),
        )
        with running_controlplane(config) as cp:
            bootstrap = cp.write_bootstrap(tmp_path / "bootstrap.json", "lazy-imports")
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(bootstrap),
                 "http://attendees:8080/x", "xds:///echo:50051", WHO],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert (result["http"], result["grpc"]) == ("h0", "g0")
    loaded = [
        name
        for name in result["modules"]
        if any(name == lazy or name.startswith(f"{lazy}.") for lazy in NOT_FOR_PLAINTEXT)
    ]
    assert loaded == [], f"a plaintext mesh loaded {loaded}"


def test_the_version_the_xds_node_reports_is_the_installed_distributions() -> None:
    """The node's user_agent_version is ``meshlib.__version__`` (no metadata read)."""
    from importlib import metadata

    import meshlib
    from meshlib.xds_client.node import user_agent_version

    assert user_agent_version() == meshlib.__version__ == metadata.version("meshlib-xds")
