from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from meshlib.errors import BootstrapError
from meshlib.xds_client import load_bootstrap, parse_bootstrap
from meshlib.xds_client.resources import Locality

VALID: dict[str, Any] = {
    "xds_servers": [
        {
            "server_uri": "127.0.0.1:15010",
            "channel_creds": [{"type": "google_default"}, {"type": "insecure"}],
            "server_features": ["xds_v3"],
        }
    ],
    "node": {
        "id": "node-1",
        "cluster": "conference",
        "locality": {"region": "eu", "zone": "eu-1a"},
        "metadata": {"mesh.proxy": "sidecar", "mesh.outbound_port": 15001},
    },
    "certificate_providers": {"ignored": {}},
}


def test_tls_channel_creds_and_file_watcher_provider() -> None:
    files = {
        "certificate_file": "/certs/cert-chain.pem",
        "private_key_file": "/certs/key.pem",
        "ca_certificate_file": "/certs/root-cert.pem",
        "refresh_interval": "5s",
    }
    data = copy.deepcopy(VALID)
    data["xds_servers"][0]["channel_creds"] = [{"type": "tls", "config": files}]
    data["certificate_providers"] = {"default": {"plugin_name": "file_watcher", "config": files}}
    got = parse_bootstrap(data, "bootstrap test")
    creds = got.server.selected_creds
    assert creds.type == "tls" and creds.files is not None
    assert creds.files.private_key_file == "/certs/key.pem"
    provider = got.certificate_providers["default"]
    assert (provider.certificate_file, provider.refresh_s) == ("/certs/cert-chain.pem", 5.0)


def test_parse_valid() -> None:
    got = parse_bootstrap(VALID, "bootstrap test")
    server = got.server
    assert server.server_uri == "127.0.0.1:15010"
    assert [c.type for c in server.channel_creds] == ["google_default", "insecure"]
    assert server.selected_creds.type == "insecure"
    assert server.server_features == ("xds_v3",)
    assert got.node.id == "node-1"
    assert got.node.cluster == "conference"
    assert got.node.locality == Locality("eu", "eu-1a", "")
    assert got.node.metadata["mesh.outbound_port"] == 15001


def test_load_order(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(VALID))
    other = json.loads(json.dumps(VALID))
    other["node"]["id"] = "from-env-path"
    second.write_text(json.dumps(other))
    inline = json.loads(json.dumps(VALID))
    inline["node"]["id"] = "from-env-config"
    env = {"GRPC_XDS_BOOTSTRAP": str(second), "GRPC_XDS_BOOTSTRAP_CONFIG": json.dumps(inline)}
    assert load_bootstrap(first, environ=env).node.id == "node-1"
    assert load_bootstrap(environ=env).node.id == "from-env-path"
    del env["GRPC_XDS_BOOTSTRAP"]
    assert load_bootstrap(environ=env).node.id == "from-env-config"


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(
        BootstrapError, match=r"set GRPC_XDS_BOOTSTRAP .* or GRPC_XDS_BOOTSTRAP_CONFIG"
    ):
        load_bootstrap(environ={})
    missing = tmp_path / "missing.json"
    with pytest.raises(BootstrapError, match=re.escape(f"bootstrap {missing}: cannot read")):
        load_bootstrap(missing, environ={})
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(BootstrapError, match=re.escape(f"bootstrap {bad}: invalid JSON")):
        load_bootstrap(bad, environ={})
    with pytest.raises(BootstrapError, match=r"bootstrap \$GRPC_XDS_BOOTSTRAP_CONFIG: must be"):
        load_bootstrap(environ={"GRPC_XDS_BOOTSTRAP_CONFIG": "[]"})


def _parent(data: dict[str, Any], path: str) -> tuple[Any, str]:
    """The container holding the last part of a dotted ``path`` (digits index lists)."""
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    return target, last


def without(path: str) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    target, last = _parent(data, path)
    del target[last]
    return data


def replaced(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    target, last = _parent(data, path)
    target[last] = value
    return data


INVALID: list[tuple[dict[str, Any], str]] = [
    (without("xds_servers"), "xds_servers: required"),
    (replaced("xds_servers", []), "xds_servers: must not be empty"),
    (replaced("xds_servers", {}), "xds_servers: must be a list"),
    (without("xds_servers.0.server_uri"), "xds_servers[0].server_uri: required"),
    (replaced("xds_servers.0.server_uri", 5), "xds_servers[0].server_uri: must be a string"),
    (without("xds_servers.0.channel_creds"), "xds_servers[0].channel_creds: required"),
    (
        replaced("xds_servers.0.channel_creds", []),
        "xds_servers[0].channel_creds: must not be empty",
    ),
    (
        replaced("xds_servers.0.channel_creds", [{"type": "google_default"}]),
        "xds_servers[0].channel_creds: channel credentials type 'google_default' is not "
        "supported yet",
    ),
    (
        replaced(
            "xds_servers.0.channel_creds", [{"type": "tls", "config": {"certificate_file": "c"}}]
        ),
        "xds_servers[0].channel_creds[0].config: certificate_file and private_key_file go together",
    ),
    (
        replaced("certificate_providers", {"default": {"plugin_name": "spiffe"}}),
        "certificate_providers.default.plugin_name: 'spiffe' is not supported (use 'file_watcher')",
    ),
    (
        replaced(
            "certificate_providers",
            {"default": {"plugin_name": "file_watcher", "config": {"refresh_interval": "1m"}}},
        ),
        "certificate_providers.default.config.refresh_interval: must be a positive duration",
    ),
    (
        replaced("certificate_providers", {"default": {"plugin_name": "file_watcher"}}),
        "certificate_providers.default.config: certificate_file, private_key_file and "
        "ca_certificate_file are required",
    ),
    (
        replaced("xds_servers.0.channel_creds", [{"type": "alts"}]),
        "xds_servers[0].channel_creds: no supported type among 'alts'",
    ),
    (
        replaced("xds_servers.0.channel_creds", [{"config": {}}]),
        "xds_servers[0].channel_creds[0].type: required",
    ),
    (
        replaced("xds_servers.0.server_features", "xds_v3"),
        "xds_servers[0].server_features: must be a list of strings",
    ),
    (without("node"), "node: required"),
    (without("node.id"), "node.id: required"),
    (replaced("node.id", 7), "node.id: must be a string"),
    (replaced("node.cluster", 7), "node.cluster: must be a string"),
    (replaced("node.locality", {"zone": 1}), "node.locality.zone: must be a string"),
    (replaced("node.metadata", []), "node.metadata: must be an object"),
]


@pytest.mark.parametrize(("data", "expected"), INVALID, ids=[e for _, e in INVALID])
def test_invalid(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(BootstrapError) as info:
        parse_bootstrap(data, "bootstrap /path/x.json")
    assert str(info.value).startswith(f"bootstrap /path/x.json: {expected}")
