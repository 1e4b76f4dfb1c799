"""Admin API tokens: every route of a real control plane process, by real HTTP,
without a token (401), with a token of every other scope (403) and with the
right one; the token file's refusals at start; reloads on change and SIGHUP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.admin_auth import TokenFileError, parse_tokens
from controlplane.app import ControlPlane
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SERVE = [sys.executable, "-m", "controlplane.cli", "serve"]
EPHEMERAL = ["--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"]

# One token per scope, and for each scope one that holds every *other* plain scope.
TOKENS = {
    "read": "tok-read-0123456789",
    "write": "tok-write-0123456789",
    "register": "tok-register-0123456789",
    "admin": "tok-admin-0123456789",
    "not-read": "tok-not-read-0123456789",
    "not-write": "tok-not-write-0123456789",
    "not-register": "tok-not-register-0123456789",
}
TOKEN_FILE = f"""\
# admin API tokens
{TOKENS["read"]} read
{TOKENS["write"]} write   # a writer
{TOKENS["register"]} register
{TOKENS["admin"]} admin

{TOKENS["not-read"]} write,register
{TOKENS["not-write"]} read,register
{TOKENS["not-register"]} read,write
"""

# The scope each route needs, written out (not read from the code under test).
EXPECTED = {
    ("GET", "/livez"): None,
    ("GET", "/readyz"): None,
    ("POST", "/v1/workloads"): "register",
    ("PUT", "/v1/workloads/{id}/heartbeat"): "register",
    ("DELETE", "/v1/workloads/{id}"): "register",
    ("GET", "/v1/workloads"): "read",
    ("GET", "/v1/clients"): "read",
    ("GET", "/v1/clients/{node}"): "read",
    ("GET", "/v1/config"): "read",
    ("GET", "/metrics"): "read",
    ("POST", "/v1/apply"): "write",
    ("GET", "/v1/resources"): "read",
    ("GET", "/v1/resources/{kind}"): "read",
    ("GET", "/v1/resources/{kind}/{name}"): "read",
    ("DELETE", "/v1/resources/{kind}/{name}"): "write",
}
SAMPLE = {"id": "w-1", "node": "node-1", "name": "x", "kind": "ServiceEntry"}


def _routes() -> list[tuple[str, str]]:
    """Every (method, pattern) the control plane's admin app serves, today's and any
    added later (HEAD is aiohttp's twin of GET)."""
    app = ControlPlane(None, "127.0.0.1:0", "127.0.0.1:0").admin_app()  # starts nothing
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    return sorted(routes)


def _needed(method: str, pattern: str) -> str | None:
    if (method, pattern) in EXPECTED:
        return EXPECTED[(method, pattern)]
    return "read" if method == "GET" else "write"  # the documented default for new routes


def _path(pattern: str) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: SAMPLE.get(m.group(1), "x"), pattern)


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    folder = tmp_path_factory.mktemp("auth")
    config = write_config(folder / "mesh.yaml", service_entry("echo", 50051, [7001]))
    tokens = folder / "tokens"
    tokens.write_text(TOKEN_FILE)
    with running_controlplane(config, extra_args=["--admin-token-file", str(tokens)]) as cp:
        yield cp


def _call(
    cp: ControlPlaneProcess, method: str, path: str, token: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    return httpx.request(method, cp.admin_url + path, headers=headers, content=body, timeout=5)


def test_the_table_covers_every_route() -> None:
    routes = _routes()
    assert set(EXPECTED) <= set(routes), "a route of the table is gone"
    assert len(routes) >= len(EXPECTED)


@pytest.mark.parametrize(("method", "pattern"), _routes())
def test_route_needs_its_scope(cp: ControlPlaneProcess, method: str, pattern: str) -> None:
    path = _path(pattern)
    needed = _needed(method, pattern)
    if needed is None:
        assert _call(cp, method, path).status_code in (200, 503)
        return
    missing = _call(cp, method, path)
    assert missing.status_code == 401, missing.text
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["field"] == "Authorization"
    wrong = _call(cp, method, path, "not-a-token")
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    lacking = _call(cp, method, path, TOKENS[f"not-{needed}"] if needed != "admin" else None)
    if needed != "admin":
        assert lacking.status_code == 403, lacking.text
        assert f'scope="{needed}"' in lacking.headers["WWW-Authenticate"]
        assert f"needs {needed}" in lacking.json()["error"]
    for holder in (needed, "admin"):
        allowed = _call(cp, method, path, TOKENS[holder])
        assert allowed.status_code not in (401, 403), (holder, allowed.text)


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/nothing-here", "read"),  # no route: a token all the same, then 404
        ("POST", "/v1/not-yet-a-route", "write"),
        ("DELETE", "/v1/clients", "write"),  # 405 only for those allowed to ask
        ("GET", "/livez/../v1/clients", "read"),  # dot segments resolve before the check
        ("GET", "/livez%2F..%2Fv1%2Fclients", "read"),
    ],
)
def test_unknown_routes_are_never_open(
    cp: ControlPlaneProcess, method: str, path: str, scope: str
) -> None:
    assert _call(cp, method, path).status_code == 401
    assert _call(cp, method, path, TOKENS[f"not-{scope}"]).status_code == 403
    assert _call(cp, method, path, TOKENS[scope]).status_code not in (401, 403)


def test_a_token_is_read_from_the_bearer_header_only(cp: ControlPlaneProcess) -> None:
    url = f"{cp.admin_url}/v1/clients"
    for header in (TOKENS["read"], f"Basic {TOKENS['read']}", "Bearer", "Bearer x y"):
        assert httpx.get(url, headers={"Authorization": header}, timeout=5).status_code == 401
    got = httpx.get(url, headers={"Authorization": f"bearer {TOKENS['read']}"}, timeout=5)
    assert got.status_code == 200


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("good read\nbad nope\n", 2, "unknown scope 'nope'; scopes are read, write, register"),
        ("# tokens\n\nlonely\n", 3, "missing scope"),
        ("a read\nb write\na admin\n", 3, "duplicate token (also on line 1)"),
        ("a read,,write\n", 1, "unknown scope an empty scope"),
        ("a read write\n", 1, "scopes separated by commas"),
        ("a Read\n", 1, "unknown scope 'Read'"),
    ],
)
def test_bad_token_file_names_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(TokenFileError) as raised:
        parse_tokens(text, "/etc/mesh/tokens")
    assert str(raised.value).startswith(f"/etc/mesh/tokens:{line}: ")
    assert message in str(raised.value)


def test_token_file_syntax() -> None:
    tokens = parse_tokens("t1 read,write # ops\n  t2\tadmin  \n#t3 read\n", "f")
    assert [(t.secret, sorted(s.value for s in t.scopes), t.line) for t in tokens] == [
        (b"t1", ["read", "write"], 1),
        (b"t2", ["admin"], 2),
    ]
    with pytest.raises(TokenFileError, match="holds no tokens"):
        parse_tokens("# nothing\n", "f")


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVE, *EPHEMERAL, *args], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("t1 read\nt2 superuser\n", ":2: unknown scope 'superuser'"),
        ("t1\n", ":1: missing scope"),
        ("t1 read\nt1 write\n", ":2: duplicate token (also on line 1)"),
        (None, ": cannot read: No such file or directory"),
    ],
)
def test_bad_token_file_refuses_to_start(tmp_path: Path, content: str | None, error: str) -> None:
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    tokens = tmp_path / "tokens"
    if content is not None:
        tokens.write_text(content)
    result = _serve("--config", str(config), "--admin-token-file", str(tokens))
    assert result.returncode == 2
    assert f"{tokens}{error}" in result.stderr
    assert result.stdout == ""


def test_unreadable_token_file_refuses_to_start(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    result = _serve("--config", str(config), "--admin-token-file", str(tmp_path))
    assert result.returncode == 2
    assert f"--admin-token-file {tmp_path}: cannot read" in result.stderr


@pytest.mark.parametrize("address", ["127.0.0.1:0", "0.0.0.0:0"])
def test_allow_remote_needs_a_token_file(tmp_path: Path, address: str) -> None:
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    result = _serve("--config", str(config), "--admin-allow-remote", "--admin-address", address)
    assert result.returncode == 2
    assert "--admin-allow-remote needs --admin-token-file" in result.stderr


def test_allow_remote_with_a_token_file_starts(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    tokens = tmp_path / "tokens"
    tokens.write_text("t-0123456789 read\n")
    args = ["--admin-allow-remote", "--admin-token-file", str(tokens)]
    with running_controlplane(config, extra_args=args) as cp:
        assert httpx.get(f"{cp.admin_url}/v1/config", timeout=5).status_code == 401


def _status(cp: ControlPlaneProcess, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{cp.admin_url}/v1/config", headers=headers, timeout=5).status_code


def test_token_file_is_reread_on_change_and_a_bad_edit_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    tokens = tmp_path / "tokens"
    tokens.write_text("old-0123456789 read\n")
    with running_controlplane(config, extra_args=["--admin-token-file", str(tokens)]) as cp:
        assert _status(cp, "old-0123456789") == 200
        new = tmp_path / "tokens.new"
        new.write_text("new-0123456789 read\n")
        new.replace(tokens)  # as config management writes it
        wait_for(lambda: _status(cp, "new-0123456789") == 200, timeout=10, what="the new token")
        assert _status(cp, "old-0123456789") == 401

        tokens.write_text("new-0123456789 read\nbroken superuser\n")
        wait_for(
            lambda: any("admin_tokens_refused" in line for line in cp.stderr_lines),
            timeout=10,
            what="the bad edit to be refused",
        )
        assert any(f"{tokens}:2: unknown scope" in line for line in cp.stderr_lines)
        assert _status(cp, "new-0123456789") == 200  # the tokens in force stay


def test_sighup_rereads_the_token_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    tokens = tmp_path / "tokens"
    tokens.write_text("aaaa-0123456789 read\n")
    before = os.stat(tokens)
    with running_controlplane(config, extra_args=["--admin-token-file", str(tokens)]) as cp:
        # Same inode, size and mtime: only the signal can tell the process.
        with open(tokens, "r+") as handle:
            handle.write("bbbb-0123456789 read\n")
        os.utime(tokens, ns=(before.st_atime_ns, before.st_mtime_ns))
        cp.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _status(cp, "bbbb-0123456789") == 200, timeout=10, what="SIGHUP reload")
        assert _status(cp, "aaaa-0123456789") == 401
        assert cp.proc.poll() is None


def test_meshctl_proxy_status_sends_its_token(cp: ControlPlaneProcess) -> None:
    command = [sys.executable, "-m", "controlplane.meshctl", "proxy-status", "-o", "json"]
    command += ["--admin-address", cp.admin_address]
    env = {k: v for k, v in os.environ.items() if k != "MESH_ADMIN_TOKEN"}
    refused = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert refused.returncode == 1
    assert "401" in refused.stderr and "bearer token is required" in refused.stderr
    for extra, environ in (
        (["--token", TOKENS["read"]], env),
        ([], {**env, "MESH_ADMIN_TOKEN": TOKENS["read"]}),
    ):
        allowed = subprocess.run(
            [*command, *extra], capture_output=True, text=True, timeout=30, env=environ
        )
        assert allowed.returncode == 0, allowed.stderr
        assert allowed.stdout.startswith('{\n  "items": [')
