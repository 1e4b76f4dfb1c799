"""``AioMeshChannel``: the asyncio twin of :class:`MeshChannel`.

Once the service has a snapshot, a call is routed and picked synchronously
and grpc's own aio call object is returned (no extra task per call); before
that, or when routing fails, a :class:`DeferredCall` stands in. Sub-channels
are ``grpc.aio`` channels, one per endpoint, closed on the event loop when
their endpoint leaves EDS.

One call: plan (pure) → mirrors (unary-unary only; streamed requests are not
mirrored) → the call plan of its (route, cluster) (:mod:`meshlib.transport.grpc_try`).
What the multicallables share with the channel is its
:class:`~meshlib.transport.grpc_channel_core.ChannelCore` (the sync channel's too).
Unary calls run the whole lifecycle (:func:`meshlib.resilience.call.run_async`:
deadline, faults, rate limit, breaker, thresholds, tries, retries / hedging) in
the task that awaits them (:class:`~meshlib.transport.grpc_aio_lazy.LazyUnaryCall`);
streaming calls run it up to the start of their one try
(:func:`~meshlib.resilience.call.single_try_async`), reported when the call is done.
Errors surface as ``AioRpcError`` with the matching status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Any, cast

import grpc

from meshlib.errors import ResilienceError, RoutingError
from meshlib.resilience.call import run_async, single_try, single_try_async
from meshlib.resilience.retry import Attempt
from meshlib.routing.snapshot import ServiceSnapshot, ServiceView
from meshlib.transport.endpoint_pool import LoopCloser
from meshlib.transport.grpc_aio_deferred import DeferredCall
from meshlib.transport.grpc_aio_lazy import LazyUnaryCall
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_channel_core import ChannelCore
from meshlib.transport.grpc_errors import aio_unavailable
from meshlib.transport.grpc_routing import ChannelOptions, Metadata, MethodPlanCache
from meshlib.transport.grpc_subchannels import MethodCallables
from meshlib.transport.grpc_try import GrpcCall, GrpcCallPlan, GrpcPlans, GrpcSide, GrpcTry
from meshlib.transport.mirror import MirrorStats, TaskMirror
from meshlib.transport.resilience_errors import as_aio_rpc_error
from meshlib.transport.services import MeshServices


class AioMeshChannel(grpc.aio.Channel):
    """An asyncio gRPC channel over every endpoint of one mesh service
    (``grpc.aio.Channel``'s surface, plus :meth:`endpoint_channels` and
    :meth:`mirror_stats`)."""

    def __init__(self, mesh: MeshServices, target: str, options: ChannelOptions = ()) -> None:
        self._closer: LoopCloser[grpc.aio.Channel] = LoopCloser(_close_channel)
        self._mirrors = TaskMirror()
        self._core: ChannelCore[grpc.aio.Channel] = ChannelCore(
            mesh,
            target,
            options,
            grpc.aio,
            self._closer.schedule,
            self._mirrors,
            aio=True,
            on_open=self._closer.bind_running,
        )

    def endpoint_channels(self) -> list[str]:
        """Endpoints (``host:port``) that have an open sub-channel."""
        return self._core.endpoint_channels()

    def mirror_stats(self) -> MirrorStats:
        """Counters of shadow calls sent by this channel."""
        return self._mirrors.stats

    # --- grpc.aio.Channel --------------------------------------------------------

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return _AioUnaryUnary(
            self._core, "unary_unary", method, request_serializer, response_deserializer
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return _AioUnaryStream(
            self._core, "unary_stream", method, request_serializer, response_deserializer
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return _AioStreamUnary(
            self._core, "stream_unary", method, request_serializer, response_deserializer
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool | None = False,
    ) -> Any:
        return _AioStreamStream(
            self._core, "stream_stream", method, request_serializer, response_deserializer
        )

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """READY once a snapshot routes, TRANSIENT_FAILURE while unavailable, else CONNECTING."""
        view = self._core.routing.state.view
        if view is None:
            return grpc.ChannelConnectivity.CONNECTING
        if isinstance(view, ServiceSnapshot):
            return grpc.ChannelConnectivity.READY
        return grpc.ChannelConnectivity.TRANSIENT_FAILURE

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        loop = asyncio.get_running_loop()
        while self.get_state() == last_observed_state:
            changed: asyncio.Future[None] = loop.create_future()

            def wake(_view: ServiceView, changed: asyncio.Future[None] = changed) -> None:
                loop.call_soon_threadsafe(_set_done, changed)

            state = self._core.routing.state
            state.add_listener(wake)
            try:
                if self.get_state() == last_observed_state:
                    await changed
            finally:
                state.remove_listener(wake)

    async def channel_ready(self) -> None:
        while (state := self.get_state()) is not grpc.ChannelConnectivity.READY:
            await self.wait_for_state_change(state)

    async def close(self, grace: float | None = None) -> None:
        core = self._core
        if core.closed:
            return
        core.closed = True
        await self._mirrors.aclose()
        await self._closer.aclose_all(core.subs.drain())

    async def __aenter__(self) -> AioMeshChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _close_channel(channel: grpc.aio.Channel) -> None:
    await channel.close(None)


async def _raise(error: BaseException) -> Any:
    raise error


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _step(coroutine: Any) -> Any:
    """The result of a coroutine that completes without waiting (else None)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    except Exception:
        return None
    coroutine.close()
    return None


def _finished_status(call: Any) -> tuple[grpc.StatusCode | None, str | None]:
    """The status of a finished aio call, read without scheduling a task.

    ``code()`` and ``details()`` are coroutines that complete at once when the
    call is done; step each once and take its result.
    """
    code: grpc.StatusCode | None = _step(call.code())
    details: str | None = _step(call.details())
    return code, details


class _AioMultiCallable:
    """Per method: route each call, then run it through its call plan."""

    def __init__(
        self,
        channel: ChannelCore[grpc.aio.Channel],
        kind: str,
        method: str,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
    ) -> None:
        self._channel = channel
        self._kind = kind
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer
        self._plans = MethodPlanCache()
        self._state = channel.routing.state  # the service's state: its current view
        callables = MethodCallables(kind, serializer, deserializer)
        #: What the call plans use of this multicallable (they never read its members).
        side = GrpcSide(
            method, callables, channel, channel.sub_channel, kind == "unary_unary", True
        )
        self._compiled = GrpcPlans(side)

    def _start(self, snapshot: ServiceSnapshot, request: Any, options: CallOptions) -> Any:
        """Plan (pure), mirror, then the call through its call plan. Raises RoutingError."""
        channel = self._channel
        routing = channel.routing
        forward = routing.decide(snapshot, self._method, options.metadata, self._plans)
        if forward.mirrors and self._kind == "unary_unary":
            channel.mirror(snapshot, forward, request, options, self._compiled)
        plan = self._compiled.get(routing, snapshot, forward)
        call = (request, options, forward, False)
        if self._kind == "unary_unary":
            return LazyUnaryCall(partial(run_async, plan, call, options.timeout))
        if plan.stages:
            return DeferredCall(self._after_stages(plan, call), routing.target)
        try:
            attempt = single_try(plan, call, options.timeout)
        except ResilienceError as exc:
            return DeferredCall(_raise(as_aio_rpc_error(exc)), routing.target)
        return self._try_call(plan, call, attempt)

    async def _after_stages(self, plan: GrpcCallPlan, call: GrpcCall) -> Any:
        """A streaming call after its fault / rate-limit stages (one try)."""
        try:
            attempt = await single_try_async(plan, call, call[1].timeout)
        except ResilienceError as exc:
            raise as_aio_rpc_error(exc) from exc
        return self._try_call(plan, call, attempt)

    @staticmethod
    def _try_call(plan: GrpcCallPlan, call: GrpcCall, attempt: Attempt) -> Any:
        """One single try (streaming): grpc's own aio call, reported when it is done.
        Raises RoutingError."""
        grpc_call, report = cast(GrpcTry, plan.adapter).start(call, attempt, None)
        grpc_call.add_done_callback(lambda done: report.finished(*_finished_status(done)))
        return grpc_call

    async def _start_later(self, request: Any, options: CallOptions) -> Any:
        channel = self._channel
        snapshot = await channel.snapshot_async()
        try:
            return self._start(snapshot, request, options)
        except RoutingError as exc:
            raise aio_unavailable(channel.routing.describe(exc)) from exc

    def __call__(
        self,
        request: Any = None,
        *,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        options = CallOptions(timeout, metadata, credentials, wait_for_ready, compression)
        view = self._state.view
        entry = self._compiled.entry  # the common case: the method's plan, current
        if (
            entry is not None
            and entry[0] is view
            and self._kind == "unary_unary"
            and entry[2].current()
        ):
            call = (request, options, entry[1], False)
            return LazyUnaryCall(partial(run_async, entry[2], call, timeout))
        if type(view) is ServiceSnapshot:
            try:
                return self._start(view, request, options)
            except RoutingError:
                pass  # let the deferred call raise it as an AioRpcError where grpc would
        return DeferredCall(self._start_later(request, options), self._channel.routing.target)


class _AioUnaryUnary(_AioMultiCallable, grpc.aio.UnaryUnaryMultiCallable):  # type: ignore[misc,type-arg]
    """Unary request, unary response."""


class _AioUnaryStream(_AioMultiCallable, grpc.aio.UnaryStreamMultiCallable):  # type: ignore[misc,type-arg]
    """Unary request, streamed responses."""


class _AioStreamUnary(_AioMultiCallable, grpc.aio.StreamUnaryMultiCallable):  # type: ignore[misc,type-arg]
    """Streamed requests (iterator or ``write()``), unary response."""


class _AioStreamStream(_AioMultiCallable, grpc.aio.StreamStreamMultiCallable):  # type: ignore[misc,type-arg]
    """Streamed both ways."""
