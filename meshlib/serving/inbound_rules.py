"""One inbound listener's authorization filters, compiled, and what they answer a call.

The listener's HTTP filters run in the listener's order, as Envoy and grpcio run
them: a JWT filter verifies the caller's token (a bad one: 401 ``Jwt verification
fails`` or Envoy's other reason / UNAUTHENTICATED) and leaves the verified payloads
for the RBAC filters after it; each RBAC filter allows or denies (403 ``RBAC: access
denied`` / PERMISSION_DENIED), the first denial ends the walk. Istio's DENY filter comes
before its ALLOW filter, so DENY wins. Shadow rules and LOG (AUDIT) policies are
logged, never enforced. A listener whose ``DownstreamTlsContext`` requires a client
certificate refuses a call that came without one (403 / PERMISSION_DENIED).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from meshlib.observability.logging import get_logger
from meshlib.security.authz_model import JWT_AUTHN_FILTER_NAME, JwtAuthnConfig, RbacAction
from meshlib.security.jwt_authn import JwtAuthenticator
from meshlib.security.rbac import RbacEngine, RequestFacts
from meshlib.serving.call import IncomingCall
from meshlib.serving.decision import Deny
from meshlib.xds_client.inbound_resources import InboundListenerResource

log = get_logger(__name__)

RBAC_DENIED_BODY: Final = "RBAC: access denied"
_GRPC_PERMISSION_DENIED: Final = 7
_GRPC_UNAUTHENTICATED: Final = 16

RBAC_DENIAL: Final = Deny(
    http_status=403, grpc_status=_GRPC_PERMISSION_DENIED, message=RBAC_DENIED_BODY
)


#: A call without a client certificate on a listener that requires one (STRICT):
#: refused as the handshake would have refused it.
MTLS_DENIAL: Final = Deny(
    http_status=403,
    grpc_status=_GRPC_PERMISSION_DENIED,
    message="meshlib: this port requires mTLS (PeerAuthentication STRICT): "
    "the call came without a client certificate",
)


def jwt_denial(reason: str) -> Deny:
    return Deny(http_status=401, grpc_status=_GRPC_UNAUTHENTICATED, message=reason)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call was refused: ``kind`` "rbac" or "jwt", the filter, policy or reason."""

    denial: Deny
    kind: str
    filter: str
    detail: str


def _split_host_port(text: str | None) -> str | None:
    if not text:
        return None
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else None
    host, _, _ = text.rpartition(":")
    return host or text


class InboundRules:
    """The compiled filters of one listener (raises a SecurityError on unusable keys)."""

    __slots__ = ("address", "mtls", "name", "port", "steps")

    def __init__(self, listener: InboundListenerResource) -> None:
        self.name = listener.name
        self.address = listener.address
        self.port = listener.port
        self.mtls = listener.tls is not None and listener.tls.require_client_certificate
        self.steps: list[JwtAuthenticator | RbacEngine] = []
        for flt in listener.filters:
            where = f"{listener.name}: {flt.name}"
            if isinstance(flt.config, JwtAuthnConfig):
                self.steps.append(JwtAuthenticator(where, flt.config))
            else:
                self.steps.append(RbacEngine(where, flt.config))

    def facts(self, call: IncomingCall) -> RequestFacts:
        """What RBAC reads of ``call`` as it came in on this listener."""
        headers: dict[str, str] = dict(call.headers)
        if call.protocol == "grpc":
            headers.setdefault(":method", "POST")
            headers[":path"] = call.path
        else:
            headers[":method"] = call.method
            headers[":path"] = f"{call.path}?{call.query}" if call.query else call.path
        if ":authority" not in headers and "host" in headers:
            headers[":authority"] = headers["host"]
        local_ip, local_port = call.local if call.local is not None else (self.address, self.port)
        return RequestFacts(
            headers=headers,
            path=call.path,
            source_ip=_split_host_port(call.peer),
            destination_ip=local_ip,
            destination_port=local_port,
            sni=call.sni,
            tls=call.peer_tls(),
        )

    def refusal(self, call: IncomingCall) -> Refusal | None:
        """None when every filter lets ``call`` through (and, on an mTLS listener, the
        call came with a client certificate: a port added without TLS does not serve
        plaintext past a STRICT policy)."""
        if self.mtls:
            tls = call.peer_tls()
            if tls is None or not (tls.uri_sans or tls.dns_sans or tls.subject):
                return Refusal(MTLS_DENIAL, "mtls", self.name, "no client certificate")
        facts: RequestFacts | None = None
        for step in self.steps:
            if isinstance(step, JwtAuthenticator):
                outcome = step.authenticate(call.path, call.headers, call.query)
                if not outcome.ok:
                    return Refusal(jwt_denial(outcome.reason), "jwt", step.name, outcome.reason)
                if facts is None:
                    facts = self.facts(call)
                facts.metadata[JWT_AUTHN_FILTER_NAME] = dict(outcome.payloads)
                if outcome.remove_headers or outcome.add_headers:
                    call.header_edits = (
                        frozenset(outcome.remove_headers),
                        dict(outcome.add_headers),
                    )
                continue
            if facts is None:
                facts = self.facts(call)
            verdict = step.evaluate(facts)
            if verdict.shadow_policy is not None or (
                verdict.action is RbacAction.LOG and verdict.policy is not None
            ):
                _log_shadow(self.name, step.name, call, verdict.policy, verdict.shadow_policy)
            if not verdict.allowed:
                return Refusal(
                    RBAC_DENIAL, "rbac", step.name, verdict.policy or "no policy matched"
                )
        return None


def _log_shadow(
    listener: str, step: str, call: IncomingCall, policy: str | None, shadow: str | None
) -> None:
    log.info(
        "inbound_audit",
        listener=listener,
        filter=step,
        method=call.method,
        path=call.path,
        peer=call.peer,
        policy=policy,
        shadow_policy=shadow,
    )


def headers_after(
    raw: list[tuple[bytes, bytes]], edits: tuple[frozenset[str], Mapping[str, str]]
) -> list[tuple[bytes, bytes]]:
    """ASGI headers with ``edits`` applied (removed names, then added headers)."""
    remove, add = edits
    drop = {name.encode("latin-1") for name in (*remove, *add)}
    kept = [(k, v) for k, v in raw if k.lower() not in drop]
    kept.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in add.items())
    return kept
