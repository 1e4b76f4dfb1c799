"""JWKS parsing and one token's signature check, with PyJWT (never an exception out).

:func:`parse_jwks` turns a provider's inline JWKS into keys or raises
:class:`~meshlib.errors.JwtConfigError` naming what is wrong; :func:`verify_signature`
answers a token's payload or the reason it is refused, as Envoy words it. Only
algorithms of the key's family are accepted (no RSA key verifying an HMAC token).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt

from meshlib.errors import JwtConfigError
from meshlib.observability.logging import get_logger

log = get_logger(__name__)

#: Envoy's reasons (its 401 bodies).
BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
VERIFICATION_FAILS = "Jwt verification fails"
EXPIRED = "Jwt is expired"
NOT_YET_VALID = "Jwt not yet valid"
AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
UNKNOWN_ISSUER = "Jwt issuer is not configured"
MISSING = "Jwt is missing"

_FAMILIES = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512", "ES256K"}),
    "oct": frozenset({"HS256", "HS384", "HS512"}),
    "OKP": frozenset({"EdDSA"}),
}
#: JWE key-management algorithms (RFC 7518 section 4.1): a key naming one encrypts.
_ENCRYPTION_ALG_PREFIXES = ("RSA1_5", "RSA-OAEP", "ECDH-ES", "A128", "A192", "A256", "PBES2", "dir")


@dataclass(frozen=True, slots=True)
class JwtKey:
    kid: str | None
    key_type: str
    algorithm: str | None  # the JWK's own "alg", if it names one
    key: Any


def _not_for_signatures(entry: dict[str, Any]) -> str | None:
    """Why a key is not one to verify signatures with (Envoy skips such keys), or None."""
    use = entry.get("use")
    if use is not None and use != "sig":
        return f"use {use!r}, not 'sig'"
    algorithm = entry.get("alg")
    if isinstance(algorithm, str) and algorithm.startswith(_ENCRYPTION_ALG_PREFIXES):
        return f"alg {algorithm!r} is for encryption"
    if entry.get("kty") not in _FAMILIES:
        return f"kty {entry.get('kty')!r} is not RSA, EC, oct or OKP"
    return None


def parse_jwks(text: str, where: str) -> tuple[JwtKey, ...]:
    """The signing keys of a JWKS JSON document; :class:`JwtConfigError` naming ``where``.
    Keys not meant for signatures (``use`` other than ``sig``, an encryption ``alg``
    such as RSA-OAEP, an unknown ``kty``) are skipped, logged at debug, as Envoy does:
    identity providers publish them beside their signing keys. A set left with no
    signing key is refused, naming why each was skipped."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise JwtConfigError(f"{where}: JWKS is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwtConfigError(f'{where}: JWKS needs a "keys" list')
    if not document["keys"]:
        raise JwtConfigError(f"{where}: JWKS has no keys")
    keys = []
    skipped = []
    for index, entry in enumerate(document["keys"]):
        at = f"{where}.keys[{index}]"
        if not isinstance(entry, dict):
            raise JwtConfigError(f"{at}: not a JSON object")
        why = _not_for_signatures(entry)
        if why is not None:
            log.debug("jwks_key_skipped", key=at, kid=entry.get("kid"), reason=why)
            skipped.append(f"keys[{index}] ({why})")
            continue
        key_type = entry["kty"]
        algorithm = entry.get("alg")
        if algorithm is not None and algorithm not in _FAMILIES[key_type]:
            raise JwtConfigError(f"{at}.alg: {algorithm!r} does not fit a {key_type} key")
        try:
            key = jwt.PyJWK(entry, algorithm).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            raise JwtConfigError(f"{at}: not a usable {key_type} key: {reason}") from exc
        kid = entry.get("kid")
        keys.append(JwtKey(kid if isinstance(kid, str) else None, key_type, algorithm, key))
    if not keys:
        raise JwtConfigError(f"{where}: JWKS has no signing key: skipped {', '.join(skipped)}")
    return tuple(keys)


def token_header(token: str) -> tuple[dict[str, Any] | None, str | None]:
    """The token's header and unverified payload issuer, or (None, reason)."""
    if token.count(".") != 2:
        return None, BAD_FORMAT
    try:
        header = jwt.get_unverified_header(token)
        payload = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        return None, BAD_FORMAT
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None, BAD_FORMAT
    issuer = payload.get("iss")
    return header, issuer if isinstance(issuer, str) else ""


def verify_signature(
    token: str,
    header: dict[str, Any],
    keys: tuple[JwtKey, ...],
    *,
    audiences: tuple[str, ...],
    issuer: str,
    leeway_s: int,
) -> tuple[dict[str, Any] | None, str]:
    """The verified payload and "", or None and Envoy's reason."""
    algorithm = header.get("alg")
    kid = header.get("kid")
    reason = VERIFICATION_FAILS
    for key in keys:
        if kid is not None and key.kid is not None and key.kid != kid:
            continue
        if not isinstance(algorithm, str) or algorithm not in _FAMILIES[key.key_type]:
            continue
        if key.algorithm is not None and key.algorithm != algorithm:
            continue
        try:
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=list(audiences) or None,
                issuer=issuer or None,
                leeway=leeway_s,
                options={"verify_aud": bool(audiences), "require": []},
            )
        except jwt.ExpiredSignatureError:
            return None, EXPIRED
        except jwt.ImmatureSignatureError:
            return None, NOT_YET_VALID
        except jwt.InvalidAudienceError:
            return None, AUDIENCE_NOT_ALLOWED
        except jwt.InvalidIssuerError:
            return None, UNKNOWN_ISSUER
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
            continue  # another key may verify it
        if isinstance(payload, dict):
            return payload, ""
    return None, reason
