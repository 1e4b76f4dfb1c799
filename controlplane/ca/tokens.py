"""Join tokens: issued for one identity, checked, revoked.

A token is a JWT signed by the CA's own key (ES256 for EC, RS256 for RSA), so any
replica holding the CA can check it; claims as :mod:`meshlib.security.join_token`
lists them, plus ``iss`` and ``aud``. Revoked token ids are kept until the
token would have expired anyway, in ``DATA_DIR/ca/revoked-tokens.json`` when the
control plane has a data folder (a replica set shares revocations only through
a shared folder today; a store-held list is the way to extend it).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from controlplane.ca.authority import CertificateAuthority
from meshlib.security.identity import SpiffeId

ISSUER = "meshlib-controlplane"
AUDIENCE = "meshlib-join"
MAX_TOKEN_TTL_S = 366 * 86400
REVOCATIONS_FILE = "revoked-tokens.json"
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

    def __init__(self, ca: CertificateAuthority, folder: Path | None = None) -> None:
        self._ca = ca
        self._algorithm = "RS256" if isinstance(ca.key, rsa.RSAPrivateKey) else _ec_algorithm(ca)
        self._path = folder / REVOCATIONS_FILE if folder is not None else None
        self._revoked: dict[str, int] = self._load()

    def _load(self) -> dict[str, int]:
        if self._path is None or not self._path.exists():
            return {}
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError) as exc:
            raise ValueError(f"{self._path}: not a revocation list ({exc})") from exc

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

    def revoke(self, token_id: str) -> None:
        """Refuse the token with this id from now on (kept until it would have expired)."""
        now = int(time.time())
        self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        self._revoked[token_id] = now + MAX_TOKEN_TTL_S
        if self._path is not None:
            tmp = self._path.with_name(f".{self._path.name}.tmp")
            tmp.write_text(json.dumps(self._revoked), encoding="utf-8")
            os.replace(tmp, self._path)


def _ec_algorithm(ca: CertificateAuthority) -> str:
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    return {256: "ES256", 384: "ES384", 521: "ES512"}.get(ca.key.curve.key_size, "ES256")
