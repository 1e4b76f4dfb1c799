"""meshlib's jwt_authn on its own: where tokens are read, Envoy's requirements and 401
reasons, forwarding, and fuzzed tokens and JWKS that get a clear answer, never an
exception; the decoder NACKs provider fields it cannot enforce and unusable keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf import any_pb2

from meshlib.errors import JwtConfigError, XdsValidationError
from meshlib.security.authz_model import (
    JwtAuthnConfig,
    JwtHeader,
    JwtProvider,
    JwtRequirement,
    JwtRule,
    RequirementKind,
)
from meshlib.security.jwt_authn import JwtAuthenticator
from meshlib.security.jwt_keys import parse_jwks
from meshlib.xds_client._decode_util import DecodeContext
from meshlib.xds_client.decode_jwt import decode_jwt_filter

ISSUER = "https://issuer.test"
KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public)), "kid": kid}
    return {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public)), "kid": kid}


JWKS = json.dumps({"keys": [_jwk(KEY, "ec"), _jwk(RSA_KEY, "rsa")]})


def token(claims: dict[str, Any] | None = None, *, key: Any = KEY, **header: Any) -> str:
    # A day: parametrized tokens are minted at collection, long before some tests run.
    body = {"iss": ISSUER, "sub": "bob", "aud": "api", "exp": int(time.time()) + 86_400}
    body.update(claims or {})
    algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(body, key, algorithm=header.pop("alg", algorithm), headers=header or None)


def provider(**fields: Any) -> JwtProvider:
    return JwtProvider(
        **{
            "name": "p",
            "issuer": ISSUER,
            "audiences": ("api",),
            "jwks": JWKS,
            "payload_in_metadata": "payload",
            **fields,
        }
    )


def authenticator(
    requirement: JwtRequirement | None = None, *providers: JwtProvider
) -> JwtAuthenticator:
    chosen = providers or (provider(),)
    either = JwtRequirement(
        RequirementKind.ANY,
        children=(
            JwtRequirement(RequirementKind.PROVIDER, provider="p"),
            JwtRequirement(RequirementKind.ALLOW_MISSING),
        ),
    )
    config = JwtAuthnConfig(providers=chosen, rules=(JwtRule("/", requirement or either),))
    return JwtAuthenticator("jwt", config)


def _bearer(text: str) -> dict[str, str]:
    return {"authorization": f"Bearer {text}"}


@pytest.mark.parametrize(
    ("headers", "query", "ok", "reason"),
    [
        ({}, "", True, ""),  # missing: allowed (Istio's allow_missing)
        (_bearer(token()), "", True, ""),
        (_bearer(token(key=RSA_KEY)), "", True, ""),  # the RSA key of the same JWKS
        ({}, f"access_token={token()}", True, ""),  # Envoy's default parameter
        (_bearer(token({"aud": "other"})), "", False, "Audiences in Jwt are not allowed"),
        (_bearer(token({"exp": int(time.time()) - 600})), "", False, "Jwt is expired"),
        (_bearer(token({"nbf": int(time.time()) + 600})), "", False, "Jwt not yet valid"),
        (_bearer(token({"iss": "https://else"})), "", False, "Jwt issuer is not configured"),
        (
            _bearer(token(key=ec.generate_private_key(ec.SECP256R1()))),
            "",
            False,
            "Jwt verification fails",
        ),
        (_bearer("a.b"), "", False, "Jwt is not in the form of Header.Payload.Signature"),
    ],
)
def test_istio_requirement(headers: dict[str, str], query: str, ok: bool, reason: str) -> None:
    outcome = authenticator().authenticate("/x", headers, query)
    assert outcome.ok is ok
    assert outcome.reason.startswith(reason)
    if ok and (headers or query):
        assert outcome.payloads["payload"]["sub"] == "bob"


def test_an_hmac_token_is_refused_for_asymmetric_keys() -> None:
    """Key confusion: an HS256 token "signed" with the RSA public key's bytes."""
    public = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = {"iss": ISSUER, "sub": "bob", "aud": "api"}
    forged = (
        base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    )
    signature = hmac.new(public, forged.encode(), hashlib.sha256).digest()
    forged += "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    outcome = authenticator().authenticate("/x", _bearer(forged), "")
    assert (outcome.ok, outcome.reason) == (False, "Jwt verification fails")
    none = jwt.encode(body, None, algorithm="none")
    assert not authenticator().authenticate("/x", _bearer(none), "").ok


def test_token_places_forwarding_and_requirements() -> None:
    custom = provider(
        from_headers=(JwtHeader("x-jwt", "Token "),),
        from_params=("jwt",),
        forward_payload_header="x-payload",
    )
    only = JwtRequirement(RequirementKind.PROVIDER, provider="p")
    check = authenticator(only, custom)
    assert check.authenticate("/x", {}, "").reason == "Jwt is missing"
    assert not check.authenticate("/x", _bearer(token()), "").ok  # not where it looks
    outcome = check.authenticate("/x", {"x-jwt": f"Token {token()}"}, "")
    assert outcome.ok and outcome.remove_headers == {"x-jwt"}  # forward unset: dropped
    payload = base64.urlsafe_b64decode(outcome.add_headers["x-payload"] + "==")
    assert json.loads(payload)["sub"] == "bob"
    assert check.authenticate("/x", {}, f"jwt={token()}").ok
    kept = authenticator(only, provider(forward=True)).authenticate("/x", _bearer(token()), "")
    assert kept.ok and not kept.remove_headers
    audiences = JwtRequirement(RequirementKind.PROVIDER, provider="p", audiences=("other",))
    assert not authenticator(audiences).authenticate("/x", _bearer(token()), "").ok
    lenient = JwtRequirement(RequirementKind.ALLOW_MISSING_OR_FAILED)
    assert authenticator(lenient).authenticate("/x", _bearer("junk"), "").ok
    both = JwtRequirement(RequirementKind.ALL, children=(only, only))
    assert authenticator(both).authenticate("/x", _bearer(token()), "").ok
    config = JwtAuthnConfig(providers=(provider(),), rules=(JwtRule("/api", only),))
    scoped = JwtAuthenticator("jwt", config)
    assert scoped.authenticate("/public", {}, "").ok  # no rule for the path
    assert not scoped.authenticate("/api/x", {}, "").ok


def _mutations(text: str, rng: random.Random) -> list[str]:
    out = []
    for _ in range(150):
        chars = list(text)
        for _ in range(rng.randint(1, 6)):
            op = rng.randint(0, 2)
            at = rng.randrange(len(chars)) if chars else 0
            if op == 0 and chars:
                chars[at] = chr(rng.randint(0, 0x2FF))
            elif op == 1:
                chars.insert(at, rng.choice('.=-_{}[]"\\\x00é'))
            elif chars:
                del chars[at]
        out.append("".join(chars))
    return out


def test_fuzzed_tokens_get_an_answer_never_an_exception() -> None:
    rng = random.Random(11)
    check = authenticator()
    odd = ["", ".", "..", "a.b.c", "e30.e30.", "\x00" * 9]
    for mutant in [*_mutations(token(), rng), *odd]:
        outcome = check.authenticate("/x", _bearer(mutant), "")
        assert outcome.ok is False or outcome.payloads or not mutant.strip()


def keycloak_jwks(signing: dict[str, Any]) -> str:
    """A key set as Keycloak publishes it: an RSA-OAEP encryption key beside ``signing``."""
    encryption = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    enc = {**_jwk(encryption, "kc-enc"), "alg": "RSA-OAEP", "use": "enc"}
    return json.dumps({"keys": [enc, signing]})


def test_a_keycloak_key_set_verifies_with_its_signing_key_and_skips_the_enc_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="meshlib.security.jwt_keys")
    jwks = keycloak_jwks({**_jwk(RSA_KEY, "kc-sig"), "alg": "RS256", "use": "sig"})
    (key,) = parse_jwks(jwks, "providers[p].local_jwks")
    assert (key.kid, key.algorithm) == ("kc-sig", "RS256")
    assert any("jwks_key_skipped" in r.getMessage() and "kc-enc" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    check = authenticator(None, provider(jwks=jwks))
    outcome = check.authenticate("/x", _bearer(token(key=RSA_KEY, kid="kc-sig")), "")
    assert (outcome.ok, outcome.payloads["payload"]["sub"]) == (True, "bob")


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        (
            [{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}],
            "keys[0] (use 'enc', not 'sig')",
        ),
        ([{"kty": "RSA", "alg": "RSA-OAEP-256"}], "keys[0] (alg 'RSA-OAEP-256' is for encryption)"),
        ([{"kty": "EC", "alg": "ECDH-ES"}, {"kty": "XX"}], "keys[1] (kty 'XX' is not RSA, EC"),
    ],
)
def test_a_set_with_no_signing_key_is_refused_naming_why(
    keys: list[dict[str, Any]], reason: str
) -> None:
    with pytest.raises(JwtConfigError, match=r"^jwks: JWKS has no signing key: skipped ") as error:
        parse_jwks(json.dumps({"keys": keys}), "jwks")
    assert reason in str(error.value)


def test_fuzzed_jwks_are_refused_with_a_clear_error_never_an_exception() -> None:
    rng = random.Random(7)
    bad = [
        *_mutations(JWKS, rng),
        "",
        "[]",
        '{"keys": []}',
        '{"keys": [1]}',
        '{"keys": [{"kty": "EC"}]}',
        '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "ES256"}]}',
        '{"keys": [{"kty": "weird"}]}',
    ]
    refused = 0
    for text in bad:
        try:
            parse_jwks(text, "providers[p].local_jwks")
        except JwtConfigError as exc:
            assert str(exc).startswith("providers[p].local_jwks")
            refused += 1
    assert refused > 50


def _decode(config: jwt_pb2.JwtAuthentication) -> JwtAuthnConfig:
    packed = any_pb2.Any()
    packed.Pack(config)
    return decode_jwt_filter(DecodeContext("Listener", "inbound"), packed, "jwt")


def _provider(**fields: Any) -> jwt_pb2.JwtProvider:
    return jwt_pb2.JwtProvider(
        issuer=ISSUER, local_jwks=base_pb2.DataSource(inline_string=JWKS), **fields
    )


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            jwt_pb2.JwtAuthentication(
                providers={"p": jwt_pb2.JwtProvider(remote_jwks=jwt_pb2.RemoteJwks())}
            ),
            "jwt.providers[p].remote_jwks: not supported",
        ),
        (
            jwt_pb2.JwtAuthentication(
                providers={"p": _provider(subjects=None, from_cookies=["c"])}
            ),
            "jwt.providers[p].from_cookies: not supported",
        ),
        (
            jwt_pb2.JwtAuthentication(
                providers={
                    "p": jwt_pb2.JwtProvider(local_jwks=base_pb2.DataSource(inline_string="{"))
                }
            ),
            "jwt.providers[p].local_jwks: JWKS is not JSON",
        ),
        (
            jwt_pb2.JwtAuthentication(
                providers={"p": _provider()},
                rules=[
                    jwt_pb2.RequirementRule(
                        match=rc.RouteMatch(prefix="/"),
                        requires=jwt_pb2.JwtRequirement(provider_name="q"),
                    )
                ],
            ),
            "no provider named 'q'",
        ),
    ],
)
def test_decoder_refuses_providers_it_cannot_enforce(
    config: jwt_pb2.JwtAuthentication, error: str
) -> None:
    with pytest.raises(XdsValidationError) as caught:
        _decode(config)
    assert error in str(caught.value)
