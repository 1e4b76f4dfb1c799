"""Join tokens: issued for one identity, checked, revoked.

A token is a JWT signed by the CA's own key (ES256 for EC, RS256 for RSA), so any
replica holding the CA can check it; claims as :mod:`meshlib.security.join_token`
lists them, plus ``iss`` and ``aud``. Revoked token ids are kept until the
token would have expired anyway; the control plane keeps them in its store and
follows other replicas' revocations (:class:`controlplane.ca.Security`), this class
only holds the set in force.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from controlplane.ca.authority import CertificateAuthority
from controlplane.store import RevokedToken
from meshlib.security.identity import SpiffeId

ISSUER = "meshlib-controlplane"
AUDIENCE = "meshlib-join"
MAX_TOKEN_TTL_S = 366 * 86400
LEEWAY_S = 5


class TokenRejected(Exception):
    """A join token that proves nothing: expired, revoked, forged, another CA's."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    token_id: str
    identity: SpiffeId
    expires_at: int


class JoinTokens:
    """Issues and checks the join tokens of one CA."""

    def __init__(self, ca: CertificateAuthority, revoked: Iterable[RevokedToken] = ()) -> None:
        self._ca = ca
        self._algorithm = "RS256" if isinstance(ca.key, rsa.RSAPrivateKey) else _ec_algorithm(ca)
        self._revoked: dict[str, float] = {}
        self.follow(revoked)

    def issue(self, identity: SpiffeId, ttl_s: float, address: str) -> IssuedToken:
        """A token for ``identity`` valid ``ttl_s`` seconds, naming ``address``."""
        if not 1 <= ttl_s <= MAX_TOKEN_TTL_S:
            raise ValueError(f"ttl: must be between 1s and {MAX_TOKEN_TTL_S // 3600}h")
        if identity.trust_domain != self._ca.trust_domain:
            raise ValueError(f"identity {identity}: not in trust domain {self._ca.trust_domain}")
        now = int(time.time())
        token_id = uuid.uuid4().hex
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(identity),
            "ca": self._ca.fingerprint,
            "addr": address,
            "iat": now,
            "exp": now + int(ttl_s),
            "jti": token_id,
        }
        headers = {"kid": self._ca.fingerprint[:16]}
        token = jwt.encode(claims, self._ca.key, algorithm=self._algorithm, headers=headers)
        return IssuedToken(token, token_id, identity, now + int(ttl_s))

    def verify(self, token: str) -> SpiffeId:
        """The identity a token proves; TokenRejected saying why not."""
        try:
            claims = jwt.decode(
                token,
                self._ca.key.public_key(),
                algorithms=[self._algorithm],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "jti", "sub", "ca"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("join token expired") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenRejected("join token not signed by this control plane's CA") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"join token invalid: {exc}") from exc
        if claims["ca"] != self._ca.fingerprint:
            raise TokenRejected("join token names another CA")
        if str(claims["jti"]) in self._revoked:
            raise TokenRejected(f"join token {claims['jti']} revoked")
        try:
            identity = SpiffeId.parse(str(claims["sub"]))
        except ValueError as exc:
            raise TokenRejected(f"join token: claim sub: {exc}") from exc
        if identity.trust_domain != self._ca.trust_domain:
            raise TokenRejected(f"join token names trust domain {identity.trust_domain}")
        return identity

    @staticmethod
    def revocation(token_id: str) -> RevokedToken:
        """The record refusing ``token_id`` until any token could have expired."""
        return RevokedToken(token_id, time.time() + MAX_TOKEN_TTL_S)

    def follow(self, revoked: Iterable[RevokedToken]) -> None:
        """Refuse these tokens from now on (this replica's revocations and others')."""
        now = time.time()
        self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        for record in revoked:
            self._revoked[record.id] = max(record.expires_at, self._revoked.get(record.id, 0))


def _ec_algorithm(ca: CertificateAuthority) -> str:
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    return {256: "ES256", 384: "ES384", 521: "ES512"}.get(ca.key.curve.key_size, "ES256")
