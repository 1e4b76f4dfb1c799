"""The first try of a unary gRPC call, compiled once per method and snapshot.

A :class:`FastRoute` is a :class:`~meshlib.transport.compiled_route.CompiledPlan`
(why there is a fast path at all is said there) plus the gRPC parts: the
route's max-timeout cap and one grpc multicallable per endpoint. A call whose
plan compiles runs, inline and in the general path's order::

    deadline -> fault / rate-limit stages -> breaker -> budget + admission
      -> pick -> send -> report

A failed first try goes to the general retry runner as try 1. A plan that
does not compile (metadata-dependent routing, mirrors, hashing, hedging), a
caller deadline on another clock or an expired one take the general path
(:meth:`~meshlib.transport.grpc_calls.MultiCallable._blocking`,
:meth:`~meshlib.transport.grpc_aio_channel._AioMultiCallable._unary`). Sync and
aio calls share everything but the send itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Final, NamedTuple, Protocol

import grpc

from meshlib.errors import ResilienceError, RoutingError
from meshlib.resilience.call import (
    admit_first,
    admit_first_async,
    admitted,
    async_admitted,
)
from meshlib.resilience.deadline import Deadline
from meshlib.resilience.retry import (
    Attempt,
    FirstTry,
    RetryPolicy,
    async_run_with_retries,
    run_with_retries,
)
from meshlib.resilience.route_resilience import (
    RouteResilience,
)
from meshlib.resilience.xds_cluster import ClusterResilience
from meshlib.routing.connection_pool import PoolSettings
from meshlib.routing.plan import ForwardPlan
from meshlib.routing.snapshot import ClusterState, ServiceSnapshot
from meshlib.transport.compiled_route import NO_HEADERS, CompiledPlan, Expired, compilable
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_errors import MeshRpcError, aio_unavailable
from meshlib.transport.grpc_resilience import describe_error, describe_value, timed_out
from meshlib.transport.grpc_routing import (
    GrpcRouting,
    GrpcTryReport,
    Metadata,
    metadata_headers,
    outgoing_metadata,
    rpc_status,
)
from meshlib.transport.grpc_subchannels import MethodCallables
from meshlib.transport.resilience_errors import as_aio_rpc_error, as_rpc_error
from meshlib.xds_client.resources import Endpoint

_monotonic: Final = time.monotonic
_OK: Final = grpc.StatusCode.OK
_CANCELLED: Final = grpc.StatusCode.CANCELLED
_NOTHING_EXCLUDED: Final[frozenset[str]] = frozenset()

# The channel's sub-channel lookup: (endpoint, :authority, pool settings) -> grpc channel.
SubChannelOf = Callable[[Endpoint, str, PoolSettings], Any]


class ClosableChannel(Protocol):
    """A mesh channel, as its compiled plans see it: whether it was closed."""

    @property
    def closed(self) -> bool: ...


class GrpcBackend(NamedTuple):
    """What a sync multicallable lends its compiled plan (the plan never reads the
    multicallable's members): its method, its per-endpoint multicallables, its channel,
    its general path (a deadline on another clock) and its one-try send (the retries:
    snapshot, plan, route, request, options, with_call, attempt)."""

    method: str
    callables: MethodCallables
    channel: ClosableChannel
    general: Callable[[Any, CallOptions, bool], Any]
    try_once: Callable[
        [ServiceSnapshot, ForwardPlan, RouteResilience, Any, CallOptions, bool, Attempt], Any
    ]


class AioGrpcBackend(NamedTuple):
    """The aio twin of :class:`GrpcBackend` (general path and try without ``with_call``)."""

    method: str
    callables: MethodCallables
    channel: ClosableChannel
    general: Callable[
        [ServiceSnapshot, ForwardPlan, RouteResilience, Any, CallOptions], Awaitable[Any]
    ]
    try_once: Callable[
        [ServiceSnapshot, ForwardPlan, RouteResilience, Any, CallOptions, Attempt], Awaitable[Any]
    ]


class FastRoute(CompiledPlan):
    """One method's compiled first try (see :class:`CompiledPlan`), with its gRPC
    parts: the route's max-timeout cap and one multicallable per endpoint."""

    __slots__ = ("cap_s", "observer", "routing", "sends")

    def __init__(
        self,
        routing: GrpcRouting,
        snapshot: ServiceSnapshot,
        plan: ForwardPlan,
        route: RouteResilience,
        cluster: ClusterResilience,
        state: ClusterState,
    ) -> None:
        super().__init__(snapshot, plan, route, cluster, state)
        self.routing = routing
        #: Bound once: every try's load report and metrics (the per-try seam).
        self.observer = routing.observer(state)
        self.cap_s = route.timeouts.grpc_max_timeout_s
        #: endpoint id -> (endpoint, grpc multicallable); filled on first use.
        self.sends: dict[int, tuple[Endpoint, Any]] = {}

    @staticmethod
    def compile(
        routing: GrpcRouting, snapshot: ServiceSnapshot, plan: ForwardPlan
    ) -> FastRoute | None:
        """The compiled form of ``plan``, or None when its calls need the general path."""
        parts = compilable(snapshot, plan)
        return None if parts is None else FastRoute(routing, snapshot, plan, *parts)

    # --- the steps sync and aio share --------------------------------------------

    def headers(self, metadata: Metadata) -> Mapping[str, str]:
        gate = self.header_gate
        if gate is not None and (not gate or all(key.lower() not in gate for key, _ in metadata)):
            return NO_HEADERS
        return metadata_headers(metadata)

    def send_for(self, endpoint: Endpoint, open_sub: SubChannelOf, method_callables: Any) -> Any:
        """The grpc multicallable for ``endpoint``, kept in :attr:`sends` (the calls
        read that first)."""
        plan = self.plan
        sub = open_sub(endpoint, plan.authority, self.state.pool)
        send = method_callables.get(sub, plan.authority, endpoint.authority, plan.path)
        self.sends[id(endpoint)] = (endpoint, send)
        return send

    def failed(
        self,
        error: Exception,
        report: GrpcTryReport,
        try_at: float | None,
        call_at: float | None,
    ) -> tuple[Attempt, BaseException]:
        """Report a failed first try; (its attempt, the error as the retry rules read it)."""
        report.finished(*rpc_status(error))
        attempt = self.first_attempt(report.endpoint, try_at, call_at)
        if isinstance(error, grpc.RpcError):
            return attempt, timed_out(error, attempt, self.per_try_s)
        return attempt, error

    # --- sync ----------------------------------------------------------------------

    def blocking(
        self,
        backend: GrpcBackend,
        request: Any,
        options: CallOptions,
        with_call: bool,
        open_sub: SubChannelOf,
    ) -> Any:
        """One blocking unary call (``options``: grpc's, unchanged)."""
        try:
            # the caller's timeout capped by the route's gRPC max (gRFC A31)
            call_at = self.call_at(options.timeout, _monotonic(), self.cap_s)
        except Expired:
            return backend.general(request, options, with_call)
        metadata = options.metadata
        headers = NO_HEADERS if metadata is None else self.headers(metadata)
        try:
            faulted = self.enter(headers, call_at)
            started = _monotonic()
            try:
                result = self._tries(
                    backend, request, options, with_call, open_sub, headers, call_at
                )
            except BaseException as error:
                self.leave_with(faulted, started, error, describe_error)
                raise
            self.leave(faulted, started, False)  # an answer is status OK
            return result
        except ResilienceError as exc:
            raise as_rpc_error(exc) from exc

    def _tries(
        self,
        backend: GrpcBackend,
        request: Any,
        options: CallOptions,
        with_call: bool,
        open_sub: SubChannelOf,
        headers: Mapping[str, str],
        call_at: float | None,
    ) -> Any:
        policy = self.policy or self.policy_for(headers, None)
        try_at = call_at if policy.per_try_timeout_s is None else self.try_at(policy, call_at)
        admission = self.cluster.admission
        if not self.start_call():
            admit_first(admission, self.budget, None if try_at is None else Deadline(try_at))
        # The call is active in the budget and its first try holds its slots.
        try:
            try:
                endpoint = self.pick()
            except RoutingError as exc:
                raise MeshRpcError(self.routing.describe(exc)) from exc
            if backend.channel.closed:  # closed while this call waited: its sends are too
                open_sub(endpoint, self.plan.authority, self.state.pool)  # raises
            entry = self.sends.get(id(endpoint))
            send = (
                entry[1]
                if entry is not None and entry[0] is endpoint
                else self.send_for(endpoint, open_sub, backend.callables)
            )
            plan = self.plan
            metadata = options.metadata
            if plan.request_headers is not None:
                metadata = outgoing_metadata(plan, metadata)
            timeout = options.timeout if try_at is None else self.remaining(try_at)
            report = self.observer.start(endpoint, backend.method)
            try:
                if with_call:
                    result = send.with_call(
                        request, timeout=timeout, metadata=metadata,
                        credentials=options.credentials, wait_for_ready=options.wait_for_ready,
                        compression=options.compression,
                    )  # fmt: skip
                else:
                    result = send(
                        request, timeout=timeout, metadata=metadata,
                        credentials=options.credentials, wait_for_ready=options.wait_for_ready,
                        compression=options.compression,
                    )  # fmt: skip
            except Exception as error:
                failure = error
                attempt, mapped = self.failed(error, report, try_at, call_at)
            except BaseException:
                report.finished(_CANCELLED)
                raise
            else:
                report.finished(_OK)
                self.end_call()
                if admission.waiting:
                    admission.notify_freed()
                return result
        except BaseException:
            admission.end_call()
            raise
        admission.exit()  # the first try's slots; the call stays active while it retries
        return self._retried(
            backend, request, options, with_call, policy, call_at, attempt, mapped, failure
        )

    def _retried(
        self,
        backend: GrpcBackend,
        request: Any,
        options: CallOptions,
        with_call: bool,
        policy: RetryPolicy,
        call_at: float | None,
        attempt: Attempt,
        mapped: BaseException,
        failure: BaseException,
    ) -> Any:
        """Try 2 on, after a failed first try: its error raised when no retry condition
        matches it, else the general retry runner."""
        try:
            self.raise_unless_retriable(policy, True, mapped, failure, describe_error)
            return run_with_retries(
                admitted(
                    partial(backend.try_once, self.snapshot, self.plan, self.route, request,
                            options, with_call),
                    self.cluster,
                ),
                policy, describe_result=describe_value, describe_error=describe_error,
                budget=self.budget, idempotent=True, replayable=True,
                deadline=self.call_deadline(call_at),
                name=self.snapshot.target, first_try=FirstTry(attempt, error=mapped),
            )  # fmt: skip
        finally:
            self.budget.request_finished()

    # --- aio -----------------------------------------------------------------------

    async def unary(
        self,
        backend: AioGrpcBackend,
        request: Any,
        options: CallOptions,
        open_sub: SubChannelOf,
    ) -> Any:
        """One aio unary call: (the finished grpc call whose answer is final, that answer).
        The guards (:meth:`enter` / :meth:`leave`) and the first try (as in :meth:`_tries`)
        share this one coroutine: each await level would be resumed at every wake-up of
        the call (the retries, rare, run in :meth:`_retried_async`)."""
        try:
            # the caller's timeout capped by the route's gRPC max (gRFC A31)
            call_at = self.call_at(options.timeout, _monotonic(), self.cap_s)
        except Expired:
            return await backend.general(self.snapshot, self.plan, self.route, request, options)
        metadata = options.metadata
        headers = NO_HEADERS if metadata is None else self.headers(metadata)
        try:
            if not self.stages or (headers is NO_HEADERS and self.faults_need_headers):
                faulted = self.enter(headers, call_at)
            else:
                faulted = await self.enter_async(headers, call_at)
            guarded_at = _monotonic()
            try:
                policy = self.policy or self.policy_for(headers, None)
                try_at = (
                    call_at if policy.per_try_timeout_s is None else self.try_at(policy, call_at)
                )
                admission = self.cluster.admission
                if not self.start_call():
                    deadline = None if try_at is None else Deadline(try_at)
                    await admit_first_async(admission, self.budget, deadline)
                # The call is active in the budget and its first try holds its slots.
                answered = False
                try:
                    endpoint = self.pick()
                    if backend.channel.closed:  # closed while this call waited: so are its sends
                        open_sub(endpoint, self.plan.authority, self.state.pool)  # raises
                    entry = self.sends.get(id(endpoint))
                    send = (
                        entry[1]
                        if entry is not None and entry[0] is endpoint
                        else self.send_for(endpoint, open_sub, backend.callables)
                    )
                    plan = self.plan
                    metadata = options.metadata
                    if plan.request_headers is not None:
                        metadata = outgoing_metadata(plan, metadata)
                    timeout = options.timeout if try_at is None else self.remaining(try_at)
                    report = self.observer.start(endpoint, backend.method)
                    try:
                        call = send(
                            request, timeout=timeout, metadata=metadata,
                            credentials=options.credentials,
                            wait_for_ready=options.wait_for_ready,
                            compression=options.compression,
                        )  # fmt: skip
                        response = await call
                    except Exception as error:
                        failure = error
                        attempt, mapped = self.failed(error, report, try_at, call_at)
                    except BaseException:
                        report.finished(_CANCELLED)
                        raise
                    else:
                        report.finished(_OK)
                        self.end_call()
                        if admission.waiting:
                            admission.notify_freed()
                        answered = True
                except BaseException:
                    admission.end_call()
                    raise
                if not answered:
                    admission.exit()  # the first try's slots; the call stays active
                    call, response = await self._retried_async(
                        backend, request, options, policy, call_at, attempt, mapped, failure
                    )
            except BaseException as error:
                self.leave_with(faulted, guarded_at, error, describe_error)
                raise
            self.leave(faulted, guarded_at, False)  # an answer is status OK
            return call, response
        except ResilienceError as exc:
            raise as_aio_rpc_error(exc) from exc
        except RoutingError as exc:
            raise aio_unavailable(self.routing.describe(exc)) from exc

    async def _retried_async(
        self,
        backend: AioGrpcBackend,
        request: Any,
        options: CallOptions,
        policy: RetryPolicy,
        call_at: float | None,
        attempt: Attempt,
        mapped: BaseException,
        failure: BaseException,
    ) -> tuple[Any, Any]:
        """Try 2 on, after a failed first try: its error raised when no retry condition
        matches it, else the general retry runner."""
        try:
            self.raise_unless_retriable(policy, True, mapped, failure, describe_error)
            last = await async_run_with_retries(
                async_admitted(
                    partial(backend.try_once, self.snapshot, self.plan, self.route, request,
                            options),
                    self.cluster,
                ),
                policy, describe_result=describe_value, describe_error=describe_error,
                budget=self.budget, idempotent=True, replayable=True,
                deadline=self.call_deadline(call_at),
                name=self.snapshot.target, first_try=FirstTry(attempt, error=mapped),
            )  # fmt: skip
            return last, await last
        finally:
            self.budget.request_finished()


class FastRoutes:
    """A multicallable's compiled first try, recompiled when its snapshot moves on
    (or a breaker is registered); None while its plan needs the general path."""

    __slots__ = ("entry",)

    def __init__(self) -> None:
        #: (the view it was compiled for, the compiled route or None).
        self.entry: tuple[object, FastRoute | None] | None = None  # replaced whole

    def get(
        self,
        routing: GrpcRouting,
        view: object,
        plan_of: Callable[[ServiceSnapshot], ForwardPlan],
    ) -> FastRoute | None:
        """The compiled route for ``view``, compiled on first use (None: a plan the
        general path serves, or no snapshot yet)."""
        entry = self.entry
        if entry is not None and entry[0] is view:
            fast = entry[1]
            if fast is None or fast.current():
                return fast
        if type(view) is not ServiceSnapshot:
            return None
        try:
            plan = plan_of(view)
        except RoutingError:
            return None  # the general path raises it as the call's error
        fast = FastRoute.compile(routing, view, plan)
        self.entry = (view, fast)
        return fast
