"""Announcing this process to the control plane as an endpoint of a service.

``Register``, then ``Heartbeat`` every third of the granted TTL on a daemon
thread (re-registering when the control plane answers NOT_FOUND, e.g. after it
restarted or the registration expired), ``Deregister`` on close. Talks the
``meshlib.registry.v1.Registry`` gRPC service on the bootstrap's xDS servers, in
order, with the ADS stream's fallback rule
(:class:`~meshlib.xds_client.server_order.ServerOrder`): a server that cannot be
reached sends the Register to the next at once, and only a round in which none
answered waits on the backoff. A heartbeat that cannot reach its server
registers at the next one; the client-chosen id makes it replace itself there
(replicas on one store share it).

Eventually consistent, as gRPC's and Envoy's xDS clients are: a control plane
that cannot be reached right now (UNAVAILABLE, DEADLINE_EXCEEDED, ...) leaves
the registration pending, and the thread keeps registering with jittered
exponential backoff, so a service may start before its control plane. An answer
retrying cannot change (INVALID_ARGUMENT for bad input, ...) raises at once, and
is never a reason to try another server.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from meshlib._protos import registry_v1_pb2 as pb
from meshlib.errors import RegistrationError
from meshlib.observability.logging import get_logger
from meshlib.security.keeper import CertificateKeeper
from meshlib.security.proof_calls import with_proofs
from meshlib.xds_client.backoff import Backoff
from meshlib.xds_client.bootstrap import XdsServerConfig
from meshlib.xds_client.channel import open_channel
from meshlib.xds_client.resources import Locality
from meshlib.xds_client.server_order import ServerOrder

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


def _deterministic(message: Any) -> bytes:
    """The bytes a call's identity proof is signed over (map order fixed)."""
    data: bytes = message.SerializeToString(deterministic=True)
    return data


class _RegistryCalls:
    """The Registry's three calls over one channel (one per bootstrap server)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.channel = channel
        self.register = channel.unary_unary(
            _SERVICE + "Register",
            request_serializer=_deterministic,
            response_deserializer=pb.RegisterResponse.FromString,
        )
        self.heartbeat = channel.unary_unary(
            _SERVICE + "Heartbeat",
            request_serializer=_deterministic,
            response_deserializer=pb.HeartbeatResponse.FromString,
        )
        self.deregister = channel.unary_unary(
            _SERVICE + "Deregister",
            request_serializer=_deterministic,
            response_deserializer=pb.DeregisterResponse.FromString,
        )


class Registration:
    """A registration, live or pending; ``close()`` deregisters (idempotent).

    ``id`` is chosen here, so a Register whose answer was lost and is sent
    again, or sent to another server after one died, replaces itself instead
    of adding a second registration. ``channels`` are the bootstrap's servers,
    in order.
    """

    def __init__(
        self,
        channels: Sequence[grpc.Channel],
        request: pb.RegisterRequest,
        *,
        on_close: Callable[[Registration], None] | None = None,
    ) -> None:
        self._servers = [_RegistryCalls(channel) for channel in channels]
        self._order = ServerOrder(len(self._servers))
        self._request = request
        self._request.id = request.id or uuid.uuid4().hex
        self._on_close = on_close
        self._stop = threading.Event()
        self._live = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._ever_registered = False
        # The server at self._order.index holds the registration: heartbeat it.
        # Read and written by start() and then the thread only.
        self._bound = False
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
    def server_index(self) -> int:
        """Which of the bootstrap's servers holds (or is next asked for) the registration."""
        return self._order.index

    @property
    def registered(self) -> bool:
        """True once the control plane accepted it, until a heartbeat finds it lost."""
        return self._live.is_set()

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Block until the control plane holds the registration; False on timeout."""
        return self._live.wait(timeout)

    def start(self) -> Registration:
        """Register now and start the heartbeat thread.

        Raises RegistrationError when a control plane refuses; when none can be
        reached, returns pending and the thread keeps trying."""
        try:
            self._register_round()
        except grpc.RpcError as exc:
            raise RegistrationError(
                f"the control plane refused registering {self.service} at {self.address}: "
                f"{_describe(exc)}"
            ) from exc
        self._thread = threading.Thread(
            target=self._run, name=f"meshlib-registration-{self.service}", daemon=True
        )
        self._thread.start()
        return self

    def _register_round(self) -> bool:
        """Register at the servers in order from the current one, moving on at once
        from one that cannot be reached. True once one holds it; False when none
        answered (the caller waits on the backoff). A refusal is an answer: raises
        grpc.RpcError, and the next round starts at the first server."""
        while True:
            try:
                self._register_once()
            except grpc.RpcError as exc:
                if not _is_transient(exc):
                    self._order.advance(answered=True)
                    raise
                if self._stop.is_set():
                    return False
                if self._order.advance(answered=False):
                    continue
                log.warning(
                    "registration_pending", service=self.service, id=self.id, error=_describe(exc)
                )
                return False
            return True

    def _register_once(self) -> None:
        """One Register call at the current server; raises grpc.RpcError."""
        index = self._order.index
        response: pb.RegisterResponse = self._servers[index].register(
            self._request, timeout=RPC_TIMEOUT_S
        )
        self.ttl_s = response.ttl_seconds
        self._ever_registered = True
        self._bound = True
        self._live.set()
        log.info(
            "workload_registered",
            service=self.service,
            id=self.id,
            ttl_s=self.ttl_s,
            server_index=index,
        )

    def _period(self) -> float:
        return max(MIN_HEARTBEAT_S, self.ttl_s / 3) if self.ttl_s > 0 else DEFAULT_HEARTBEAT_S

    def _run(self) -> None:
        """Heartbeat while a server holds it; register again, with backoff, while none does."""
        backoff = Backoff(RETRY_BASE_S, RETRY_MAX_S)
        while not self._stop.wait(self._period() if self._bound else backoff.next_delay()):
            if self._bound and not self._beat():
                continue
            if self._retry_register():
                backoff.reset()

    def _beat(self) -> bool:
        """Heartbeat the server holding the registration. True when it must be
        registered again right away: that server lost it (NOT_FOUND), or could not
        be reached and a next server is there to try."""
        try:
            reply: pb.HeartbeatResponse = self._servers[self._order.index].heartbeat(
                pb.HeartbeatRequest(id=self.id), timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            if self._stop.is_set():
                return False
            if _code(exc) is grpc.StatusCode.NOT_FOUND:
                log.warning("registration_lost", service=self.service, id=self.id)
                self._bound = False
                self._live.clear()
                return True
            log.warning("heartbeat_failed", service=self.service, error=_describe(exc))
            if not _is_transient(exc):
                return False  # an answer: heartbeat there again next period
            # Unreachable. Still held there until its TTL ends: ``registered`` stays true.
            self._bound = False
            return self._order.advance(answered=False)
        if reply.ttl_seconds > 0:
            self.ttl_s = reply.ttl_seconds
        return False

    def _retry_register(self) -> bool:
        if self._stop.is_set():
            return False
        try:
            return self._register_round()
        except grpc.RpcError as exc:
            if not self._stop.is_set():
                log.warning(
                    "registration_refused", service=self.service, id=self.id, error=_describe(exc)
                )
            return False

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
            self._deregister()
        for server in self._servers:
            server.channel.close()
        if self._on_close is not None:
            self._on_close(self)

    def _deregister(self) -> None:
        """At the server holding it, then the others in order while none can be reached."""
        count = len(self._servers)
        for step in range(count):
            server = self._servers[(self._order.index + step) % count]
            try:
                server.deregister(pb.DeregisterRequest(id=self.id), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as exc:
                if _is_transient(exc) and step + 1 < count:
                    continue
                log.warning("deregister_failed", service=self.service, error=_describe(exc))
                return
            log.info("workload_deregistered", service=self.service, id=self.id)
            return

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
    servers: Sequence[XdsServerConfig],
    request: pb.RegisterRequest,
    *,
    on_close: Callable[[Registration], None] | None = None,
    certificates: CertificateKeeper | None = None,
) -> Registration:
    """Start a :class:`Registration` over channels of its own to ``servers``, the
    bootstrap's ``xds_servers`` in order (all closed if refused). Over ``tls``
    channel credentials each call proves ``certificates``' identity (the control
    plane registers the workload under it)."""
    if not servers:
        raise RegistrationError("register: the bootstrap lists no xds_servers")
    channels: list[grpc.Channel] = []
    try:
        for server in servers:
            channel = open_channel(server, options=_CHANNEL_OPTIONS)
            secure = server.selected_creds.type == "tls"
            channels.append(with_proofs(channel, certificates if secure else None))
        return Registration(channels, request, on_close=on_close).start()
    except BaseException:
        for channel in channels:
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
    if not service or not isinstance(service, str):
        raise ValueError(f"register: service must be a non-empty host name, got {service!r}")
    for name, value in (
        ("port", port),
        ("target_port", port if target_port is None else target_port),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"register: {name} must be an int, got {value!r}")
        if not 0 < value < 65536:
            raise ValueError(f"register: {name} {value} is not in 1..65535")
    if isinstance(weight, bool) or not isinstance(weight, int):
        raise TypeError(f"register: weight must be an int, got {weight!r}")
    if weight < 1:
        raise ValueError(f"register: weight must be >= 1, got {weight}")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)):
        raise TypeError(f"register: ttl_s must be a number of seconds, got {ttl_s!r}")
    if ttl_s < 0:
        raise ValueError(f"register: ttl_s must be >= 0, got {ttl_s}")
    if labels is not None and not (
        isinstance(labels, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    ):
        raise TypeError(f"register: labels must map str to str, got {labels!r}")
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
