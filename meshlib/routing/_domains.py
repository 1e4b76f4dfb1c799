"""Virtual host selection by request authority, as Envoy and gRPC do it.

Precedence (gRFC A28, Envoy's route docs): an exact domain, then the longest
suffix wildcard (``*.foo.com``), then the longest prefix wildcard (``foo.*``),
then ``*``. Comparison is case-insensitive, a wildcard never matches the
empty string, and when two virtual hosts claim the same domain the first wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

V = TypeVar("V")

_CACHE_LIMIT = 1024


class DomainIndex(Generic[V]):
    """Maps an authority to the value (virtual host) whose domains match it best."""

    def __init__(
        self, entries: Sequence[tuple[Sequence[str], V]], where: str = "virtual_hosts"
    ) -> None:
        self._exact: dict[str, V] = {}
        suffixes: list[tuple[str, V]] = []
        prefixes: list[tuple[str, V]] = []
        self._default: V | None = None
        for index, (domains, value) in enumerate(entries):
            for domain in domains:
                name = domain.lower()
                if not name:
                    raise ValueError(f"{where}[{index}].domains: empty domain")
                if name == "*":
                    if self._default is None:
                        self._default = value
                elif name.startswith("*"):
                    suffixes.append((name[1:], value))
                elif name.endswith("*"):
                    prefixes.append((name[:-1], value))
                elif "*" in name:
                    raise ValueError(
                        f"{where}[{index}].domains: wildcard must lead or trail: {domain!r}"
                    )
                else:
                    self._exact.setdefault(name, value)
        # Longest first, so the first hit is the best one.
        self._suffixes = sorted(suffixes, key=lambda item: -len(item[0]))
        self._prefixes = sorted(prefixes, key=lambda item: -len(item[0]))
        self._cache: dict[str, V | None] = {}

    def lookup(self, authority: str) -> V | None:
        """The best match for ``authority``, or None."""
        try:
            return self._cache[authority]
        except KeyError:
            pass
        found = self._search(authority.lower())
        if len(self._cache) < _CACHE_LIMIT:
            self._cache[authority] = found
        return found

    def _search(self, host: str) -> V | None:
        value = self._exact.get(host)
        if value is not None:
            return value
        for suffix, value in self._suffixes:
            if len(host) > len(suffix) and host.endswith(suffix):
                return value
        for prefix, value in self._prefixes:
            if len(host) > len(prefix) and host.startswith(prefix):
                return value
        return self._default
