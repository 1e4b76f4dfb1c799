"""The control plane's jwksUri keeper against a real HTTP server: the keys are fetched and
put inline, refreshed (a rotation at the uri reaches the config and calls on_change once),
and a failed fetch — an HTTP error, a document that is no key set, nobody listening —
keeps the last good keys, is counted and shown naming the uri, and never stops the
keeper; a uri never fetched gets the unusable key set (tokens refused)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from controlplane.cp_metrics import ControlPlaneMetrics
from controlplane.jwks_keeper import JwksKeeper
from controlplane.model import MeshConfig
from controlplane.translate.security_jwt import UNAVAILABLE_JWKS
from tests.controlplane.config_cases import load_text
from tests.controlplane.jwks_server import JwksServer, jwks_of, jwks_server
from tests.support.waiting import free_port

KEY_A, KEY_B = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def config_for(tmp_path: Path, uri: str) -> MeshConfig:
    text = f"""\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: conference}}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: {uri}
"""
    return load_text(tmp_path / "ra.yaml", text)


def held_kids(keeper: JwksKeeper, config: MeshConfig) -> list[str]:
    (policy,) = keeper.resolve(config).request_authentications
    (rule,) = policy.rules
    return [key.get("kid", "") for key in json.loads(rule.jwks)["keys"]] if rule.jwks else []


async def until(probe: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_keys_are_fetched_refreshed_and_failures_keep_the_last_good(
    tmp_path: Path,
) -> None:
    with jwks_server(jwks_of(("a", KEY_A))) as server:
        config = config_for(tmp_path, server.uri)
        changes: list[float] = []
        metrics = ControlPlaneMetrics()
        keeper = JwksKeeper(lambda: changes.append(time.monotonic()), refresh_s=0.2,
                            metrics=metrics)  # fmt: skip
        await keeper.prefetch(config)
        assert held_kids(keeper, config) == ["a"]
        task = asyncio.create_task(keeper.run())
        try:
            server.body = jwks_of(("b", KEY_B))  # a rotation at the uri
            await until(lambda: held_kids(keeper, config) == ["b"], "the rotated keys")
            assert len(changes) == 1  # refreshes that change nothing push nothing
            await until(lambda: server.requests >= 4, "more refreshes")
            assert len(changes) == 1

            for status, body, error in _failures(server):
                server.status, server.body = status, body
                await until(lambda: keeper.status()[0]["last_error"] is not None, "a failure")
                (state,) = keeper.status()
                assert state["last_error"] == error, state
                assert held_kids(keeper, config) == ["b"]  # the last good keys stay
                assert not task.done()
                server.status, server.body = 200, jwks_of(("b", KEY_B))
                await until(lambda: keeper.status()[0]["last_error"] is None, "a recovery")
            assert metrics.jwks_fetches["error"] >= 2 and metrics.jwks_fetches["ok"] >= 3
            assert 'mesh_controlplane_jwks_fetches_total{result="error"}' in metrics.render()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _failures(server: JwksServer) -> list[tuple[int, str, str]]:
    return [
        (503, "busy", f"jwksUri {server.uri}: HTTP 503"),
        (200, '{"k": 1}', f'jwksUri {server.uri}: the document must be a JSON Web Key Set: '
                          '{"keys": [...]}'),
    ]  # fmt: skip


async def test_an_unreachable_uri_serves_the_unusable_key_set_until_fetched(
    tmp_path: Path,
) -> None:
    uri = f"http://127.0.0.1:{free_port()}/jwks.json"  # nobody listens there
    config = config_for(tmp_path, uri)
    keeper = JwksKeeper(lambda: None, refresh_s=60)
    await keeper.prefetch(config)
    (state,) = keeper.status()
    assert state["uri"] == uri and state["keys"] == 0
    assert state["last_error"].startswith(f"jwksUri {uri}: ConnectError")
    (policy,) = keeper.resolve(config).request_authentications
    assert policy.rules[0].jwks == ""  # translation sends UNAVAILABLE_JWKS for it
    assert json.loads(UNAVAILABLE_JWKS)["keys"][0]["kid"] == "meshlib-jwks-unavailable"
    # A uri no longer in the config is forgotten.
    keeper.resolve(MeshConfig())
    assert keeper.status() == []


def test_a_refresh_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="--jwks-refresh 0s: must be more than 0"):
        JwksKeeper(lambda: None, refresh_s=0)
