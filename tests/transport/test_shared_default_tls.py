"""httpx's default TLS context is built once and shared by the mesh's transports.

httpx parses the CA bundle into a new ``ssl.SSLContext`` for every transport made
without ``verify`` (about 0.8 MB each), and meshlib makes one transport per endpoint
plus the pass-through: one shared context per (trust_env, HTTP/2, CA environment)
keeps what httpx would build, once. What the user passes, and the mesh's own mTLS,
are left alone.
"""

from __future__ import annotations

import ssl
from dataclasses import replace

import certifi
import httpx
import pytest

import meshlib
from meshlib.routing.connection_pool import DEFAULT_POOL_SETTINGS
from meshlib.transport.pool_settings import httpx_pool_options, shared_default_tls
from tests.routing.fake_xds import FakeXds
from tests.transport.http_servers import echo_servers
from tests.transport.test_connection_pool_settings import TARGET, cluster, serve


def test_endpoint_transports_and_the_passthrough_share_one_default_context() -> None:
    web = replace(DEFAULT_POOL_SETTINGS, cluster="web")
    api = replace(DEFAULT_POOL_SETTINGS, cluster="api", connect_timeout_s=1.0)
    shared = shared_default_tls({})["verify"]
    assert isinstance(shared, ssl.SSLContext)
    assert httpx_pool_options({}, web)["verify"] is shared
    assert httpx_pool_options({"trust_env": True}, api)["verify"] is shared
    # what httpx itself would have built for verify=True
    built = httpx.create_ssl_context()
    assert (shared.verify_mode, shared.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert shared.cert_store_stats() == built.cert_store_stats()


def test_what_the_user_passes_is_kept() -> None:
    context = ssl.create_default_context()
    assert httpx_pool_options({"verify": False}, DEFAULT_POOL_SETTINGS)["verify"] is False
    assert httpx_pool_options({"verify": context}, DEFAULT_POOL_SETTINGS)["verify"] is context
    with_cert = httpx_pool_options({"cert": "client.pem"}, DEFAULT_POOL_SETTINGS)
    assert "verify" not in with_cert and with_cert["cert"] == "client.pem"


def test_contexts_differ_by_alpn_trust_env_and_ca_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    plain = shared_default_tls({})["verify"]
    # httpcore sets the ALPN list on the context at every connect: h2 gets its own
    assert shared_default_tls({"http2": True})["verify"] is not plain
    assert shared_default_tls({"trust_env": False})["verify"] is not plain
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    assert shared_default_tls({})["verify"] is not plain
    assert (
        shared_default_tls({"trust_env": False})["verify"]
        is shared_default_tls({"trust_env": False})["verify"]
    )


def test_requests_through_the_shared_context_transports_are_served(feed: FakeXds) -> None:
    with echo_servers(2) as servers, meshlib.Mesh.with_xds_client(feed) as mesh:
        serve(feed, cluster(), [server.port for server in servers])
        with mesh.http_client() as http:
            answers = [http.get(f"http://{TARGET}/").status_code for _ in range(4)]
    assert answers == [200] * 4
    assert [server.accepted for server in servers] == [1, 1]  # one endpoint transport each
