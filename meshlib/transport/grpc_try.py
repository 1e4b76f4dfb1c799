"""The gRPC adapter of a call plan: one grpcio try to one endpoint, bound per plan.

Every unary call runs the one lifecycle (:mod:`meshlib.resilience.call_plan`,
driven by :func:`~meshlib.resilience.call.run_sync` /
:func:`~meshlib.resilience.call.run_async`), and streaming calls and
``future()`` run it up to the start of their one try
(:func:`~meshlib.resilience.call.single_try`). What gRPC adds is here: read the
call's metadata only when the plan's stages or retry policy can use them, pick
(hash, previous hosts), the endpoint's sub-channel multicallable (kept per
endpoint), the try's ``timeout=`` (what its budget has left) and, from try 2,
gRFC A6's ``grpc-previous-rpc-attempts``, the plan's metadata mutations, report
through the plan's per-try observer, a DEADLINE_EXCEEDED that ended the per-try
budget as :class:`~meshlib.errors.PerTryTimeoutError`, and the call's error as
grpcio's (sync ``grpc.RpcError``, aio ``AioRpcError``).

A call is ``(request, options, forward plan, with_call)`` (:data:`GrpcCall`); a plan is compiled per
(snapshot, route, cluster) for one method (:class:`GrpcPlans`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple, NoReturn, Protocol, TypeAlias

import grpc

from meshlib.errors import ResilienceError, RoutingError
from meshlib.resilience.call_plan import NO_HEADERS, CallPlan, TryAdapter, time_left
from meshlib.resilience.conditions import Outcome
from meshlib.resilience.retry import Attempt
from meshlib.routing.connection_pool import PoolSettings
from meshlib.routing.plan import ForwardPlan
from meshlib.routing.snapshot import ServiceSnapshot, pick_endpoint
from meshlib.transport.grpc_call_options import CallOptions
from meshlib.transport.grpc_errors import MeshRpcError, aio_unavailable
from meshlib.transport.grpc_resilience import (
    OK_OUTCOME,
    PREVIOUS_ATTEMPTS_KEY,
    describe_error,
    timed_out,
)
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

_OK: Final = grpc.StatusCode.OK
_CANCELLED: Final = grpc.StatusCode.CANCELLED
_describe_error: Final = describe_error

#: (endpoint, :authority, pool settings) -> the endpoint's sub-channel (raises once closed).
SubChannelOf = Callable[[Endpoint, str, PoolSettings], Any]


#: One gRPC call as the lifecycle carries it: (request, options, forward plan,
#: with_call). A plain tuple: built per call, so it costs no constructor call.
GrpcCall: TypeAlias = tuple[Any, CallOptions, ForwardPlan, bool]
#: One try, ready to send: the endpoint's multicallable, the metadata and ``timeout=``
#: to send it with, and the try's report.
Opened: TypeAlias = tuple[Any, Metadata | None, float | None, GrpcTryReport]


GrpcCallPlan: TypeAlias = CallPlan[GrpcCall, Any]


class ClosableChannel(Protocol):
    """A mesh channel, as its plans see it: whether it was closed."""

    @property
    def closed(self) -> bool: ...


class GrpcSide(NamedTuple):
    """What a multicallable lends its plans (they read none of its members): its
    method, its per-endpoint multicallables, its channel and the channel's
    sub-channel lookup, and whether it is the aio flavour (errors: ``AioRpcError``)."""

    method: str
    callables: MethodCallables
    channel: ClosableChannel
    open_sub: SubChannelOf
    replayable: bool
    aio: bool


class GrpcTry(TryAdapter[GrpcCall, Any]):
    """One plan's gRPC parts (see the module doc)."""

    __slots__ = (
        "cluster_name",
        "gate",
        "observer",
        "per_try_s",
        "routing",
        "sends",
        "side",
        "state",
    )

    bounds_itself = True  # the try's budget travels as grpcio's timeout=
    answers_succeed = True  # an answer is status OK (other statuses raise)

    def __init__(
        self, routing: GrpcRouting, snapshot: ServiceSnapshot, forward: ForwardPlan, side: GrpcSide
    ) -> None:
        self.routing = routing
        self.side = side
        self.cluster_name = forward.cluster
        self.state = state = snapshot.clusters.get(forward.cluster)
        #: Bound once: every try's load report and metrics (the per-try seam).
        self.observer = None if state is None else routing.observer(state)
        route = snapshot.resilience.for_route(forward.route)
        retry = route.retry
        self.per_try_s = retry.policy.per_try_timeout_s if retry is not None else None
        #: endpoint id -> (endpoint, grpc multicallable); filled on first use.
        self.sends: dict[int, tuple[Endpoint, Any]] = {}
        self.gate: frozenset[str] | None = None

    @staticmethod
    def compile(
        routing: GrpcRouting, snapshot: ServiceSnapshot, forward: ForwardPlan, side: GrpcSide
    ) -> GrpcCallPlan:
        """The plan of ``forward``'s (route, cluster) in ``snapshot`` for one method."""
        adapter = GrpcTry(routing, snapshot, forward, side)
        route = snapshot.resilience.for_route(forward.route)
        plan: GrpcCallPlan = CallPlan(
            route, snapshot.resilience_of(forward.cluster), forward.cluster, adapter,
            snapshot.target, cap_s=route.timeouts.grpc_max_timeout_s,
        )  # fmt: skip
        adapter.gate = plan.header_gate
        return plan

    # --- what the lifecycle asks -------------------------------------------------

    def headers(self, call: GrpcCall) -> Mapping[str, str]:
        metadata = call[1].metadata
        if metadata is None:
            return NO_HEADERS
        gate = self.gate
        if gate is not None and all(key.lower() not in gate for key, _ in metadata):
            return NO_HEADERS
        return metadata_headers(metadata)

    def replayable(self, call: GrpcCall) -> bool:
        return self.side.replayable  # a streamed request is not replayed

    def settled(self, value: Any) -> bool:
        return True  # an answer is status OK

    def describe_result(self, value: Any) -> Outcome:
        return OK_OUTCOME

    def describe_error(self, error: BaseException) -> Outcome:
        return _describe_error(error)

    def answer(self, error: Exception, call: GrpcCall) -> Any:
        if self.side.aio:
            if isinstance(error, ResilienceError):
                raise as_aio_rpc_error(error) from error
            if isinstance(error, RoutingError) and not isinstance(error, grpc.RpcError):
                raise aio_unavailable(self.routing.describe(error)) from error
            raise error
        if isinstance(error, ResilienceError):
            raise as_rpc_error(error) from error
        if isinstance(error, RoutingError) and not isinstance(error, grpc.RpcError):
            raise MeshRpcError(self.routing.describe(error)) from error
        raise error

    # --- one try -----------------------------------------------------------------

    def _send_for(self, endpoint: Endpoint, forward: ForwardPlan) -> Any:
        """The grpc multicallable for ``endpoint`` (kept per endpoint: read that first)."""
        assert self.state is not None
        side = self.side
        sub = side.open_sub(endpoint, forward.authority, self.state.pool)  # raises once closed
        send = side.callables.get(sub, forward.authority, endpoint.authority, forward.path)
        self.sends[id(endpoint)] = (endpoint, send)
        return send

    def open(self, call: GrpcCall, attempt: Attempt) -> Opened:
        """Pick, the endpoint's multicallable, the try's metadata and timeout, its
        report started. Raises RoutingError (sync: as MeshRpcError)."""
        forward = call[2]
        state = self.state
        try:
            endpoint = pick_endpoint(
                state,
                self.routing.target,
                self.cluster_name,
                forward.request_hash,
                attempt.excluded_endpoints,
            )
        except RoutingError as exc:
            if self.side.aio:
                raise
            raise MeshRpcError(self.routing.describe(exc)) from exc
        attempt.endpoint = endpoint.authority
        entry = self.sends.get(id(endpoint))
        if entry is not None and entry[0] is endpoint and not self.side.channel.closed:
            send = entry[1]
        else:
            send = self._send_for(endpoint, forward)  # raises once the channel is closed
        options = call[1]
        metadata = options.metadata
        if attempt.number > 1:
            metadata = (*(metadata or ()), (PREVIOUS_ATTEMPTS_KEY, str(attempt.number - 1)))
        if forward.request_headers is not None:
            metadata = outgoing_metadata(forward, metadata)
        timeout = options.timeout if attempt.deadline is None else time_left(attempt)
        assert self.observer is not None
        return send, metadata, timeout, self.observer.start(endpoint, self.side.method)

    def _failed(self, error: BaseException, report: GrpcTryReport, attempt: Attempt) -> NoReturn:
        """Report a try that raised; raise its error as the retry rules read it."""
        if not isinstance(error, Exception):
            report.finished(_CANCELLED)
            raise error
        report.finished(*rpc_status(error))
        mapped = timed_out(error, attempt, self.per_try_s)
        if mapped is error:
            raise error
        raise mapped from error

    def send(self, call: GrpcCall, attempt: Attempt) -> Any:
        send, metadata, timeout, report = self.open(call, attempt)
        options = call[1]
        try:
            result = (send.with_call if call[3] else send)(
                call[0], timeout=timeout, metadata=metadata,
                credentials=options.credentials, wait_for_ready=options.wait_for_ready,
                compression=options.compression,
            )  # fmt: skip
        except BaseException as error:
            self._failed(error, report, attempt)
        report.finished(_OK)
        return result

    async def send_async(self, call: GrpcCall, attempt: Attempt) -> tuple[Any, Any]:
        """One aio try: (grpc's finished call, its answer)."""
        send, metadata, timeout, report = self.open(call, attempt)
        options = call[1]
        try:
            grpc_call = send(
                call[0], timeout=timeout, metadata=metadata,
                credentials=options.credentials, wait_for_ready=options.wait_for_ready,
                compression=options.compression,
            )  # fmt: skip
            response = await grpc_call
        except BaseException as error:
            self._failed(error, report, attempt)
        report.finished(_OK)
        return grpc_call, response

    def start(
        self, call: GrpcCall, attempt: Attempt, flavour: str | None
    ) -> tuple[Any, GrpcTryReport]:
        """The one try of a call that is not replayed (a stream, ``future()``; ``flavour``:
        the multicallable's method to call, e.g. ``"future"``): (grpc's call, its report,
        for the caller to close from the call's done callback)."""
        send, metadata, timeout, report = self.open(call, attempt)
        if flavour is not None:
            send = getattr(send, flavour)
        options = call[1]
        try:
            started = send(
                call[0], timeout=timeout, metadata=metadata,
                credentials=options.credentials, wait_for_ready=options.wait_for_ready,
                compression=options.compression,
            )  # fmt: skip
        except BaseException:
            report.finished(_CANCELLED)
            raise
        return started, report


class GrpcPlans:
    """One method's compiled plans, per snapshot (replaced whole when it moves on):
    the reusable plan's kept at hand (:attr:`entry`), others per (route, cluster)."""

    __slots__ = ("by_route", "entry", "side")

    def __init__(self, side: GrpcSide) -> None:
        self.side = side
        #: (the view, its reusable forward plan, its call plan), replaced whole.
        self.entry: tuple[object, ForwardPlan, GrpcCallPlan] | None = None
        self.by_route: tuple[object, dict[tuple[int, str], tuple[object, GrpcCallPlan]]] | None = (
            None
        )

    def get(
        self, routing: GrpcRouting, snapshot: ServiceSnapshot, forward: ForwardPlan
    ) -> GrpcCallPlan:
        """The call plan for ``forward`` in ``snapshot``, compiled on first use."""
        table = self.by_route
        if table is None or table[0] is not snapshot or len(table[1]) >= 256:
            table = self.by_route = (snapshot, {})
        key = (id(forward.route), forward.cluster)
        found = table[1].get(key)
        if found is not None and found[0] is forward.route and found[1].current():
            plan = found[1]
        else:
            plan = GrpcTry.compile(routing, snapshot, forward, self.side)
            table[1][key] = (forward.route, plan)
        if forward.reusable and not forward.mirrors:
            self.entry = (snapshot, forward, plan)
        return plan


__all__ = ["GrpcCall", "GrpcCallPlan", "GrpcPlans", "GrpcSide", "GrpcTry", "Opened"]
