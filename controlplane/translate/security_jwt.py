"""RequestAuthentication -> Envoy's JWT filter (envoy.extensions.filters.http.jwt_authn.v3).

The workload's RequestAuthentications (its namespace's and the root namespace's whose
selector matches) give one provider per ``jwtRules`` entry (keys inline, audiences,
where the token is read, forwarding); the requirement is Istio's: any provider, or no
token at all (``allow_missing``), so a bad token is refused with 401 and a missing one
passes without a request principal. Each provider writes the token's payload into the
filter's dynamic metadata under ``payload``, where the RBAC filters read ``iss``, ``sub``
and claims (:func:`request_principal`, :func:`claim`).

Envoy sidecars and meshlib enforce it. Proxyless listeners carry it marked optional:
grpcio has no JWT filter and skips it, and its RBAC never matches a metadata matcher
(gRFC A41), so there every request carries no request principal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import metadata_pb2, string_pb2, value_pb2
from google.protobuf import empty_pb2

from controlplane.security_model import RequestAuthentication
from controlplane.translate.common import pack
from controlplane.translate.security_peer import selects
from controlplane.translate.security_settings import PolicySettings

JWT_FILTER_NAME = "envoy.filters.http.jwt_authn"
PAYLOAD_KEY = "payload"
# A jwksUri rule whose keys the control plane has not fetched yet gets this key set: a
# public key whose private half was discarded, so every token is refused (401) and a
# request without one passes without a request principal; istiod sends a fake JWKS too.
UNAVAILABLE_JWKS = (
    '{"keys":[{"kty":"EC","crv":"P-256","x":"-GfQAs7aTh-shVd3YjC2S_KwIkLx7pqpdfIAg2KX-uI",'
    '"y":"_0bh53VCG14JIKj13lVkXm5qVUFDtJcp1P1DfFTM4Vs","kid":"meshlib-jwks-unavailable",'
    '"alg":"ES256","use":"sig"}]}'
)


def jwt_filter(
    policies: Sequence[RequestAuthentication],
    settings: PolicySettings,
    namespace: str,
    labels: Mapping[str, str],
) -> hcm_pb2.HttpFilter | None:
    """The JWT filter for the workload, None when no RequestAuthentication applies."""
    chosen = [
        p
        for p in policies
        if p.namespace in (namespace, settings.root_namespace) and selects(p.selector, labels)
    ]
    config = jwt_pb2.JwtAuthentication()
    names: list[str] = []
    for policy in chosen:
        for index, rule in enumerate(policy.rules):
            name = f"{policy.namespace}/{policy.name}/{index}"
            provider = jwt_pb2.JwtProvider(
                issuer=rule.issuer,
                audiences=list(rule.audiences),
                local_jwks=base_pb2.DataSource(inline_string=rule.jwks or UNAVAILABLE_JWKS),
                forward=rule.forward_original_token,
                forward_payload_header=rule.output_payload_to_header,
                from_params=list(rule.from_params),
                payload_in_metadata=PAYLOAD_KEY,
            )
            provider.from_headers.extend(
                jwt_pb2.JwtHeader(name=h.name, value_prefix=h.prefix) for h in rule.from_headers
            )
            config.providers[name].CopyFrom(provider)
            names.append(name)
    if not names:
        return None
    requirements = [jwt_pb2.JwtRequirement(provider_name=name) for name in names]
    requirements.append(jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty()))
    config.rules.append(
        jwt_pb2.RequirementRule(
            match=rc.RouteMatch(prefix="/"),
            requires=jwt_pb2.JwtRequirement(
                requires_any=jwt_pb2.JwtRequirementOrList(requirements=requirements)
            ),
        )
    )
    return hcm_pb2.HttpFilter(name=JWT_FILTER_NAME, typed_config=pack(config))


def _payload(path: str, value: value_pb2.ValueMatcher) -> rbac_pb2.Principal:
    matcher = metadata_pb2.MetadataMatcher(
        filter=JWT_FILTER_NAME,
        path=[
            metadata_pb2.MetadataMatcher.PathSegment(key=PAYLOAD_KEY),
            metadata_pb2.MetadataMatcher.PathSegment(key=path),
        ],
        value=value,
    )
    return rbac_pb2.Principal(metadata=matcher)


def _present() -> value_pb2.ValueMatcher:
    return value_pb2.ValueMatcher(present_match=True)


def _exact(text: str) -> value_pb2.ValueMatcher:
    return value_pb2.ValueMatcher(string_match=string_pb2.StringMatcher(exact=text))


def request_principal(value: str) -> rbac_pb2.Principal:
    """``ISSUER/SUBJECT`` (either may be ``*``) or ``*``: the validated token's iss and sub."""
    if value == "*":
        return _payload("sub", _present())
    issuer, _, subject = value.rpartition("/")
    parts = [
        _payload("iss", _present() if issuer == "*" else _exact(issuer)),
        _payload("sub", _present() if subject == "*" else _exact(subject)),
    ]
    return rbac_pb2.Principal(and_ids=rbac_pb2.Principal.Set(ids=parts))


def claim(name: str, matcher: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    """A top-level claim of the validated token: a string, or a list holding one."""
    as_string = value_pb2.ValueMatcher(string_match=matcher)
    in_list = value_pb2.ValueMatcher(
        list_match=value_pb2.ListMatcher(one_of=value_pb2.ValueMatcher(string_match=matcher))
    )
    return rbac_pb2.Principal(
        or_ids=rbac_pb2.Principal.Set(ids=[_payload(name, as_string), _payload(name, in_list)])
    )


NO_REQUEST_PRINCIPAL = rbac_pb2.Principal(not_id=rbac_pb2.Principal(any=True))
