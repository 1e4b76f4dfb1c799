"""Envoy's JWT filter (``jwt_authn``), evaluated in-process.

A :class:`JwtAuthenticator` is compiled once from a decoded filter
(:class:`~meshlib.security.authz_model.JwtAuthnConfig`, keys parsed here) and
answers per request with a :class:`JwtOutcome`:

- the first rule whose path prefix matches gives the requirement (none: nothing
  required, tokens are still not read);
- a provider reads its token from ``from_headers`` (after ``value_prefix``) and
  ``from_params``; with neither, from ``Authorization: Bearer`` and the
  ``access_token`` parameter (Envoy's defaults);
- a token is verified against the provider's keys, issuer, audiences, ``exp`` and
  ``nbf`` (with ``clock_skew_seconds``);
- requirements combine as Envoy's: ``provider_name``, ``requires_any`` (first
  success wins), ``requires_all``, ``allow_missing`` (no token passes, a bad one
  fails), ``allow_missing_or_failed`` (always passes, verified payloads kept);
- a failure is a 401 with Envoy's reason as the body (``Jwt verification fails``...);
- verified payloads go to the filter's metadata under ``payload_in_metadata``
  (what RBAC's ``metadata`` matchers read), ``forward_payload_header`` gets the
  payload (base64url), and without ``forward`` the token is removed from the request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from meshlib.security.authz_model import (
    JwtAuthnConfig,
    JwtProvider,
    JwtRequirement,
    RequirementKind,
)
from meshlib.security.jwt_keys import (
    MISSING,
    UNKNOWN_ISSUER,
    VERIFICATION_FAILS,
    JwtKey,
    parse_jwks,
    token_header,
    verify_signature,
)

_DEFAULT_HEADER = ("authorization", "Bearer ")
_DEFAULT_PARAM = "access_token"


@dataclass(slots=True)
class JwtOutcome:
    """``ok``; ``reason`` Envoy's words for a failure; ``payloads`` the verified
    payloads by metadata key; ``remove_headers`` / ``add_headers`` what the app's
    request loses / gains (tokens not forwarded, payload headers)."""

    ok: bool
    reason: str = ""
    payloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    remove_headers: set[str] = field(default_factory=set)
    add_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    header: str | None  # the header it came from (None: a query parameter)


class _Provider:
    __slots__ = ("config", "keys")

    def __init__(self, config: JwtProvider, where: str) -> None:
        self.config = config
        self.keys: tuple[JwtKey, ...] = parse_jwks(config.jwks, f"{where}.local_jwks")

    def tokens(self, headers: Mapping[str, str], query: Mapping[str, str]) -> list[_Token]:
        found: list[_Token] = []
        places = [(h.name, h.value_prefix) for h in self.config.from_headers]
        params = list(self.config.from_params)
        if not places and not params:
            places, params = [_DEFAULT_HEADER], [_DEFAULT_PARAM]
        for name, prefix in places:
            value = headers.get(name)
            if value is None:
                continue
            if prefix:
                at = value.find(prefix)
                if at < 0:
                    continue
                value = value[at + len(prefix) :]
            value = value.split(",")[0].strip()
            if value:
                found.append(_Token(value, name))
        for param in params:
            value = query.get(param)
            if value:
                found.append(_Token(value, None))
        return found

    def verify(
        self, token: str, audiences: tuple[str, ...] | None
    ) -> tuple[dict[str, Any] | None, str]:
        header, issuer = token_header(token)
        if header is None:
            return None, issuer or VERIFICATION_FAILS
        if self.config.issuer and issuer != self.config.issuer:
            return None, UNKNOWN_ISSUER
        return verify_signature(
            token,
            header,
            self.keys,
            audiences=self.config.audiences if audiences is None else audiences,
            issuer=self.config.issuer,
            leeway_s=self.config.clock_skew_s,
        )


class _Check:
    """One request's walk over a requirement tree (each provider verified once)."""

    def __init__(
        self,
        providers: Mapping[str, _Provider],
        headers: Mapping[str, str],
        query: Mapping[str, str],
    ) -> None:
        self.providers = providers
        self.headers = headers
        self.query = query
        self.outcome = JwtOutcome(ok=True)
        self._verified: dict[tuple[str, tuple[str, ...] | None], tuple[bool, str]] = {}
        self._found: dict[str, list[_Token]] = {}

    def tokens(self, name: str) -> list[_Token]:
        """The tokens provider ``name`` finds in this request (read once)."""
        found = self._found.get(name)
        if found is None:
            found = self._found[name] = self.providers[name].tokens(self.headers, self.query)
        return found

    def run(self, requirement: JwtRequirement) -> tuple[bool, str]:
        kind = requirement.kind
        if kind is RequirementKind.PROVIDER:
            return self._provider(requirement.provider, requirement.audiences)
        if kind is RequirementKind.ALLOW_MISSING_OR_FAILED:
            for name in self.providers:
                self._provider(name, None)
            return True, ""
        if kind is RequirementKind.ALLOW_MISSING:
            return self._allow_missing()
        results = [self.run(child) for child in requirement.children]
        if kind is RequirementKind.ANY:
            if any(ok for ok, _ in results):
                return True, ""
            return False, _worst([reason for _, reason in results])
        failed = [reason for ok, reason in results if not ok]
        return (not failed), (failed[0] if failed else "")

    def _allow_missing(self) -> tuple[bool, str]:
        """Any token present must verify with the provider whose issuer it names."""
        any_token = False
        for name in self.providers:
            if self.tokens(name):
                any_token = True
                ok, reason = self._provider(name, None)
                if not ok and reason != UNKNOWN_ISSUER:
                    return False, reason
        if self.outcome.payloads or not any_token:
            return True, ""
        return False, UNKNOWN_ISSUER

    def _provider(self, name: str, audiences: tuple[str, ...] | None) -> tuple[bool, str]:
        """Each (provider, audiences) is verified once per request."""
        key = (name, audiences)
        if key not in self._verified:
            self._verified[key] = self._verify(name, audiences)
        return self._verified[key]

    def _verify(self, name: str, audiences: tuple[str, ...] | None) -> tuple[bool, str]:
        provider = self.providers[name]
        tokens = self.tokens(name)
        if not tokens:
            return False, MISSING
        token = tokens[0]
        payload, reason = provider.verify(token.text, audiences)
        if payload is None:
            return False, reason
        config = provider.config
        if config.payload_in_metadata:
            self.outcome.payloads[config.payload_in_metadata] = payload
        if config.forward_payload_header:
            raw = json.dumps(payload, separators=(",", ":")).encode()
            encoded = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
            self.outcome.add_headers[config.forward_payload_header] = encoded
        if not config.forward and token.header is not None:
            self.outcome.remove_headers.add(token.header)
        return True, ""


def _worst(reasons: list[str]) -> str:
    """The reason a requires_any reports: a real failure over a missing token."""
    for reason in reasons:
        if reason not in (MISSING, ""):
            return reason
    return reasons[0] if reasons else MISSING


class JwtAuthenticator:
    """One JWT filter, compiled (keys parsed: :class:`~meshlib.errors.JwtConfigError`)."""

    __slots__ = ("_providers", "_rules", "name")

    def __init__(self, name: str, config: JwtAuthnConfig) -> None:
        self.name = name
        self._providers = {
            p.name: _Provider(p, f"{name}.providers[{p.name}]") for p in config.providers
        }
        self._rules = config.rules

    def authenticate(self, path: str, headers: Mapping[str, str], query: str) -> JwtOutcome:
        """Never raises: a bad token is a failed outcome."""
        for rule in self._rules:
            if path.startswith(rule.prefix):
                requirement = rule.requirement
                break
        else:
            return JwtOutcome(ok=True)
        if requirement is None:
            return JwtOutcome(ok=True)
        params: dict[str, str] = {}
        if query:
            for key, value in parse_qsl(query, keep_blank_values=True):
                params.setdefault(key, value)
        check = _Check(self._providers, headers, params)
        ok, reason = check.run(requirement)
        if not ok:
            return JwtOutcome(ok=False, reason=reason or VERIFICATION_FAILS)
        return check.outcome
