"""The workload's inbound listener as a server policy: mTLS-aware RBAC and JWT.

A mesh server watches ``xds.istio.io/grpc/lds/inbound/IP:PORT`` (the bootstrap's
``server_listener_resource_name_template``) for every port it serves, as grpcio's xDS
server does, and applies the listener's filters (:mod:`.inbound_rules`) to each call.
A new listener version is compiled on the xDS client's callback thread and swapped in
by reference: the next call sees it. What a call meets, per listener state:

- not arrived yet: refused, 503 / UNAVAILABLE (grpcio does not serve either);
- arrived: its filters decide (401, 403, or through);
- NACKed before any good version, or keys that cannot be used: refused, 503 /
  UNAVAILABLE naming the problem; after a good version: that version stays (fail static);
- does not exist (the control plane knows no workload at that address): no policy,
  logged once (grpcio would stop serving; meshlib serves as a server outside the mesh);
  a listener that existed and then disappears (a registration lapsed while the control
  plane restarted) keeps its last version, so the server never falls open.

A call whose local address the server reports (ASGI) meets the listener of that port;
a gRPC call (grpcio does not say which port a call came in on) meets every listener of
its server, each with its own port. Denials are logged with structlog and counted
(``meshlib.server.authz.denials``: ``listener``, ``kind`` rbac / jwt / mtls / unavailable).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from opentelemetry import metrics

from meshlib.errors import MeshError, XdsError, XdsResourceNotFound
from meshlib.observability.logging import get_logger
from meshlib.serving.call import IncomingCall
from meshlib.serving.decision import PASS, Decision, Deny
from meshlib.serving.inbound_rules import InboundRules, Refusal
from meshlib.xds_client.inbound_resources import InboundListenerResource
from meshlib.xds_client.resource_types import LISTENER
from meshlib.xds_client.watchers import CancelWatch

log = get_logger(__name__)

DENIALS: Final = "meshlib.server.authz.denials"
_GRPC_UNAVAILABLE: Final = 14
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


def listener_name(template: str, address: str, port: int) -> str:
    """The template with ``%s`` replaced by ``IP:PORT`` (IPv6 in brackets)."""
    host = address.strip("[]")
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return template.replace("%s", where) if "%s" in template else template + where


class _Counter:
    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = metrics.get_meter("meshlib", meter_provider=meter_provider)
        self._denials = meter.create_counter(
            DENIALS, unit="{call}", description="Calls refused by the inbound listener's policy."
        )

    def denial(self, listener: str, kind: str) -> None:
        self._denials.add(1, {"listener": listener, "kind": kind})


_COUNTER: _Counter | None = None


def _counter() -> _Counter:
    global _COUNTER
    if _COUNTER is None:
        _COUNTER = _Counter()
    return _COUNTER


class _ListenerWatch:
    """One inbound listener: its current rules, or why there are none."""

    def __init__(self, name: str, port: int, served_tls: bool | None = None) -> None:
        self.name = name
        self.port = port
        self.served_tls = served_tls  # how the server added the port (None: not said)
        self.asgi = False  # served_tls learnt from an ASGI connection (not add_*_port)
        self.resource: InboundListenerResource | None = None
        self.rules: InboundRules | None = None
        self.absent = False
        self.problem = f"meshlib: inbound listener {name} has not arrived yet"
        self.cancel: CancelWatch = lambda: None
        self.active = True

    # xDS watcher callbacks (the xDS client's callback thread)

    def on_changed(self, resource: object) -> None:
        if not self.active:
            return
        if not isinstance(resource, InboundListenerResource):
            self._fail(f"{self.name} is not a server-side listener")
            return
        try:
            rules = InboundRules(resource)
        except (MeshError, ValueError) as exc:  # keys or regexes that cannot be used
            self._fail(f"{self.name}: {exc}")
            return
        self.rules, self.absent, self.resource = rules, False, resource
        log.info("inbound_policy_applied", listener=self.name, filters=len(rules.steps))
        _check_port_tls(self.name, self.served_tls, resource, asgi=self.asgi)

    def learn_tls(self, secure: bool) -> None:
        """An ASGI connection showed the port's TLS: check it once against the listener
        (and against each listener version after)."""
        self.served_tls, self.asgi = secure, True
        resource = self.resource
        if resource is not None:
            _check_port_tls(self.name, secure, resource, asgi=True)

    def on_resource_error(self, error: XdsError) -> None:
        if not self.active:
            return
        if isinstance(error, XdsResourceNotFound):
            if self.rules is not None:  # it existed: fail static, never open
                log.warning(
                    "inbound_listener_absent", listener=self.name, effect="last policy kept"
                )
                return
            self.absent = True
            log.warning("inbound_listener_absent", listener=self.name, effect="no policy")
            return
        self._fail(str(error))

    def on_ambient_error(self, error: XdsError) -> None:
        if self.active:
            log.warning("inbound_listener_error", listener=self.name, error=str(error))

    def _fail(self, problem: str) -> None:
        log.error(
            "inbound_policy_rejected", listener=self.name, error=problem, kept=bool(self.rules)
        )
        if self.rules is None:
            self.absent = False
            self.problem = f"meshlib: inbound policy unusable: {problem}"

    def refusal(self, call: IncomingCall) -> Refusal | None:
        rules = self.rules
        if rules is not None:
            return rules.refusal(call)
        if self.absent:
            return None
        return Refusal(
            Deny(http_status=503, grpc_status=_GRPC_UNAVAILABLE, message=self.problem),
            "unavailable",
            self.name,
            self.problem,
        )


class InboundPolicy:
    """The authorization of one server: the inbound listeners of the ports it serves.

    ``source`` gives the xDS client (started on first use); ``template`` is the
    bootstrap's ``server_listener_resource_name_template``; ``resolve`` turns a
    wildcard bind address into the workload's address (what the control plane names
    the listener by)."""

    name = "inbound"

    def __init__(
        self,
        source: Callable[[], Any],
        template: str,
        *,
        resolve: Callable[[int], str] | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._source = source
        self._counter = _Counter(meter_provider) if meter_provider is not None else None
        self._template = template
        self._resolve = resolve
        self._lock = threading.Lock()
        self._watches: dict[tuple[str, int], _ListenerWatch] = {}
        self._by_port: dict[int, _ListenerWatch] = {}
        self._all: tuple[_ListenerWatch, ...] = ()

    def serve(self, address: str, port: int, *, tls: bool | None = None) -> str:
        """Watch the listener of ``address:port`` (idempotent); its name. ``tls``: whether
        the server added the port with TLS (checked against the listener's mode)."""
        if address in _WILDCARDS and self._resolve is not None:
            address = self._resolve(port)
        key = (address.strip("[]"), port)
        with self._lock:
            found = self._watches.get(key)
            if found is not None:
                return found.name
            watch = _ListenerWatch(listener_name(self._template, address, port), port, tls)
            self._watches[key] = watch
            self._by_port.setdefault(port, watch)
            self._all = (*self._all, watch)
        watch.cancel = self._source().watch(LISTENER, watch.name, watch)
        log.info("inbound_listener_watched", listener=watch.name)
        return watch.name

    def check(self, call: IncomingCall) -> Decision:
        if call.local is not None:
            watch = self._by_port.get(call.local[1])
            if watch is None:
                self.serve(*call.local)
                watch = self._by_port[call.local[1]]
            if call.secure and watch.served_tls is None:  # only TLS can fail mesh clients
                watch.learn_tls(True)
            watches: tuple[_ListenerWatch, ...] = (watch,)
        else:
            watches = self._all
        for watch in watches:
            refusal = watch.refusal(call)
            if refusal is not None:
                return _refuse(refusal, call, watch.name, self._counter or _counter())
        return PASS

    def close(self) -> None:
        with self._lock:
            watches, self._all = self._all, ()
            self._watches.clear()
            self._by_port.clear()
        for watch in watches:
            watch.active = False
            watch.cancel()

    def __repr__(self) -> str:
        return f"InboundPolicy({[w.name for w in self._all]})"


def _check_port_tls(
    listener: str, served_tls: bool | None, resource: InboundListenerResource, *, asgi: bool
) -> None:
    """Warn when a port's TLS is not what the mesh's clients use there: a grpcio port is
    TLS or plaintext for good, an ASGI server's port too, and a mismatch fails every mesh
    client's handshake where the server sees nothing (docs/security.md, which ports get
    TLS). An ASGI port is checked once a TLS connection shows it is TLS."""
    strict = resource.tls is not None and resource.tls.require_client_certificate
    if served_tls is True and resource.tls is None:
        log.warning(
            "inbound_port_tls_mismatch",
            listener=listener,
            port="TLS (ASGI server)" if asgi else "mTLS (add_secure_port)",
            mesh="plaintext (PERMISSIVE or DISABLE)",
            effect="mesh clients connect in plaintext and fail the handshake: "
            + ("serve the port without TLS" if asgi else "add the port with add_insecure_port")
            + ", or make the workload STRICT",
        )
    elif served_tls is False and strict:
        log.warning(
            "inbound_port_tls_mismatch",
            listener=listener,
            port="plaintext (add_insecure_port)",
            mesh="STRICT",
            effect="mesh clients connect with mTLS and fail; calls without a client "
            "certificate are refused: add the port with mesh.server_credentials()",
        )


def _refuse(refusal: Refusal, call: IncomingCall, listener: str, counter: _Counter) -> Deny:
    log.warning(
        "inbound_denied",
        listener=listener,
        kind=refusal.kind,
        filter=refusal.filter,
        detail=refusal.detail,
        protocol=call.protocol,
        method=call.method,
        path=call.path,
        peer=call.peer,
    )
    counter.denial(listener, refusal.kind)
    return refusal.denial
