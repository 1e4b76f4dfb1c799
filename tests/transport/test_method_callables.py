"""The per-method multicallable cache stays bounded over endpoint churn."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from meshlib.transport.grpc_subchannels import MethodCallables


@pytest.fixture
def channels() -> Iterator[list[grpc.Channel]]:
    made = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in range(20000, 20010)]
    yield made
    for channel in made:
        channel.close()


def test_a_replaced_sub_channel_gets_a_fresh_multicallable(channels: list[grpc.Channel]) -> None:
    callables = MethodCallables("unary_unary", None, None)
    first = callables.get(channels[0], "svc:80", "10.0.0.1:80", "/pkg.S/M")
    assert callables.get(channels[0], "svc:80", "10.0.0.1:80", "/pkg.S/M") is first
    assert callables.get(channels[1], "svc:80", "10.0.0.1:80", "/pkg.S/M") is not first


def test_churning_endpoints_keep_the_cache_bounded(
    channels: list[grpc.Channel], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MethodCallables, "MAX_CALLABLES", 8)
    callables = MethodCallables("unary_unary", None, None)
    for n in range(100):  # 100 endpoints come and go over the channel's life
        callables.get(channels[n % len(channels)], "svc:80", f"10.0.0.{n}:80", "/pkg.S/M")
        assert len(callables) <= 8
    # The newest endpoint is still cached; the oldest ones were forgotten.
    newest = callables.get(channels[99 % 10], "svc:80", "10.0.0.99:80", "/pkg.S/M")
    assert callables.get(channels[99 % 10], "svc:80", "10.0.0.99:80", "/pkg.S/M") is newest
