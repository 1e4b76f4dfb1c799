from __future__ import annotations

import asyncio

import pytest

from meshlib.errors import DeadlineExceeded, ResilienceValueError
from meshlib.resilience.deadline import (
    DEADLINE_HEADER,
    ENVOY_TIMEOUT_HEADER,
    Deadline,
    check_deadline,
    current_deadline,
    deadline_from_headers,
    deadline_headers,
    deadline_scope,
    decode_grpc_timeout,
    encode_grpc_timeout,
    incoming_deadline_scope,
    remaining_time,
)
from tests.resilience.fakes import FakeClock


def test_deadline_remaining_and_expiry() -> None:
    clock = FakeClock()
    deadline = Deadline.after(2.0, clock=clock)
    assert deadline.remaining() == pytest.approx(2.0)
    clock.advance(1.5)
    assert not deadline.expired()
    clock.advance(0.5)
    assert deadline.expired()
    assert deadline.remaining() == 0.0
    with pytest.raises(DeadlineExceeded):
        deadline.check()


def test_nested_scopes_share_one_budget_and_never_extend_it() -> None:
    clock = FakeClock()
    assert current_deadline() is None
    with deadline_scope(1.0, clock=clock) as outer:
        assert outer is not None
        with deadline_scope(5.0, clock=clock) as inner:
            assert inner is outer  # the caller's shorter budget wins
        with deadline_scope(0.25, clock=clock) as shorter:
            assert shorter is not None and shorter.at == pytest.approx(clock() + 0.25)
            assert current_deadline() is shorter
        assert current_deadline() is outer
        with deadline_scope() as unchanged:
            assert unchanged is outer
        assert remaining_time() == pytest.approx(1.0)
    assert current_deadline() is None


@pytest.mark.parametrize("start", [0.0, 1e9])
def test_deadlines_on_different_clocks_compare_by_time_left(start: float) -> None:
    clock = FakeClock(start)
    soon_fake = Deadline.after(1.0, clock=clock)
    late_fake = Deadline.after(100.0, clock=clock)
    real = Deadline.after(10.0)
    assert real.earliest(soon_fake) is soon_fake and soon_fake.earliest(real) is soon_fake
    assert real.earliest(late_fake) is real and late_fake.earliest(real) is real
    clock.advance(2.0)
    with deadline_scope(deadline=real), deadline_scope(1.0, clock=clock) as inner:
        assert inner is not None and inner.clock is clock and not inner.expired()


def test_expired_work_is_not_started() -> None:
    clock = FakeClock()
    check_deadline()  # no deadline: fine
    with deadline_scope(0.1, clock=clock):
        check_deadline()
        clock.advance(0.2)
        with pytest.raises(DeadlineExceeded) as caught:
            check_deadline("lookup")
        assert caught.value.http_status == 504 and caught.value.grpc_status == 4


async def test_async_tasks_inherit_the_deadline_and_do_not_leak_it() -> None:
    clock = FakeClock()

    async def child() -> Deadline | None:
        with deadline_scope(10.0, clock=clock):
            return current_deadline()

    with deadline_scope(1.0, clock=clock) as outer:
        seen = await asyncio.create_task(child())
        assert seen is outer
    assert current_deadline() is None


@pytest.mark.parametrize(
    ("seconds", "encoded"),
    [
        (1.5, "1500m"),
        (2.0, "2000m"),
        (0.0005, "500u"),
        (0.0, "0u"),
        (200_000.0, "200000S"),  # 2e8 ms does not fit 8 digits
        (1e9, "16666667M"),
        (1e13, "99999999H"),
    ],
)
def test_grpc_timeout_encoding(seconds: float, encoded: str) -> None:
    assert encode_grpc_timeout(seconds) == encoded


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2S", 2.0), ("1500m", 1.5), ("3M", 180.0), ("1H", 3600.0), ("250u", 0.00025), ("7n", 7e-9)],
)
def test_grpc_timeout_decoding(value: str, seconds: float) -> None:
    assert decode_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("seconds", [0.001, 0.123456, 1.5, 59.999, 3600.0, 86400.0 * 30])
def test_grpc_timeout_round_trip_never_shortens(seconds: float) -> None:
    decoded = decode_grpc_timeout(encode_grpc_timeout(seconds))
    assert seconds <= decoded <= seconds * 1.001 + 1e-3


@pytest.mark.parametrize("bad", ["", "S", "12", "123456789S", "1.5S", "-1S", "10x"])
def test_grpc_timeout_rejects_malformed_values(bad: str) -> None:
    with pytest.raises(ResilienceValueError, match="grpc-timeout"):
        decode_grpc_timeout(bad)


def test_http_header_round_trip() -> None:
    clock = FakeClock()
    deadline = Deadline.after(1.25, clock=clock)
    headers = deadline_headers(deadline)
    assert headers == {DEADLINE_HEADER: "1250"}
    received = deadline_from_headers(headers, clock=clock)
    assert received is not None and received.remaining() == pytest.approx(1.25)
    assert deadline_headers() == {}  # no current deadline: nothing to send


def test_incoming_headers_take_the_earliest_of_all_formats() -> None:
    clock = FakeClock()
    metadata: list[tuple[str, str | bytes]] = [
        ("grpc-timeout", "2S"),
        (ENVOY_TIMEOUT_HEADER, b"800"),
        ("X-Meshlib-Deadline-Ms", "900"),
    ]
    received = deadline_from_headers(metadata, clock=clock)
    assert received is not None and received.remaining() == pytest.approx(0.8)
    assert deadline_from_headers({"content-type": "text/plain"}, clock=clock) is None
    with pytest.raises(ResilienceValueError, match=DEADLINE_HEADER):
        deadline_from_headers({DEADLINE_HEADER: "soon"}, clock=clock)


def test_incoming_deadline_scope_sets_the_server_side_budget() -> None:
    clock = FakeClock()
    with incoming_deadline_scope({"grpc-timeout": "100m"}, clock=clock) as deadline:
        assert current_deadline() is deadline
        assert remaining_time() == pytest.approx(0.1)
        clock.advance(0.1)
        with pytest.raises(DeadlineExceeded):
            check_deadline()
    assert current_deadline() is None
