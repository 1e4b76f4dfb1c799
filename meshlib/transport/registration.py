"""Announcing this process to the control plane as an endpoint of a service.

``Register``, then ``Heartbeat`` every third of the granted TTL on a daemon
thread (re-registering when the control plane answers NOT_FOUND, e.g. after it
restarted or the registration expired), ``Deregister`` on close. Talks the
``meshlib.registry.v1.Registry`` gRPC service on the bootstrap's xDS server.

Eventually consistent, as gRPC's and Envoy's xDS clients are: a control plane
that cannot be reached right now (UNAVAILABLE, DEADLINE_EXCEEDED, ...) leaves
the registration pending, and the thread keeps registering with jittered
exponential backoff, so a service may start before its control plane. An answer
retrying cannot change (INVALID_ARGUMENT for bad input, ...) raises at once.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import grpc

from meshlib._protos import registry_v1_pb2 as pb
from meshlib.errors import RegistrationError
from meshlib.observability.logging import get_logger
from meshlib.xds_client.backoff import Backoff
from meshlib.xds_client.bootstrap import XdsServerConfig
from meshlib.xds_client.channel import open_channel
from meshlib.xds_client.resources import Locality

log = get_logger(__name__)

_SERVICE = "/meshlib.registry.v1.Registry/"
RPC_TIMEOUT_S = 5.0
MIN_HEARTBEAT_S = 0.05
#: Heartbeat period when the control plane grants no TTL (it should always grant one).
DEFAULT_HEARTBEAT_S = 10.0
#: Delays between registration attempts while the control plane is unreachable.
RETRY_BASE_S = 0.5
RETRY_MAX_S = 10.0
#: The control plane is unreachable or busy: try again later. Any other failure is an answer.
TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
# gRPC's own reconnect backoff (default up to 120 s) must not outlast ours.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", int(RETRY_BASE_S * 1000)),
    ("grpc.min_reconnect_backoff_ms", int(RETRY_BASE_S * 1000)),
    ("grpc.max_reconnect_backoff_ms", int(RETRY_MAX_S * 1000)),
)


def detect_address(server_uri: str) -> str:
    """The local IP of the interface that routes to ``server_uri`` (UDP connect; no packet sent)."""
    target = server_uri.split("///", 1)[-1]
    host, _, port = target.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET
    try:
        if ipaddress.ip_address(host).version == 6:
            family = socket.AF_INET6
    except ValueError:
        pass
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, int(port) if port.isdigit() else 443))
            address: str = probe.getsockname()[0]
            return address
    except OSError as exc:
        raise RegistrationError(
            f"cannot detect this host's address towards {server_uri!r}: {exc}; pass address="
        ) from exc


class Registration:
    """A registration, live or pending; ``close()`` deregisters (idempotent).

    ``id`` is chosen here, so a Register whose answer was lost and is sent
    again replaces itself instead of adding a second registration.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        request: pb.RegisterRequest,
        *,
        on_close: Callable[[Registration], None] | None = None,
    ) -> None:
        self._channel = channel
        self._request = request
        self._request.id = request.id or uuid.uuid4().hex
        self._on_close = on_close
        self._register = channel.unary_unary(
            _SERVICE + "Register",
            request_serializer=pb.RegisterRequest.SerializeToString,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        self._heartbeat = channel.unary_unary(
            _SERVICE + "Heartbeat",
            request_serializer=pb.HeartbeatRequest.SerializeToString,
            response_deserializer=pb.HeartbeatResponse.FromString,
        )
        self._deregister = channel.unary_unary(
            _SERVICE + "Deregister",
            request_serializer=pb.DeregisterRequest.SerializeToString,
            response_deserializer=pb.DeregisterResponse.FromString,
        )
        self._stop = threading.Event()
        self._live = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._ever_registered = False
        self.id = self._request.id
        self.ttl_s = 0.0
        self._thread: threading.Thread | None = None

    @property
    def service(self) -> str:
        return self._request.service

    @property
    def address(self) -> str:
        return self._request.address

    @property
    def registered(self) -> bool:
        """True once the control plane accepted it, until a heartbeat finds it lost."""
        return self._live.is_set()

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Block until the control plane holds the registration; False on timeout."""
        return self._live.wait(timeout)

    def start(self) -> Registration:
        """Register now and start the heartbeat thread.

        Raises RegistrationError when the control plane refuses; when it cannot
        be reached, returns pending and the thread keeps trying."""
        try:
            self._register_once()
        except grpc.RpcError as exc:
            if not _is_transient(exc):
                raise RegistrationError(
                    f"the control plane refused registering {self.service} at {self.address}: "
                    f"{_describe(exc)}"
                ) from exc
            log.warning(
                "registration_pending", service=self.service, id=self.id, error=_describe(exc)
            )
        self._thread = threading.Thread(
            target=self._run, name=f"meshlib-registration-{self.service}", daemon=True
        )
        self._thread.start()
        return self

    def _register_once(self) -> None:
        """One Register call; raises grpc.RpcError."""
        response: pb.RegisterResponse = self._register(self._request, timeout=RPC_TIMEOUT_S)
        self.ttl_s = response.ttl_seconds
        self._ever_registered = True
        self._live.set()
        log.info("workload_registered", service=self.service, id=self.id, ttl_s=self.ttl_s)

    def _period(self) -> float:
        return max(MIN_HEARTBEAT_S, self.ttl_s / 3) if self.ttl_s > 0 else DEFAULT_HEARTBEAT_S

    def _run(self) -> None:
        """Heartbeat while registered; register again, with backoff, while not."""
        backoff = Backoff(RETRY_BASE_S, RETRY_MAX_S)
        while not self._stop.wait(self._period() if self.registered else backoff.next_delay()):
            if self.registered:
                self._beat()
            if not self.registered and self._retry_register():
                backoff.reset()

    def _beat(self) -> None:
        try:
            reply: pb.HeartbeatResponse = self._heartbeat(
                pb.HeartbeatRequest(id=self.id), timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            if _code(exc) is grpc.StatusCode.NOT_FOUND:
                log.warning("registration_lost", service=self.service, id=self.id)
                self._live.clear()
            elif not self._stop.is_set():
                log.warning("heartbeat_failed", service=self.service, error=_describe(exc))
            return
        if reply.ttl_seconds > 0:
            self.ttl_s = reply.ttl_seconds

    def _retry_register(self) -> bool:
        if self._stop.is_set():
            return False
        try:
            self._register_once()
        except grpc.RpcError as exc:
            if not self._stop.is_set():
                event = "registration_pending" if _is_transient(exc) else "registration_refused"
                log.warning(event, service=self.service, id=self.id, error=_describe(exc))
            return False
        return True

    def close(self) -> None:
        """Stop the thread and deregister; errors are logged, never raised."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RPC_TIMEOUT_S + 1)
        self._live.clear()
        if self._ever_registered:
            try:
                self._deregister(pb.DeregisterRequest(id=self.id), timeout=RPC_TIMEOUT_S)
                log.info("workload_deregistered", service=self.service, id=self.id)
            except grpc.RpcError as exc:
                log.warning("deregister_failed", service=self.service, error=_describe(exc))
        self._channel.close()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Registration:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_registration(
    server: XdsServerConfig,
    request: pb.RegisterRequest,
    *,
    on_close: Callable[[Registration], None] | None = None,
) -> Registration:
    """Start a :class:`Registration` over its own channel to ``server`` (closed if refused)."""
    channel = open_channel(server, options=_CHANNEL_OPTIONS)
    registration = Registration(channel, request, on_close=on_close)
    try:
        return registration.start()
    except BaseException:
        channel.close()
        raise


def build_request(
    *,
    service: str,
    port: int,
    address: str,
    target_port: int | None = None,
    labels: Mapping[str, str] | None = None,
    locality: Locality | None = None,
    weight: int = 1,
    ttl_s: float = 0.0,
    namespace: str = "",
    id: str = "",
) -> pb.RegisterRequest:
    """A validated RegisterRequest; ValueError names the bad argument."""
    if not service:
        raise ValueError("register: service must be a non-empty host name")
    for name, value in (("port", port), ("target_port", target_port or port)):
        if not 0 < value < 65536:
            raise ValueError(f"register: {name} {value} is not in 1..65535")
    if weight < 1:
        raise ValueError(f"register: weight must be >= 1, got {weight}")
    if ttl_s < 0:
        raise ValueError(f"register: ttl_s must be >= 0, got {ttl_s}")
    request = pb.RegisterRequest(
        service=service,
        address=address,
        ports={port: target_port or port},
        labels=dict(labels or {}),
        weight=weight,
        ttl_seconds=ttl_s,
        namespace=namespace,
        id=id,
    )
    if locality is not None and (locality.region or locality.zone or locality.sub_zone):
        request.locality.region = locality.region
        request.locality.zone = locality.zone
        request.locality.sub_zone = locality.sub_zone
        request.locality_path = _legacy_path(locality)
    return request


def _legacy_path(locality: Locality) -> str:
    """``region[/zone[/subzone]]`` for control planes older than the ``locality`` message,
    "" when the locality has no such shape (e.g. a zone without a region)."""
    parts = [locality.region, locality.zone, locality.sub_zone]
    while parts and not parts[-1]:
        parts.pop()
    return "/".join(parts) if all(parts) else ""


def _code(error: grpc.RpcError) -> grpc.StatusCode | None:
    return error.code() if isinstance(error, grpc.Call) else None


def _is_transient(error: grpc.RpcError) -> bool:
    return _code(error) in TRANSIENT_CODES


def _describe(error: Any) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return str(error)
