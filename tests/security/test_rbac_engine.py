"""meshlib's RBAC engine on its own: Envoy's / gRFC A41's semantics for each kind of
permission and principal, ALLOW / DENY / LOG actions and shadow rules, and the xDS
decoder's NACKs for what would change a decision if it were skipped."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.type.matcher.v3 import filter_state_pb2, metadata_pb2, string_pb2, value_pb2
from google.api.expr.v1alpha1 import syntax_pb2
from google.protobuf import any_pb2, wrappers_pb2

from meshlib.errors import XdsValidationError
from meshlib.security.authz_model import RbacAction
from meshlib.security.peer import PeerTls
from meshlib.security.rbac import RbacEngine, RequestFacts
from meshlib.xds_client._decode_util import DecodeContext
from meshlib.xds_client.decode_rbac import decode_rbac_filter

Principal, Permission = rbac_pb2.Principal, rbac_pb2.Permission
ANY_PERMISSION = Permission(any=True)
ANY_PRINCIPAL = Principal(any=True)


def _engine(
    action: int,
    policies: dict[str, tuple[Permission, Principal]],
    shadow: dict[str, tuple[Permission, Principal]] | None = None,
) -> RbacEngine:
    config = rbac_filter_pb2.RBAC(rules=_rules(action, policies))
    if shadow is not None:
        config.shadow_rules.CopyFrom(_rules(action, shadow))
    packed = any_pb2.Any()
    packed.Pack(config)
    return RbacEngine("test", decode_rbac_filter(DecodeContext("Listener", "l"), packed, "rbac"))


def _rules(action: int, policies: dict[str, tuple[Permission, Principal]]) -> rbac_pb2.RBAC:
    rules = rbac_pb2.RBAC(action=action)
    for name, (permission, principal) in policies.items():
        rules.policies[name].CopyFrom(
            rbac_pb2.Policy(permissions=[permission], principals=[principal])
        )
    return rules


def _facts(**fields: Any) -> RequestFacts:
    headers = {":method": "GET", ":path": "/a", **fields.pop("headers", {})}
    return RequestFacts(headers=headers, path=fields.pop("path", "/a"), **fields)


def _allowed(principal: Principal, facts: RequestFacts) -> bool:
    return _engine(rbac_pb2.RBAC.ALLOW, {"p": (ANY_PERMISSION, principal)}).evaluate(facts).allowed


def _exact(text: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(exact=text)


SPIFFE = "spiffe://td/ns/conference/sa/app"


@pytest.mark.parametrize(
    ("principal", "facts", "allowed"),
    [
        # authenticated.principal_name: URI SANs first, then DNS SANs, then the subject.
        (
            Principal(authenticated=Principal.Authenticated(principal_name=_exact(SPIFFE))),
            _facts(tls=PeerTls(uri_sans=(SPIFFE,), dns_sans=("x.test",))),
            True,
        ),
        (
            Principal(authenticated=Principal.Authenticated(principal_name=_exact("x.test"))),
            _facts(tls=PeerTls(uri_sans=(SPIFFE,), dns_sans=("x.test",))),
            False,
        ),
        (
            Principal(authenticated=Principal.Authenticated(principal_name=_exact("x.test"))),
            _facts(tls=PeerTls(dns_sans=("x.test",))),
            True,
        ),
        (
            Principal(authenticated=Principal.Authenticated(principal_name=_exact("CN=x"))),
            _facts(tls=PeerTls(subject="CN=x")),
            True,
        ),
        # no principal_name: any TLS connection; never plaintext
        (Principal(authenticated=Principal.Authenticated()), _facts(tls=PeerTls()), True),
        (Principal(authenticated=Principal.Authenticated()), _facts(), False),
        # source_ip / direct_remote_ip / remote_ip: the peer address, v4 and v6
        (
            Principal(
                direct_remote_ip=address_pb2.CidrRange(
                    address_prefix="10.0.0.0", prefix_len=wrappers_pb2.UInt32Value(value=8)
                )
            ),
            _facts(source_ip="10.1.2.3"),
            True,
        ),
        (
            Principal(remote_ip=address_pb2.CidrRange(address_prefix="::1")),
            _facts(source_ip="::1"),
            True,
        ),
        (
            Principal(source_ip=address_pb2.CidrRange(address_prefix="127.0.0.1")),
            _facts(source_ip="127.0.0.2"),
            False,
        ),
        # metadata: the JWT payload; absent never matches, invert flips
        (
            Principal(
                metadata=metadata_pb2.MetadataMatcher(
                    filter="envoy.filters.http.jwt_authn",
                    path=[
                        metadata_pb2.MetadataMatcher.PathSegment(key="payload"),
                        metadata_pb2.MetadataMatcher.PathSegment(key="groups"),
                    ],
                    value=value_pb2.ValueMatcher(
                        list_match=value_pb2.ListMatcher(
                            one_of=value_pb2.ValueMatcher(string_match=_exact("admins"))
                        )
                    ),
                )
            ),
            _facts(metadata={"envoy.filters.http.jwt_authn": {"payload": {"groups": ["admins"]}}}),
            True,
        ),
        (
            Principal(
                metadata=metadata_pb2.MetadataMatcher(
                    filter="envoy.filters.http.jwt_authn",
                    path=[metadata_pb2.MetadataMatcher.PathSegment(key="payload")],
                    value=value_pb2.ValueMatcher(present_match=True),
                    invert=True,
                )
            ),
            _facts(),
            True,
        ),
        (Principal(not_id=ANY_PRINCIPAL), _facts(), False),
    ],
)
def test_principals(principal: Principal, facts: RequestFacts, allowed: bool) -> None:
    assert _allowed(principal, facts) is allowed


@pytest.mark.parametrize(
    ("permission", "facts", "allowed"),
    [
        (Permission(destination_port=8080), _facts(destination_port=8080), True),
        (Permission(destination_port=8080), _facts(destination_port=8081), False),
        (
            Permission(destination_ip=address_pb2.CidrRange(address_prefix="127.0.0.1")),
            _facts(destination_ip="127.0.0.1"),
            True,
        ),
        (Permission(requested_server_name=_exact("")), _facts(), True),  # no SNI: ""
        (Permission(requested_server_name=_exact("a.test")), _facts(sni="a.test"), True),
        (
            Permission(
                and_rules=Permission.Set(
                    rules=[Permission(destination_port=1), Permission(not_rule=ANY_PERMISSION)]
                )
            ),
            _facts(destination_port=1),
            False,
        ),
        (
            Permission(
                or_rules=Permission.Set(
                    rules=[Permission(destination_port=1), Permission(destination_port=2)]
                )
            ),
            _facts(destination_port=2),
            True,
        ),
    ],
)
def test_permissions(permission: Permission, facts: RequestFacts, allowed: bool) -> None:
    engine = _engine(rbac_pb2.RBAC.ALLOW, {"p": (permission, ANY_PRINCIPAL)})
    assert engine.evaluate(facts).allowed is allowed


def test_actions_and_shadow_rules() -> None:
    everyone = {"everyone": (ANY_PERMISSION, ANY_PRINCIPAL)}
    assert not _engine(rbac_pb2.RBAC.ALLOW, {}).evaluate(_facts()).allowed  # ALLOW, no policy
    assert _engine(rbac_pb2.RBAC.DENY, {}).evaluate(_facts()).allowed
    denied = _engine(rbac_pb2.RBAC.DENY, everyone).evaluate(_facts())
    assert (denied.allowed, denied.policy) == (False, "everyone")
    logged = _engine(rbac_pb2.RBAC.LOG, everyone).evaluate(_facts())
    assert (logged.allowed, logged.policy, logged.action) == (True, "everyone", RbacAction.LOG)
    shadowed = _engine(rbac_pb2.RBAC.ALLOW, everyone, shadow={}).evaluate(_facts())
    assert shadowed.allowed and shadowed.shadow_allowed is False  # reported, not enforced
    assert RbacEngine("none", decode_rbac_filter(_ctx(), _pack(rbac_filter_pb2.RBAC()), "r"))


def _ctx() -> DecodeContext:
    return DecodeContext("Listener", "inbound")


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _with_policy(**policy: Any) -> rbac_filter_pb2.RBAC:
    config = rbac_filter_pb2.RBAC(rules=rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW))
    config.rules.policies["p"].CopyFrom(rbac_pb2.Policy(**policy))
    return config


@pytest.mark.parametrize(
    ("config", "error"),
    [
        (
            _with_policy(
                permissions=[ANY_PERMISSION],
                principals=[ANY_PRINCIPAL],
                condition=syntax_pb2.Expr(id=1),
            ),
            "rbac.rules.policies[p].condition: not supported",
        ),
        (
            _with_policy(permissions=[ANY_PERMISSION], principals=[]),
            "rbac.rules.policies[p].principals: at least one required",
        ),
        (
            _with_policy(
                permissions=[
                    Permission(header=rc.HeaderMatcher(name="grpc-timeout", present_match=True))
                ],
                principals=[ANY_PRINCIPAL],
            ),
            "'grpc-timeout' cannot be matched (gRFC A41)",
        ),
        (
            _with_policy(
                permissions=[ANY_PERMISSION],
                principals=[Principal(filter_state=filter_state_pb2.FilterStateMatcher(key="k"))],
            ),
            "principals[0].filter_state: not supported",
        ),
        (
            _with_policy(
                permissions=[ANY_PERMISSION],
                principals=[
                    Principal(direct_remote_ip=address_pb2.CidrRange(address_prefix="nope"))
                ],
            ),
            "principals[0].direct_remote_ip: not a CIDR range",
        ),
    ],
)
def test_decoder_refuses_what_it_cannot_enforce(config: rbac_filter_pb2.RBAC, error: str) -> None:
    with pytest.raises(XdsValidationError) as caught:
        decode_rbac_filter(_ctx(), _pack(config), "rbac")
    assert error in str(caught.value)
    assert str(caught.value).startswith('Listener "inbound": ')
