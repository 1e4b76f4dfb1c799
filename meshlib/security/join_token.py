"""Join tokens as a workload reads them (the control plane signs and checks them).

A join token is a JWT (ES256, or RS256 for an RSA CA key) signed by the control
plane's CA key. Its claims, all required:

    sub   the workload's SPIFFE ID (spiffe://TD/ns/NS/sa/SA)
    ca    SHA-256 of the mesh root certificate's DER, hex: how to trust the control
          plane on first contact (as kubeadm's discovery-token-ca-cert-hash)
    addr  the control plane's secure xDS address, HOST:PORT
    exp   expiry (seconds since the epoch); iat, jti (the id revocation names)

A workload reads them without checking the signature (it cannot yet: it learns
the CA from the token); only the control plane's answer to it proves anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import jwt

from meshlib.errors import JoinTokenError
from meshlib.security.identity import SpiffeId

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
REQUIRED_CLAIMS = ("sub", "ca", "addr", "exp", "jti")


@dataclass(frozen=True, slots=True)
class JoinTokenClaims:
    identity: SpiffeId
    ca_fingerprint: str
    address: str
    expires_at: int
    token_id: str


def read_claims(token: str, where: str = "token") -> JoinTokenClaims:
    """The token's claims, unverified; JoinTokenError naming ``where`` and the problem."""
    if not token:
        raise JoinTokenError(f"{where}: is empty")
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.InvalidTokenError as exc:
        raise JoinTokenError(f"{where}: not a join token (a JWT): {exc}") from exc
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise JoinTokenError(f"{where}: not a join token, claims missing: {', '.join(missing)}")
    try:
        identity = SpiffeId.parse(str(claims["sub"]))
    except ValueError as exc:
        raise JoinTokenError(f"{where}: claim sub: {exc}") from exc
    fingerprint = str(claims["ca"])
    if not _FINGERPRINT.match(fingerprint):
        raise JoinTokenError(f"{where}: claim ca: not a SHA-256 hex fingerprint")
    expires = claims["exp"]
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise JoinTokenError(f"{where}: claim exp: not a whole number of seconds")
    return JoinTokenClaims(identity, fingerprint, str(claims["addr"]), expires, str(claims["jti"]))


def read_token_file(path: str | Path) -> str:
    """The token a file holds (surrounding whitespace dropped); JoinTokenError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise JoinTokenError(f"token file {path}: cannot read: {reason or exc}") from exc
    token = text.strip()
    if not token:
        raise JoinTokenError(f"token file {path}: is empty")
    if token.startswith("{"):
        raise JoinTokenError(
            f'token file {path}: is JSON (meshctl token create -o json?): write its "token" alone'
        )
    if any(c.isspace() for c in token):
        raise JoinTokenError(f"token file {path}: holds more than one token (whitespace inside)")
    return token
