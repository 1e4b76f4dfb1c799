"""The sync multicallables of :class:`~meshlib.transport.grpc_channel.MeshChannel`.

Per method: each call is planned by the channel (route, cluster, hash,
metadata mutations, mirrors) and runs the one lifecycle through the call plan
of its (route, cluster) (:mod:`meshlib.transport.grpc_try`): blocking unary
calls (``__call__`` / ``with_call``) all of it (:func:`~meshlib.resilience.call.run_sync`:
deadline, faults, rate limit, breaker, thresholds, tries, retries / hedging;
only unary requests are replayed); ``future()`` and streaming calls everything
before their one try starts (:func:`~meshlib.resilience.call.single_try`).
Errors surface as ``grpc.RpcError`` with the matching status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import grpc

from meshlib.resilience.call import run_sync, single_try
from meshlib.routing.plan import ForwardPlan
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_routing import Metadata, MethodPlanCache
from meshlib.transport.grpc_subchannels import MethodCallables
from meshlib.transport.grpc_try import GrpcCallPlan, GrpcPlans, GrpcSide, GrpcTry

if TYPE_CHECKING:
    from meshlib.transport.grpc_channel_core import ChannelCore

Kind = str  # "unary_unary" | "unary_stream" | "stream_unary" | "stream_stream"


class MultiCallable:
    """Per method: routes each call, then runs it through its call plan."""

    __slots__ = (
        "_channel",
        "_compiled",
        "_deserializer",
        "_kind",
        "_method",
        "_plans",
        "_serializer",
        "_state",
    )

    def __init__(
        self,
        channel: ChannelCore[grpc.Channel],
        kind: Kind,
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
            method, callables, channel, channel.sub_channel, kind == "unary_unary", False
        )
        self._compiled = GrpcPlans(side)

    def _plan(self, request: Any, options: CallOptions) -> tuple[GrpcCallPlan, ForwardPlan]:
        """The call plan and forward plan of one call (the method's reusable ones at
        once while its snapshot stands). Raises MeshRpcError."""
        entry = self._compiled.entry
        if entry is not None and entry[0] is self._state.view and entry[2].current():
            return entry[2], entry[1]
        channel = self._channel
        routing = channel.routing
        snapshot, forward = channel.plan(self._method, options.metadata, self._plans)
        if forward.mirrors and self._kind == "unary_unary":
            channel.mirror(snapshot, forward, request, options, self._compiled)
        return self._compiled.get(routing, snapshot, forward), forward

    def _blocking(self, request: Any, options: CallOptions, with_call: bool) -> Any:
        entry = self._compiled.entry  # the reusable plans, as _plan reads them: one frame less
        if entry is not None and entry[0] is self._state.view and entry[2].current():
            plan, forward = entry[2], entry[1]
        else:
            plan, forward = self._plan(request, options)
        return run_sync(plan, (request, options, forward, with_call), options.timeout)

    def _single(self, request: Any, options: CallOptions, flavour: str | None) -> tuple[Any, Any]:
        """A call that is not replayed (future, streaming): the plan up to its one try's
        start; (grpc's call, its report)."""
        plan, forward = self._plan(request, options)
        call = (request, options, forward, False)
        adapter = cast(GrpcTry, plan.adapter)
        try:
            attempt = single_try(plan, call, options.timeout)
            return adapter.start(call, attempt, flavour)
        except Exception as error:
            return cast(tuple[Any, Any], adapter.answer(error, call))

    def _future(self, request: Any, options: CallOptions) -> Any:
        future, report = self._single(request, options, "future")
        future.add_done_callback(lambda f: report.finished(f.code(), f.details()))
        return future

    def _streaming(self, request: Any, options: CallOptions) -> Any:
        rendezvous, report = self._single(request, options, None)
        rendezvous.add_done_callback(lambda c: report.finished(c.code(), c.details()))
        return rendezvous


class UnaryUnary(MultiCallable, grpc.UnaryUnaryMultiCallable):  # type: ignore[type-arg]
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        options = CallOptions(timeout, metadata, credentials, wait_for_ready, compression)
        return self._blocking(request, options, False)

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        options = CallOptions(timeout, metadata, credentials, wait_for_ready, compression)
        return self._blocking(request, options, True)

    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._future(
            request, CallOptions(timeout, metadata, credentials, wait_for_ready, compression)
        )


class UnaryStream(MultiCallable, grpc.UnaryStreamMultiCallable):  # type: ignore[type-arg]
    __slots__ = ()

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._streaming(
            request, CallOptions(timeout, metadata, credentials, wait_for_ready, compression)
        )


class StreamUnary(MultiCallable, grpc.StreamUnaryMultiCallable):  # type: ignore[type-arg]
    __slots__ = ()

    def __call__(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        options = CallOptions(timeout, metadata, credentials, wait_for_ready, compression)
        return self._blocking(request_iterator, options, with_call=False)

    def with_call(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        options = CallOptions(timeout, metadata, credentials, wait_for_ready, compression)
        return self._blocking(request_iterator, options, with_call=True)

    def future(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._future(
            request_iterator,
            CallOptions(timeout, metadata, credentials, wait_for_ready, compression),
        )


class StreamStream(MultiCallable, grpc.StreamStreamMultiCallable):  # type: ignore[type-arg]
    __slots__ = ()

    def __call__(
        self,
        request_iterator: Iterator[Any],
        timeout: float | None = None,
        metadata: Metadata | None = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> Any:
        return self._streaming(
            request_iterator,
            CallOptions(timeout, metadata, credentials, wait_for_ready, compression),
        )
