"""Hash policies compute Envoy's request hash (xxHash64, rotate-xor combining)."""

from __future__ import annotations

import pytest
import xxhash

from meshlib.routing._hash_policy import (
    CompiledHashPolicy,
    cookie_value,
    local_source_ip,
    query_value,
    xxhash64_values,
)
from meshlib.xds_client.resources import HashPolicy

MASK = (1 << 64) - 1


def h(text: str, seed: int = 0) -> int:
    return xxhash.xxh64_intdigest(text.encode(), seed)


def rotl1(value: int) -> int:
    return ((value << 1) | (value >> 63)) & MASK


def values(headers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return lambda name: headers.get(name, [])


def test_xxhash64_matches_the_reference_constant() -> None:
    assert xxhash64_values([""]) == 0xEF46DB3751D8E999  # XXH64 of the empty input, seed 0


def test_header_hash_and_absent_header() -> None:
    policy = CompiledHashPolicy([HashPolicy("header", "X-User")], "hp")
    assert policy.compute(values({"x-user": ["alice"]}), "") == h("alice")
    assert policy.compute(values({}), "") is None


def test_repeated_header_hashes_sorted_values_chained() -> None:
    policy = CompiledHashPolicy([HashPolicy("header", "x-k")], "hp")
    expected = h("b", h("a"))
    assert policy.compute(values({"x-k": ["b", "a"]}), "") == expected
    assert policy.compute(values({"x-k": ["a", "b"]}), "") == expected


def test_header_regex_rewrite_before_hashing() -> None:
    policy = CompiledHashPolicy(
        [HashPolicy("header", "x-path", regex="^/users/([0-9]+)/.*$", substitution=r"\1")], "hp"
    )
    assert policy.compute(values({"x-path": ["/users/42/photos"]}), "") == h("42")


def test_policies_combine_with_rotate_xor_and_skip_missing() -> None:
    policy = CompiledHashPolicy(
        [
            HashPolicy("header", "x-a"),
            HashPolicy("header", "x-missing"),
            HashPolicy("query_parameter", "q"),
        ],
        "hp",
    )
    got = policy.compute(values({"x-a": ["1"]}), "q=two&q=three")
    assert got == rotl1(h("1")) ^ h("two")


def test_terminal_stops_at_the_first_policy_that_hashed() -> None:
    policy = CompiledHashPolicy(
        [
            HashPolicy("header", "x-missing", terminal=True),
            HashPolicy("header", "x-a", terminal=True),
            HashPolicy("header", "x-b"),
        ],
        "hp",
    )
    assert policy.compute(values({"x-a": ["1"], "x-b": ["2"]}), "") == h("1")


def test_cookie_and_source_ip() -> None:
    policy = CompiledHashPolicy([HashPolicy("cookie", "session")], "hp")
    jar = {"cookie": ['a=1; session="abc"', "session=later"]}
    assert policy.compute(values(jar), "") == h("abc")
    assert cookie_value(["x=1"], "session") is None
    ip = CompiledHashPolicy([HashPolicy("source_ip")], "hp")
    assert ip.uses_source_ip
    assert ip.compute(values({}), "", "10.0.0.7") == h("10.0.0.7")
    assert local_source_ip().count(".") == 3


def test_query_value_is_raw_first_occurrence() -> None:
    assert query_value("a=1&b=x%20y&b=2", "b") == "x%20y"
    assert query_value("a=1", "b") is None


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match=r"hp\.hash_policy\[0\]: unknown hash policy kind"):
        CompiledHashPolicy([HashPolicy("connection")], "hp")
