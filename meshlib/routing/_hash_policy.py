"""A route's ``hash_policy`` → the request hash ring_hash and maglev pick by.

Computed as Envoy's ``HashPolicyImpl::generateHash`` does, so the same key
reaches the same endpoint through meshlib, Envoy and gRPC (which builds its
ring the same way, gRFC A42):

- header: xxHash64 (seed 0) of the value, after the optional RE2 rewrite; a
  header sent several times hashes its values sorted, each hash seeding the
  next; absent → no hash;
- cookie: xxHash64 of the first cookie of that name; absent → no hash
  (meshlib is a client: it does not mint the cookie Envoy sets when ``ttl``
  is configured);
- source_ip: xxHash64 of the client's own IP as text. Envoy hashes the
  downstream address it sees; a proxyless client hashes the local address it
  sends from (:func:`local_source_ip`), so one client process sticks to one
  endpoint;
- query_parameter: xxHash64 of the parameter's first value (as sent, not
  percent-decoded); absent → no hash;
- filter_state: not available to a client (no hash).

Policies combine as ``hash = rotl64(hash, 1) XOR next`` over those that
produced a hash; a ``terminal`` policy that produced one ends the walk.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

import xxhash

from meshlib.matching.regex import CompiledSubstitution
from meshlib.xds_client.resources import HashPolicy

_MASK = (1 << 64) - 1
_xxh64 = xxhash.xxh64_intdigest

ValuesOf = Callable[[str], Sequence[str]]  # header name (lower-case) -> its values


def xxhash64_values(values: Sequence[str]) -> int:
    """Envoy's ``HashUtil::xxHash64`` over a span: one value → XXH64(value, 0);
    several → chained, each result seeding the next."""
    if len(values) == 1:
        return _xxh64(values[0].encode(), 0)
    result = 0
    for value in values:
        result = _xxh64(value.encode(), result)
    return result


def cookie_value(cookie_headers: Sequence[str], name: str) -> str | None:
    """The first cookie called ``name`` across ``Cookie`` headers (quotes stripped)."""
    for header in cookie_headers:
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                return value
    return None


def query_value(query: str, name: str) -> str | None:
    """The first value of parameter ``name`` in a raw query string (not decoded)."""
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None


_source_ip: str | None = None


def local_source_ip() -> str:
    """This host's outbound IP (the address a connection to another host leaves
    from), found once without sending anything; 127.0.0.1 if there is none."""
    global _source_ip
    if _source_ip is None:
        address = "127.0.0.1"
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(("10.255.255.255", 1))  # UDP connect: routing only, no packet
                address = probe.getsockname()[0]
        except OSError:
            pass
        _source_ip = address
    return _source_ip


class _CompiledPolicy:
    __slots__ = ("kind", "name", "rewrite", "terminal")

    def __init__(self, policy: HashPolicy, where: str) -> None:
        if policy.kind not in ("header", "cookie", "source_ip", "query_parameter", "filter_state"):
            raise ValueError(f"{where}: unknown hash policy kind {policy.kind!r}")
        self.kind = policy.kind
        self.name = policy.name.lower() if policy.kind == "header" else policy.name
        self.terminal = policy.terminal
        self.rewrite = (
            CompiledSubstitution(policy.regex, policy.substitution, f"{where}.regex_rewrite")
            if policy.kind == "header" and policy.regex
            else None
        )

    def evaluate(self, values_of: ValuesOf, query: str, source_ip: str) -> int | None:
        kind = self.kind
        if kind == "header":
            values = list(values_of(self.name))
            if not values:
                return None
            if self.rewrite is not None:
                values = [self.rewrite.apply(v) for v in values]
            values.sort()
            return xxhash64_values(values)
        if kind == "cookie":
            value = cookie_value(values_of("cookie"), self.name)
            return None if value is None else _xxh64(value.encode(), 0)
        if kind == "query_parameter":
            value = query_value(query, self.name) if query else None
            return None if value is None else _xxh64(value.encode(), 0)
        if kind == "source_ip":
            return _xxh64(source_ip.encode(), 0) if source_ip else None
        return None  # filter_state: nothing a client has


class CompiledHashPolicy:
    """All of a route's hash policies, in order."""

    __slots__ = ("_policies", "uses_source_ip")

    def __init__(self, policies: Sequence[HashPolicy], where: str) -> None:
        self._policies = tuple(
            _CompiledPolicy(p, f"{where}.hash_policy[{i}]") for i, p in enumerate(policies)
        )
        self.uses_source_ip = any(p.kind == "source_ip" for p in self._policies)

    def compute(self, values_of: ValuesOf, query: str, source_ip: str = "") -> int | None:
        """The request hash, or None when no policy produced one."""
        result: int | None = None
        for policy in self._policies:
            value = policy.evaluate(values_of, query, source_ip)
            if value is not None:
                previous = 0 if result is None else ((result << 1) | (result >> 63)) & _MASK
                result = previous ^ value
            if policy.terminal and result is not None:
                break
        return result
