"""XdsClient: one ADS stream, a resource cache and watchers, on threads of its own.

Three threads, each with one job:

- ``xds-ads-stream`` (StreamRunner) keeps the ADS call open and reconnects;
- ``xds-client`` (WorkLoop) owns every piece of state below: watches,
  subscriptions, the cache, nonces and does-not-exist timers; stream events
  and watch/cancel calls are queued to it, so nothing here needs a lock;
- ``xds-watchers`` (CallbackSerializer) runs watcher callbacks in order.

Protocol (state of the world, as gRPC's clients speak it): every request for a
type carries all its subscribed names, the last ACKed version and the nonce
of the last response of that type; a response with any invalid resource is
NACKed (last ACKed version, error_detail) while its valid resources are still
applied; for LDS and CDS a subscribed name missing from a response is deleted
(unless a resource in it could not even be parsed: that one may be it). Any
exception out of a decoder NACKs that resource (see :mod:`.sotw`). While the
stream is down every cached resource stays (fail static), and the stream is
retried on gRPC's xDS schedule (:mod:`.backoff`).

Wildcard (``watch_all``, LDS and CDS): requests then carry ``"*"`` plus the
named subscriptions; responses proven to be computed under the wildcard are
the whole world, so a named name absent from one does not exist at once. How
"proven" is decided (the in-flight response race) is explained in
:mod:`meshlib.xds_client.wildcard`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from meshlib.errors import XdsConnectionError, XdsError, XdsResourceNotFound, XdsValidationError
from meshlib.observability.logging import get_logger
from meshlib.xds_client.ads_stream import AdsStream, StreamRunner
from meshlib.xds_client.backoff import INITIAL_S, MAX_S, XdsBackoff
from meshlib.xds_client.bootstrap import Bootstrap, XdsServerConfig
from meshlib.xds_client.cache import NackRecord, ResourceCache, ResourceStatus, TypeCache
from meshlib.xds_client.channel import open_channel
from meshlib.xds_client.node import build_node
from meshlib.xds_client.resource_types import RESOURCE_TYPES, ResourceType
from meshlib.xds_client.serializer import CallbackSerializer
from meshlib.xds_client.sotw import decode_response
from meshlib.xds_client.watchers import CancelWatch, ResourceWatcher
from meshlib.xds_client.wildcard import WILDCARD, StreamProof, WildcardState, WildcardWatch
from meshlib.xds_client.work_loop import TimerHandle, WorkLoop

log = get_logger(__name__)

T = TypeVar("T")
_Key = tuple[str, str]  # (type URL, resource name)


@dataclass(eq=False)
class _Watch:
    """One watch() call; ``cancelled`` stops callbacks that are already queued."""

    rtype: ResourceType[Any]
    name: str
    watcher: ResourceWatcher[Any]
    cancelled: bool = False

    def callback(self, method: str, arg: object) -> Callable[[], None]:
        def deliver() -> None:
            if not self.cancelled:
                getattr(self.watcher, method)(arg)

        return deliver


class XdsClient:
    """An xDS client for the servers of ``bootstrap``, in order; see the module docstring."""

    def __init__(
        self,
        bootstrap: Bootstrap,
        *,
        resource_timeout_s: float = 15.0,
        backoff_base_s: float = INITIAL_S,
        backoff_max_s: float = MAX_S,
    ) -> None:
        self._bootstrap = bootstrap
        self._servers = bootstrap.xds_servers
        self._node = build_node(bootstrap.node)
        self._resource_timeout_s = resource_timeout_s
        self._cache = ResourceCache()
        self._types: dict[str, ResourceType[Any]] = dict(RESOURCE_TYPES)
        self._watches: dict[_Key, list[_Watch]] = {}
        self._wildcards: dict[str, WildcardState] = {}  # type URL -> its wildcard watchers
        self._proofs: dict[str, StreamProof] = {}  # type URL -> this stream's requests
        self._timers: dict[_Key, TimerHandle] = {}
        self._stream: AdsStream | None = None
        self._nonces: dict[str, str] = {}
        self._requested_types: set[str] = set()
        self._node_sent = False
        # The connection error watchers were told of, until a response arrives; a
        # watch added meanwhile is told at once (it would otherwise hear nothing).
        self._loss: XdsConnectionError | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        if resource_timeout_s <= 0:
            raise ValueError(f"resource_timeout_s must be > 0, got {resource_timeout_s}")
        backoff = XdsBackoff(backoff_base_s, backoff_max_s)
        # Everything that can fail comes before the first thread starts (every server
        # entry opens a channel once here). Every retry gets a fresh channel with a
        # subchannel of its own, so grpc's reconnect backoff never adds to ``backoff``;
        # the servers are tried in the bootstrap's order (see :mod:`.ads_stream`).
        for server in self._servers[1:]:
            open_channel(server).close()
        self._runner = StreamRunner(
            lambda index: open_channel(
                self._servers[index], options=[("grpc.use_local_subchannel_pool", 1)]
            ),
            backoff,
            on_start=lambda s: self._post(self._on_stream_start, s),
            on_response=lambda s, r: self._post(self._on_response, s, r),
            on_end=lambda s, e: self._post(self._on_stream_end, s, e),
            servers=len(self._servers),
        )
        self._serializer = CallbackSerializer("xds-watchers")
        self._loop = WorkLoop("xds-client")
        self._runner.start()

    @property
    def _server(self) -> XdsServerConfig:
        """The server of the stream in use (the first while there is none)."""
        stream = self._stream
        return self._servers[stream.server_index if stream is not None else 0]

    # --- public API ---------------------------------------------------------

    def watch(self, rtype: ResourceType[T], name: str, watcher: ResourceWatcher[T]) -> CancelWatch:
        """Watch one resource; returns its cancel function. Callable from any thread."""
        if self._closed:
            raise XdsError("XdsClient is closed")
        handle = _Watch(rtype, name, watcher)
        self._loop.submit(lambda: self._add_watch(handle))

        def cancel() -> None:
            if not handle.cancelled:
                handle.cancelled = True
                self._loop.submit(lambda: self._remove_watch(handle))

        return cancel

    def watch_all(
        self, rtype: ResourceType[T], watcher: ResourceWatcher[Mapping[str, T]]
    ) -> CancelWatch:
        """Watch every resource of ``rtype`` (LDS or CDS): ``on_changed`` gets the whole
        world as ``{name: resource}`` after each complete response (see module docstring).
        Returns the cancel function; the last cancel drops ``"*"`` from the requests."""
        if not rtype.all_resources_required_in_sotw:
            raise ValueError(
                f"watch_all({rtype.name}): wildcard watches need a type whose SotW responses "
                "hold every resource (Listener or Cluster)"
            )
        if self._closed:
            raise XdsError("XdsClient is closed")
        handle = WildcardWatch(rtype.type_url, watcher)
        self._loop.submit(lambda: self._add_wildcard(rtype, handle))

        def cancel() -> None:
            if not handle.cancelled:
                handle.cancelled = True
                self._loop.submit(lambda: self._remove_wildcard(handle))

        return cancel

    def config_dump(self) -> dict[str, Any]:
        """What is cached, ACKed and NACKed, as JSON-able data (an admin/debug view)."""
        return self._loop.call_sync(self._dump)

    def close(self) -> None:
        """Stop the stream and the threads and close the channel; idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._runner.close()  # closes its channel
        self._loop.close()
        self._serializer.close()

    def __enter__(self) -> XdsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        self._loop.submit(lambda: fn(*args))

    # --- watches (loop thread) ----------------------------------------------

    def _add_watch(self, handle: _Watch) -> None:
        if handle.cancelled:
            return
        rtype, key = handle.rtype, (handle.rtype.type_url, handle.name)
        self._types.setdefault(rtype.type_url, rtype)
        watches = self._watches.setdefault(key, [])
        watches.append(handle)
        entry = self._type_cache(rtype.type_url).entry(handle.name)
        if len(watches) == 1:
            log.debug("xds_subscribe", type=rtype.name, name=handle.name)
            self._seed_from_wildcard(rtype, handle.name)
            self._send_request(rtype.type_url)
            self._tell_loss(handle)
            return
        if entry.resource is not None:
            self._serializer.schedule(handle.callback("on_changed", entry.resource))
        error: XdsError | None = None
        if entry.status is ResourceStatus.DOES_NOT_EXIST:
            error = XdsResourceNotFound(f'{rtype.name} "{handle.name}" does not exist')
        elif entry.status is ResourceStatus.NACKED and entry.resource is None:
            error = XdsValidationError(entry.error or "invalid")
        if error is not None:
            self._serializer.schedule(handle.callback("on_resource_error", error))
        self._tell_loss(handle)

    def _remove_watch(self, handle: _Watch) -> None:
        type_url, key = handle.rtype.type_url, (handle.rtype.type_url, handle.name)
        watches = self._watches.get(key, [])
        if handle in watches:
            watches.remove(handle)
        if watches or key not in self._watches:
            return
        del self._watches[key]
        self._type_cache(type_url).entries.pop(handle.name, None)
        self._cancel_timer(key)
        log.debug("xds_unsubscribe", type=handle.rtype.name, name=handle.name)
        self._send_request(type_url)

    def _seed_from_wildcard(self, rtype: ResourceType[Any], name: str) -> None:
        """A new named watch is answered at once from the last complete wildcard world."""
        state = self._wildcards.get(rtype.type_url)
        if state is None or state.resources is None:
            return
        entry = self._type_cache(rtype.type_url).entry(name)
        if name in state.resources:
            entry.accept(state.resources[name], state.version)
            self._notify(rtype.type_url, name, "on_changed", state.resources[name])
        else:
            entry.remove()
            error = XdsResourceNotFound(f'{rtype.name} "{name}" does not exist')
            self._notify(rtype.type_url, name, "on_resource_error", error)

    def _add_wildcard(self, rtype: ResourceType[Any], handle: WildcardWatch) -> None:
        if handle.cancelled:
            return
        self._types.setdefault(rtype.type_url, rtype)
        self._type_cache(rtype.type_url)  # so the config dump lists the type
        state = self._wildcards.setdefault(rtype.type_url, WildcardState())
        state.watches.append(handle)
        if len(state.watches) == 1:
            log.debug("xds_subscribe_wildcard", type=rtype.name)
            self._send_request(rtype.type_url)
            self._tell_loss(handle)
            return
        mapping = state.mapping()
        if mapping is not None:
            self._serializer.schedule(handle.callback("on_changed", mapping))
        self._tell_loss(handle)

    def _tell_loss(self, handle: _Watch | WildcardWatch) -> None:
        """A watch added while the control plane is unreachable hears so at once."""
        if self._loss is not None:
            self._serializer.schedule(handle.callback("on_ambient_error", self._loss))

    def _remove_wildcard(self, handle: WildcardWatch) -> None:
        state = self._wildcards.get(handle.type_url)
        if state is None or handle not in state.watches:
            return
        state.watches.remove(handle)
        if state.watches:
            return
        del self._wildcards[handle.type_url]
        log.debug("xds_unsubscribe_wildcard", type=self._type_cache(handle.type_url).type_name)
        self._send_request(handle.type_url)

    def _notify_wildcard(self, type_url: str, method: str, arg: object) -> None:
        state = self._wildcards.get(type_url)
        for handle in state.watches if state is not None else ():
            self._serializer.schedule(handle.callback(method, arg))

    def _notify(self, type_url: str, name: str, method: str, arg: object) -> None:
        for handle in self._watches.get((type_url, name), ()):
            self._serializer.schedule(handle.callback(method, arg))

    # --- stream events (loop thread) ----------------------------------------

    def _on_stream_start(self, stream: AdsStream) -> None:
        self._stream = stream
        self._nonces.clear()
        self._requested_types.clear()
        self._proofs.clear()
        self._node_sent = False
        for type_url in sorted({t for t, _ in self._watches} | self._wildcards.keys()):
            self._send_request(type_url)

    def _on_stream_end(self, stream: AdsStream, error: Exception | None) -> None:
        if stream is not self._stream:
            return
        self._stream = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        reason = _describe(error)
        server = self._servers[stream.server_index].server_uri
        log.warning("xds_stream_lost", server=server, reason=reason)
        if self._loss is not None:
            return
        exc = self._loss = XdsConnectionError(f"ADS stream to {server} failed: {reason}")
        for type_url, name in self._watches:
            self._notify(type_url, name, "on_ambient_error", exc)
        for type_url in self._wildcards:
            self._notify_wildcard(type_url, "on_ambient_error", exc)

    def _on_response(self, stream: AdsStream, response: Any) -> None:
        if stream is not self._stream:
            return
        self._loss = None
        type_url = response.type_url
        self._nonces[type_url] = response.nonce
        rtype = self._types.get(type_url)
        if rtype is None:
            self._nack(type_url, response, f"resource type {type_url!r} is not supported")
            return
        tc = self._type_cache(type_url)
        decoded = decode_response(rtype, response.resources)
        subscribed = {n for t, n in self._watches if t == type_url}
        # Wildcard watchers hear first, so "is it in the mesh?" never lags a named deletion.
        # A resource whose name cannot be read leaves the response's name list unknown.
        names = decoded.valid.keys() | decoded.errors.keys()
        complete = (
            rtype.all_resources_required_in_sotw
            and not decoded.unnamed_errors
            and self._is_complete(type_url, names)
        )
        if complete:
            self._deliver_world(type_url, decoded.valid, decoded.errors, response)
        for name in sorted(subscribed & decoded.valid.keys()):
            self._cancel_timer((type_url, name))
            if tc.entry(name).accept(decoded.valid[name], response.version_info):
                self._notify(type_url, name, "on_changed", decoded.valid[name])
        for name in sorted(subscribed & decoded.errors.keys()):
            self._cancel_timer((type_url, name))
            entry = tc.entry(name)
            entry.reject(decoded.errors[name])
            method = "on_ambient_error" if entry.resource is not None else "on_resource_error"
            self._notify(type_url, name, method, XdsValidationError(decoded.errors[name]))
        if rtype.all_resources_required_in_sotw and not decoded.unnamed_errors:
            # An unreadable resource may be one that looks absent: delete nothing then.
            self._delete_absent(rtype, tc, subscribed - names, complete=complete)
        if decoded.errors or decoded.unnamed_errors:
            self._nack(type_url, response, decoded.error_detail())
        else:
            tc.acked_version = response.version_info
            log.debug("xds_ack", type=rtype.name, version=response.version_info)
            self._send_request(type_url)

    def _is_complete(self, type_url: str, response_names: set[str]) -> bool:
        """True when a wildcard is wanted and the response provably lists every resource."""
        if type_url not in self._wildcards:
            return False
        return self._proofs.setdefault(type_url, StreamProof()).proves_complete(response_names)

    def _deliver_world(
        self, type_url: str, valid: Mapping[str, Any], errors: Mapping[str, str], response: Any
    ) -> None:
        state = self._wildcards[type_url]
        world = state.apply(valid, set(errors), response.version_info)
        self._notify_wildcard(type_url, "on_changed", world)
        if errors:
            detail = "; ".join(errors[n] for n in sorted(errors))
            self._notify_wildcard(type_url, "on_ambient_error", XdsValidationError(detail))

    def _delete_absent(
        self, rtype: ResourceType[Any], tc: TypeCache, names: Iterable[str], *, complete: bool
    ) -> None:
        """Absent from a SotW response: delete what was received; when the response is
        complete (wildcard), a never-received name is known not to exist as well."""
        for name in sorted(names):
            entry = tc.entry(name)
            if entry.resource is None:
                if complete and entry.status is not ResourceStatus.DOES_NOT_EXIST:
                    self._cancel_timer((rtype.type_url, name))
                    entry.remove()
                    log.info("xds_resource_not_found", type=rtype.name, name=name)
                    error = XdsResourceNotFound(f'{rtype.name} "{name}" does not exist')
                    self._notify(rtype.type_url, name, "on_resource_error", error)
                continue  # otherwise never received (the timer decides) or already deleted
            if self._server.ignore_resource_deletion:
                log.warning("xds_deletion_ignored", type=rtype.name, name=name)
                continue
            entry.remove()
            log.info("xds_resource_deleted", type=rtype.name, name=name)
            error = XdsResourceNotFound(f'{rtype.name} "{name}" was removed by the control plane')
            self._notify(rtype.type_url, name, "on_resource_error", error)

    def _nack(self, type_url: str, response: Any, detail: str) -> None:
        rtype = self._types.get(type_url)
        tc = self._type_cache(type_url)
        tc.last_nack = NackRecord(response.version_info, response.nonce, detail, time.time())
        log.warning(
            "xds_nack",
            type=type_url,
            version=response.version_info,
            nonce=response.nonce,
            error=detail,
        )
        self._send_request(type_url, error=detail, known=rtype is not None)

    # --- requests and timers (loop thread) ----------------------------------

    def _send_request(self, type_url: str, *, error: str | None = None, known: bool = True) -> None:
        if self._stream is None:
            return
        names = sorted(n for t, n in self._watches if t == type_url)
        wildcard = [WILDCARD] if type_url in self._wildcards else []
        if not names and not wildcard and type_url not in self._requested_types and error is None:
            return
        request = discovery_pb2.DiscoveryRequest(
            version_info=self._type_cache(type_url).acked_version if known else "",
            resource_names=wildcard + names,
            type_url=type_url,
            response_nonce=self._nonces.get(type_url, ""),
        )
        if error is not None:  # a NACK: google.rpc.Status INVALID_ARGUMENT
            request.error_detail.code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            request.error_detail.message = error
        if not self._node_sent:
            request.node.CopyFrom(self._node)
            self._node_sent = True
        self._requested_types.add(type_url)
        self._proofs.setdefault(type_url, StreamProof()).record_request(wildcard + names)
        self._stream.send(request)
        for name in names:
            self._start_timer(type_url, name)

    def _start_timer(self, type_url: str, name: str) -> None:
        key = (type_url, name)
        entry = self._type_cache(type_url).entry(name)
        if key in self._timers or entry.status is not ResourceStatus.REQUESTED:
            return
        self._timers[key] = self._loop.call_later(
            self._resource_timeout_s, lambda: self._on_timer(key)
        )

    def _on_timer(self, key: _Key) -> None:
        if self._timers.pop(key, None) is None or key not in self._watches:
            return
        type_url, name = key
        entry = self._type_cache(type_url).entry(name)
        if entry.status is not ResourceStatus.REQUESTED:
            return
        entry.remove()
        rtype = self._types[type_url]
        log.info("xds_resource_not_found", type=rtype.name, name=name)
        error = XdsResourceNotFound(
            f'{rtype.name} "{name}" does not exist: no data {self._resource_timeout_s:g}s '
            "after it was requested"
        )
        self._notify(type_url, name, "on_resource_error", error)

    def _cancel_timer(self, key: _Key) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _type_cache(self, type_url: str) -> TypeCache:
        rtype = self._types.get(type_url)
        return self._cache.of_type(type_url, rtype.name if rtype is not None else type_url)

    def _dump(self) -> dict[str, Any]:
        types = self._cache.dump()
        for type_url, state in self._wildcards.items():
            types[self._type_cache(type_url).type_name]["wildcard"] = state.dump()
        return {
            "node_id": self._bootstrap.node.id,
            "server_uri": self._server.server_uri,
            "connected": self._stream is not None and self._stream.received_response,
            "types": types,
        }


def _describe(error: Exception | None) -> str:
    if error is None:
        return "the server closed the stream"
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"
