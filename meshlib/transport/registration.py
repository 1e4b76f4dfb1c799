"""Announcing this process to the control plane as an endpoint of a service.

``Register`` once, ``Heartbeat`` every third of the granted TTL on a daemon
thread (re-registering when the control plane answers NOT_FOUND, e.g. after
it restarted or the registration expired), ``Deregister`` on close. Talks the
``meshlib.registry.v1.Registry`` gRPC service on the bootstrap's xDS server.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import grpc

from meshlib._protos import registry_v1_pb2 as pb
from meshlib.errors import RegistrationError
from meshlib.observability.logging import get_logger

log = get_logger(__name__)

_SERVICE = "/meshlib.registry.v1.Registry/"
RPC_TIMEOUT_S = 5.0
MIN_HEARTBEAT_S = 0.05
#: Heartbeat period when the control plane grants no TTL (it should always grant one).
DEFAULT_HEARTBEAT_S = 10.0


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
    """A live registration; ``close()`` deregisters (idempotent)."""

    def __init__(
        self,
        channel: grpc.Channel,
        request: pb.RegisterRequest,
        *,
        on_close: Callable[[Registration], None] | None = None,
    ) -> None:
        self._channel = channel
        self._request = request
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
        self._lock = threading.Lock()
        self._closed = False
        self.id = ""
        self.ttl_s = 0.0
        self._thread: threading.Thread | None = None

    @property
    def service(self) -> str:
        return self._request.service

    @property
    def address(self) -> str:
        return self._request.address

    def start(self) -> Registration:
        """Register now (RegistrationError on failure) and start heartbeating."""
        self._do_register()
        self._thread = threading.Thread(
            target=self._beat, name=f"meshlib-heartbeat-{self.service}", daemon=True
        )
        self._thread.start()
        return self

    def _do_register(self) -> None:
        try:
            response: pb.RegisterResponse = self._register(self._request, timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise RegistrationError(
                f"registering {self.service} at {self.address}: {_describe(exc)}"
            ) from exc
        self.id, self.ttl_s = response.id, response.ttl_seconds
        # Re-registrations keep the id the control plane gave us.
        self._request.id = response.id
        log.info("workload_registered", service=self.service, id=self.id, ttl_s=self.ttl_s)

    def _period(self) -> float:
        return max(MIN_HEARTBEAT_S, self.ttl_s / 3) if self.ttl_s > 0 else DEFAULT_HEARTBEAT_S

    def _beat(self) -> None:
        while not self._stop.wait(self._period()):
            try:
                reply: pb.HeartbeatResponse = self._heartbeat(
                    pb.HeartbeatRequest(id=self.id), timeout=RPC_TIMEOUT_S
                )
                if reply.ttl_seconds > 0:
                    self.ttl_s = reply.ttl_seconds
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                if isinstance(exc, grpc.Call) and exc.code() is grpc.StatusCode.NOT_FOUND:
                    log.warning("registration_lost", service=self.service, id=self.id)
                    try:
                        self._do_register()
                    except RegistrationError as again:
                        log.warning("reregister_failed", service=self.service, error=str(again))
                else:
                    log.warning("heartbeat_failed", service=self.service, error=_describe(exc))

    def close(self) -> None:
        """Stop heartbeats and deregister; errors are logged, never raised."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RPC_TIMEOUT_S + 1)
        if self.id:
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


def build_request(
    *,
    service: str,
    port: int,
    address: str,
    target_port: int | None = None,
    labels: Mapping[str, str] | None = None,
    locality: str = "",
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
    return pb.RegisterRequest(
        service=service,
        address=address,
        ports={port: target_port or port},
        labels=dict(labels or {}),
        locality=locality,
        weight=weight,
        ttl_seconds=ttl_s,
        namespace=namespace,
        id=id,
    )


def _describe(error: Any) -> str:
    if isinstance(error, grpc.Call):
        return f"{error.code().name}: {error.details()}"
    return str(error)
