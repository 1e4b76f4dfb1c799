"""What a mesh channel's multicallables share, written once for the sync and aio channels.

:class:`~meshlib.transport.grpc_channel.MeshChannel` and
:class:`~meshlib.transport.grpc_aio_channel.AioMeshChannel` show only
``grpc.Channel``'s surface (and meshlib's documented extras); the internals their
multicallables and call plans use live here, in one :class:`ChannelCore` each
channel owns: the routing, the plan of one call, the sub-channels per
(endpoint, ``:authority``), the mirrors, and whether the channel was closed. The
two flavours differ only in what the core is given: how a sub-channel is opened
and closed, the mirror runner, and how a routing failure surfaces (sync
``MeshRpcError``, aio a :class:`~meshlib.errors.RoutingError` the call plan maps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from meshlib.errors import NoHealthyEndpointError, RoutingError
from meshlib.routing.connection_pool import PoolSettings
from meshlib.routing.plan import ForwardPlan
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_errors import MeshRpcError, aio_unavailable
from meshlib.transport.grpc_routing import ChannelOptions, GrpcRouting, Metadata, MethodPlanCache
from meshlib.transport.grpc_subchannels import SubChannels
from meshlib.transport.mirror import TaskMirror, ThreadMirror
from meshlib.transport.pool_settings import open_endpoint_channel
from meshlib.transport.services import MeshServices
from meshlib.xds_client.resources import Endpoint

if TYPE_CHECKING:
    from meshlib.transport.grpc_try import GrpcPlans

#: Why a call on a closed channel fails (as its sub-channels say it).
CLOSED = "this mesh transport is closed"
#: A sub-channel: ``grpc.Channel`` (sync) or ``grpc.aio.Channel``.
Sub = TypeVar("Sub")


def checked_options(target: str, options: object) -> list[tuple[str, Any]]:
    """The channel's ``options`` as grpc takes them, ``[(name, value), ...]``; a
    TypeError naming the channel and the option otherwise (grpc would fail only at the
    first call, deep inside)."""
    if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
        raise TypeError(f"channel {target!r}: options must be (name, value) pairs, got {options!r}")
    pairs = list(options)
    for option in pairs:
        if not (isinstance(option, tuple) and len(option) == 2 and isinstance(option[0], str)):
            raise TypeError(f"channel {target!r}: option {option!r} is not a (name, value) pair")
    return pairs


class ChannelCore(Generic[Sub]):
    """One channel's internals (see the module doc).

    ``grpc_module``: ``grpc`` or ``grpc.aio`` (opens the sub-channels);
    ``on_stale``: closes sub-channels whose endpoint left; ``mirrors``: runs shadows;
    ``aio``: routing failures stay meshlib's errors (the aio call plans map them);
    ``on_open``: called before a sub-channel is looked up (aio: binds the loop).
    """

    __slots__ = ("aio", "closed", "mirrors", "on_open", "routing", "subs")

    def __init__(
        self,
        mesh: MeshServices,
        target: str,
        options: ChannelOptions,
        grpc_module: Any,
        on_stale: Callable[[list[Sub]], None],
        mirrors: ThreadMirror | TaskMirror,
        *,
        aio: bool,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.routing = routing = GrpcRouting(mesh.directory, mesh.ready_timeout_s, target)
        user_options = checked_options(target, options)
        self.subs: SubChannels[Sub] = SubChannels(
            routing.state,
            routing.target,
            lambda ep, authority, settings: open_endpoint_channel(
                grpc_module,
                ep,
                routing.sub_channel_options(user_options, authority, settings),
                settings,
            ),
            on_stale,
        )
        self.mirrors = mirrors
        self.aio = aio
        self.on_open = on_open
        #: Whether the channel was closed (its plans stop reusing sub-channels).
        self.closed = False

    def plan(
        self, method: str, metadata: Metadata | None, cache: MethodPlanCache | None = None
    ) -> tuple[ServiceSnapshot, ForwardPlan]:
        """The snapshot and forward plan of one call, waiting for a first snapshot
        (sync). Raises MeshRpcError."""
        routing = self.routing
        if self.closed:  # not a wait for config that can no longer come
            raise MeshRpcError(routing.describe(RuntimeError(CLOSED)))
        try:
            snapshot = routing.state.snapshot(routing.timeout)
            return snapshot, routing.decide(snapshot, method, metadata, cache)
        except RoutingError as exc:
            raise MeshRpcError(routing.describe(exc)) from exc

    async def snapshot_async(self) -> ServiceSnapshot:
        """The service's snapshot, awaited. Raises AioRpcError UNAVAILABLE."""
        routing = self.routing
        if self.closed:
            raise aio_unavailable(routing.describe(RuntimeError(CLOSED)))
        try:
            return await routing.state.snapshot_async(routing.timeout)
        except RoutingError as exc:
            raise aio_unavailable(routing.describe(exc)) from exc

    def sub_channel(self, endpoint: Endpoint, authority: str, settings: PoolSettings) -> Sub:
        """The sub-channel for one try. Raises (once the channel is closed)
        MeshRpcError (sync) or NoHealthyEndpointError (aio)."""
        if self.on_open is not None:
            self.on_open()
        try:
            return self.subs.get(endpoint, authority, settings)
        except RuntimeError as exc:  # closed
            if self.aio:
                raise NoHealthyEndpointError(str(exc)) from exc
            raise MeshRpcError(self.routing.describe(exc)) from exc

    def mirror(
        self,
        snapshot: ServiceSnapshot,
        forward: ForwardPlan,
        request: Any,
        options: CallOptions,
        plans: GrpcPlans,
    ) -> None:
        """Shadow a unary call to each of ``forward``'s mirrors, fire and forget: each
        shadow is one try of the method's plan for the mirror's cluster."""
        routing = self.routing
        self.mirrors.shadow(
            forward,
            lambda shadow: plans.get(routing, snapshot, shadow),
            lambda shadow: (request, options, shadow, False),
            options.timeout,
        )

    def endpoint_channels(self) -> list[str]:
        """Endpoints (``host:port``) that have an open sub-channel."""
        return self.subs.default.authorities()


__all__ = ["ChannelCore"]
