"""Header additions and removals from RDS, applied in Envoy's order.

Each level (weighted cluster, route, virtual host, route configuration) is
compiled once into a :class:`CompiledMutation`; a route's request (and
response) mutations become one :class:`MutationChain` in the order Envoy
evaluates them, so the request path applies a prepared tuple.

Envoy's order (``RouteEntryImplBase::finalizeRequestHeaders`` and the
weighted cluster entry): the chosen weighted cluster's mutations first, then
route, virtual host, route configuration — the later a level runs, the more
it wins on conflicts — or, with ``most_specific_header_mutations_wins``,
route configuration, virtual host, route. Within a level removals come
before additions. Headers are plain ``(name, value)`` lists here; the
transports turn them into httpx headers or gRPC metadata.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshlib.xds_client.resources import HeaderAppendAction, HeaderValueOption

HeaderList = list[tuple[str, str]]

_APPEND = HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD
_ADD_IF_ABSENT = HeaderAppendAction.ADD_IF_ABSENT
_OVERWRITE_OR_ADD = HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD
_OVERWRITE = HeaderAppendAction.OVERWRITE_IF_EXISTS


def header_value(raw: str, where: str) -> str:
    """The literal value of an Envoy header value: ``%%`` is ``%``; other
    ``%COMMAND%`` substitutions are not supported by meshlib (a clear error)."""
    if "%" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] != "%":
            out.append(raw[i])
            i += 1
        elif raw.startswith("%%", i):
            out.append("%")
            i += 2
        else:
            raise ValueError(
                f"{where}: header value {raw!r} uses an Envoy %COMMAND% substitution, "
                "which meshlib does not support (write %% for a literal %)"
            )
    return "".join(out)


def _check_name(name: str, where: str) -> str:
    lowered = name.lower()
    if not lowered or lowered.startswith(":") or lowered == "host":
        raise ValueError(f"{where}: header {name!r} cannot be added or removed (use host_rewrite)")
    return lowered


class CompiledMutation:
    """One level's removals and additions (literal values, lower-case names)."""

    __slots__ = ("adds", "removes")

    def __init__(
        self, adds: Sequence[HeaderValueOption], removes: Sequence[str], where: str
    ) -> None:
        self.removes = frozenset(
            _check_name(n, f"{where}_to_remove[{i}]") for i, n in enumerate(removes)
        )
        compiled: list[tuple[str, str, HeaderAppendAction]] = []
        for i, option in enumerate(adds):
            at = f"{where}_to_add[{i}]"
            value = header_value(option.value, at)
            if value or option.keep_empty_value:
                compiled.append((_check_name(option.key, at), value, option.append_action))
        self.adds = tuple(compiled)

    def apply(self, headers: HeaderList) -> None:
        if self.removes:
            headers[:] = [(k, v) for k, v in headers if k.lower() not in self.removes]
        for name, value, action in self.adds:
            if action is _APPEND:
                headers.append((name, value))
                continue
            present = any(k.lower() == name for k, _ in headers)
            if action is _ADD_IF_ABSENT:
                if not present:
                    headers.append((name, value))
            elif action is _OVERWRITE_OR_ADD or (action is _OVERWRITE and present):
                headers[:] = [(k, v) for k, v in headers if k.lower() != name]
                headers.append((name, value))


class MutationChain:
    """The mutations of every level, in the order they run."""

    __slots__ = ("levels",)

    def __init__(self, levels: Sequence[CompiledMutation]) -> None:
        self.levels = tuple(m for m in levels if m.adds or m.removes)

    def __bool__(self) -> bool:
        return bool(self.levels)

    def apply(self, headers: HeaderList) -> None:
        """Mutate ``headers`` (a list the caller owns) in place."""
        for level in self.levels:
            level.apply(headers)


def ordered_chain(
    cluster_level: CompiledMutation | None,
    route: CompiledMutation,
    vhost: CompiledMutation,
    config: CompiledMutation,
    most_specific_wins: bool,
) -> MutationChain:
    """Envoy's evaluation order (see the module docstring)."""
    outer = [config, vhost, route] if most_specific_wins else [route, vhost, config]
    return MutationChain(([cluster_level] if cluster_level is not None else []) + outer)
