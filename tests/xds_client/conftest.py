from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from meshlib.xds_client import Bootstrap, XdsClient, parse_bootstrap
from tests.xds_client.fake_ads import FakeAds

ClientFactory = Callable[..., XdsClient]


def bootstrap_for(address: str, **server: Any) -> Bootstrap:
    return parse_bootstrap(
        {
            "xds_servers": [
                {"server_uri": address, "channel_creds": [{"type": "insecure"}], **server}
            ],
            "node": {
                "id": "test-node",
                "cluster": "test",
                "locality": {"zone": "z1"},
                "metadata": {"team": "mesh", "port": 1},
            },
        },
        "bootstrap test",
    )


@pytest.fixture
def refused_address() -> Iterator[str]:
    """An address that refuses connections: bound (so no one else takes it), never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def ads() -> Iterator[FakeAds]:
    server = FakeAds()
    yield server
    server.stop()


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    clients: list[XdsClient] = []

    def make(address: str, **options: Any) -> XdsClient:
        server_options = options.pop("server", {})
        options.setdefault("backoff_base_s", 0.05)
        options.setdefault("backoff_max_s", 0.2)
        client = XdsClient(bootstrap_for(address, **server_options), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
