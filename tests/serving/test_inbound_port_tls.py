"""A gRPC port's TLS against its inbound listener's mode: a port added with TLS where the
mesh says plaintext (PERMISSIVE, DISABLE), or without TLS where it says STRICT, fails every
mesh client's handshake while the server sees nothing, so meshlib says so when the
listener arrives. Listeners are the control plane's own translation, fed by hand."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from controlplane.config import load_config
from controlplane.model import NodeInfo
from controlplane.translate import translate
from meshlib.serving.inbound_policy import InboundPolicy, listener_name
from meshlib.xds_client.resource_types import LISTENER
from tests.interop.security_mesh import mesh_yaml
from tests.xds_client import xds_builders as b

TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s"
PORT = 50070


class _Source:
    """The named-watch surface of the xDS client, by hand."""

    def __init__(self) -> None:
        self.watchers: dict[str, Any] = {}

    def watch(self, resource_type: Any, name: str, watcher: Any) -> Any:
        self.watchers[name] = watcher
        return lambda: self.watchers.pop(name, None)


def _listener(tmp_path: Path, mode: str) -> Any:
    path = tmp_path / f"{mode}.yaml"
    path.write_text(mesh_yaml(PORT, mode, ""))
    node = NodeInfo(id="n", cluster="c", locality="r/z/s")
    name = listener_name(TEMPLATE, "127.0.0.1", PORT)
    return LISTENER.decode(b.pack(translate(load_config(path), [], node)[b.LDS][name]))


@pytest.mark.parametrize(
    ("mode", "served_tls", "warned"),
    [
        ("PERMISSIVE", True, "plaintext (PERMISSIVE or DISABLE)"),
        ("DISABLE", True, "plaintext (PERMISSIVE or DISABLE)"),
        ("STRICT", False, "STRICT"),
        ("STRICT", True, None),
        ("PERMISSIVE", False, None),
        ("STRICT", None, None),  # ASGI: the port's TLS is not said, nothing to check
    ],
)
def test_a_port_whose_tls_is_not_the_meshs_is_named(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    mode: str,
    served_tls: bool | None,
    warned: str | None,
) -> None:
    source = _Source()
    policy = InboundPolicy(lambda: source, TEMPLATE)
    name = policy.serve("127.0.0.1", PORT, tls=served_tls)
    caplog.set_level(logging.INFO, logger="meshlib.serving")
    caplog.clear()
    source.watchers[name].on_changed(_listener(tmp_path, mode))
    mismatches = [
        record
        for record in caplog.records
        if record.getMessage().startswith("inbound_port_tls_mismatch")
    ]
    if warned is None:
        assert mismatches == []
    else:
        (record,) = mismatches
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert f"listener='{name}'" in message and f"mesh='{warned}'" in message
        assert "add the port with" in message
    policy.close()
