"""The sync multicallables of :class:`~meshlib.transport.grpc_channel.MeshChannel`.

Per method: each call is planned by the channel (route, cluster, hash,
metadata mutations, mirrors), then its tries are sent to the chosen
endpoint's own multicallable. Blocking unary calls (``__call__`` /
``with_call``) run under :func:`meshlib.resilience.call.resilient_call`
(deadline, faults, rate limit, breaker, thresholds, retries / hedging; only
unary requests are replayed); ``future()`` and streaming calls get the
deadline and the fault / rate-limit stages in a single try. Resilience
errors surface as ``grpc.RpcError`` with the matching status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc

from meshlib.errors import ResilienceError
from meshlib.resilience.call import resilient_call
from meshlib.resilience.retry import Attempt
from meshlib.resilience.route_resilience import RouteResilience, apply_stages
from meshlib.routing.plan import ForwardPlan
from meshlib.routing.snapshot import ServiceSnapshot
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_fast_path import FastRoute, FastRoutes, GrpcBackend
from meshlib.transport.grpc_resilience import (
    bounded_options,
    call_headers,
    call_timeout,
    describe_error,
    describe_value,
    per_try_timeout,
    single_deadline,
    timed_out,
    try_options,
)
from meshlib.transport.grpc_routing import (
    GrpcTryReport,
    Metadata,
    MethodPlanCache,
    outgoing_metadata,
)
from meshlib.transport.grpc_subchannels import MethodCallables
from meshlib.transport.resilience_errors import as_rpc_error

if TYPE_CHECKING:
    from meshlib.transport.grpc_channel import MeshChannel

Kind = str  # "unary_unary" | "unary_stream" | "stream_unary" | "stream_stream"
_NO_EXCLUSIONS: frozenset[str] = frozenset()


class MultiCallable:
    """Per method: routes each call, then delegates to the endpoint's own multicallable."""

    __slots__ = (
        "_backend",
        "_callables",
        "_channel",
        "_deserializer",
        "_fast",
        "_kind",
        "_method",
        "_open_sub",
        "_plans",
        "_serializer",
    )

    def __init__(
        self,
        channel: MeshChannel,
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
        self._callables = MethodCallables(kind, serializer, deserializer)
        self._plans = MethodPlanCache()
        self._fast = FastRoutes()
        self._open_sub = channel._sub_channel  # bound once: the fast path passes it per call
        #: What the compiled plans use of this multicallable (they never read its members).
        self._backend = GrpcBackend(method, self._callables, channel, self._blocking, self._try)

    def _fast_route(self) -> FastRoute | None:
        """The compiled first try for this method's current plan (unary-unary only)."""
        channel = self._channel
        if channel.closed:
            return None
        routing = channel._routing
        view = routing.state.view
        entry = self._fast.entry  # the common case, checked here: compiled and current
        if entry is not None and entry[0] is view:
            fast = entry[1]
            if fast is None or fast.breaker_generation == fast.breakers.generation:
                return fast
        return self._fast.get(routing, view, self._plan_of)

    def _plan_of(self, snapshot: ServiceSnapshot) -> ForwardPlan:
        return self._channel._routing.decide(snapshot, self._method, None, self._plans)

    def _plan(self, request: Any, options: CallOptions) -> tuple[ServiceSnapshot, ForwardPlan]:
        channel = self._channel
        snapshot, plan = channel._plan(self._method, options.metadata, self._plans)
        if plan.mirrors and self._kind == "unary_unary":
            channel._mirror(snapshot, plan, self._method, request, options, self._serializer)
        return snapshot, plan

    def _start(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        options: CallOptions,
        attempt: Attempt | None = None,
    ) -> tuple[GrpcTryReport, Any, CallOptions]:
        """One try to one endpoint: (report to close, multicallable, call options).

        With an ``attempt`` the pick avoids its excluded hosts and records the one chosen.
        """
        excluded = attempt.excluded_endpoints if attempt is not None else _NO_EXCLUSIONS
        cluster, endpoint, sub = self._channel._pick(
            snapshot, plan, plan.cluster, plan.authority, excluded
        )
        endpoint_authority = endpoint.authority
        if attempt is not None:
            attempt.endpoint = endpoint_authority
        # The plan's path is the method after any prefix / regex rewrite (Envoy
        # rewrites a gRPC call's :path too); one multicallable per method path.
        send = self._callables.get(sub, plan.authority, endpoint_authority, plan.path)
        if plan.request_headers is not None:
            options = options._replace(metadata=outgoing_metadata(plan, options.metadata))
        report = self._channel._routing.observer(cluster).start(endpoint, self._method)
        return report, send, options

    def _blocking(self, request: Any, options: CallOptions, with_call: bool) -> Any:
        snapshot, plan = self._plan(request, options)
        route = snapshot.resilience.for_route(plan.route)
        try:
            return resilient_call(
                partial(self._try, snapshot, plan, route, request, options, with_call),
                route=route,
                cluster=snapshot.resilience_of(plan.cluster),
                headers=call_headers(route, plan.cluster, options.metadata),
                method=None,
                caller_timeout_s=call_timeout(route, options.timeout),
                describe_result=describe_value,
                describe_error=describe_error,
                replayable=self._kind == "unary_unary",
                name=snapshot.target,
            )
        except ResilienceError as exc:
            raise as_rpc_error(exc) from exc

    def _try(
        self,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        route: RouteResilience,
        request: Any,
        options: CallOptions,
        with_call: bool,
        attempt: Attempt,
    ) -> Any:
        """One try, its ``timeout`` what the try has left (sent as ``grpc-timeout``)."""
        report, call, options = self._start(snapshot, plan, try_options(options, attempt), attempt)
        try:
            result = options.send(call.with_call if with_call else call, request)
        except grpc.RpcError as exc:
            failed = exc if isinstance(exc, grpc.Call) else None
            report.finished(failed.code() if failed else None, failed.details() if failed else None)
            mapped = timed_out(exc, attempt, per_try_timeout(route))
            if mapped is exc:
                raise
            raise mapped from exc
        except BaseException:
            report.finished(grpc.StatusCode.CANCELLED)
            raise
        report.finished(grpc.StatusCode.OK)
        return result

    def _single(self, request: Any, options: CallOptions) -> tuple[GrpcTryReport, Any, CallOptions]:
        """A single-try call (future, streaming): deadline and fault / rate-limit stages."""
        snapshot, plan = self._plan(request, options)
        route = snapshot.resilience.for_route(plan.route)
        try:
            deadline = single_deadline(route, options, snapshot.target)
            stages = route.stages_for(plan.cluster)
            if stages:
                headers = call_headers(route, plan.cluster, options.metadata)
                with apply_stages(stages, headers, deadline):
                    pass
        except ResilienceError as exc:
            raise as_rpc_error(exc) from exc
        return self._start(snapshot, plan, bounded_options(options, deadline))

    def _future(self, request: Any, options: CallOptions) -> Any:
        report, call, options = self._single(request, options)
        future = options.send(call.future, request)
        future.add_done_callback(lambda f: report.finished(f.code(), f.details()))
        return future

    def _streaming(self, request: Any, options: CallOptions) -> Any:
        report, call, options = self._single(request, options)
        rendezvous = options.send(call, request)
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
        fast = self._fast_route()
        if fast is not None:
            return fast.blocking(self._backend, request, options, False, self._open_sub)
        return self._blocking(request, options, with_call=False)

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
        fast = self._fast_route()
        if fast is not None:
            return fast.blocking(self._backend, request, options, True, self._open_sub)
        return self._blocking(request, options, with_call=True)

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
