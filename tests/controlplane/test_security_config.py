"""PeerAuthentication, AuthorizationPolicy and DestinationRule ``tls``: every supported
field lands in the security model; everything else is refused with file#document, field
path and a clear message, and nothing of the load is kept."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from controlplane.config import ConfigError, load_config
from controlplane.destination_policy import effective_policy
from controlplane.security_model import (
    AuthzAction,
    AuthzCondition,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
    ClientTLSSettings,
    MtlsMode,
    TlsMode,
    Values,
)
from meshlib.errors import JwtConfigError
from meshlib.security.jwt_keys import parse_jwks
from tests.controlplane.config_cases import assert_refused, destination_rule, documents, load_text

SEC = "security.istio.io/v1"


def _resource(kind: str, spec: str, name: str, namespace: str) -> str:
    metadata = f"metadata: {{name: {name}, namespace: {namespace}}}"
    return f"apiVersion: {SEC}\nkind: {kind}\n{metadata}\nspec:\n{spec}"


def peer_authentication(spec: str, name: str = "pa", namespace: str = "conference") -> str:
    return _resource("PeerAuthentication", spec, name, namespace)


def authorization_policy(spec: str, name: str = "ap", namespace: str = "conference") -> str:
    return _resource("AuthorizationPolicy", spec, name, namespace)


def test_peer_authentication_scopes_and_ports(tmp_path: Path) -> None:
    config = load_text(
        tmp_path / "pa.yaml",
        documents(
            peer_authentication("  mtls: {mode: STRICT}\n", "default", "istio-system"),
            peer_authentication(
                "  selector: {matchLabels: {app: sessions}}\n"
                "  mtls: {mode: UNSET}\n"
                "  portLevelMtls:\n    8080: {mode: PERMISSIVE}\n    '9090': {mode: DISABLE}\n"
            ),
        ),
    )
    mesh, workload = config.peer_authentications
    assert (mesh.namespace, mesh.selector, mesh.mode) == ("istio-system", None, MtlsMode.STRICT)
    assert workload.selector == {"app": "sessions"}
    assert workload.mode is MtlsMode.UNSET
    assert dict(workload.port_modes) == {8080: MtlsMode.PERMISSIVE, 9090: MtlsMode.DISABLE}


def test_authorization_policy_fields(tmp_path: Path) -> None:
    config = load_text(
        tmp_path / "ap.yaml",
        authorization_policy(
            """  selector: {matchLabels: {app: sessions}}
  action: DENY
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/conference/sa/app"], notNamespaces: [test]}
    - source: {ipBlocks: ["10.0.0.0/8"], notRemoteIpBlocks: ["10.1.0.0/16"]}
    to:
    - operation:
        methods: [GET]
        paths: ["/sessions/*"]
        notPaths: ["*/admin"]
        ports: ["8080"]
        hosts: ["sessions*"]
    when:
    - {key: "request.headers[x-user]", values: [alice], notValues: ["bob*"]}
    - {key: source.ip, values: ["127.0.0.1"]}
  - {}
"""
        ),
    )
    (policy,) = config.authorization_policies
    assert policy.action is AuthzAction.DENY
    assert policy.selector == MappingProxyType({"app": "sessions"})
    assert policy.rules == (
        AuthzRule(
            sources=(
                AuthzSource(
                    principals=Values(("cluster.local/ns/conference/sa/app",)),
                    namespaces=Values((), ("test",)),
                ),
                AuthzSource(
                    ip_blocks=Values(("10.0.0.0/8",)),
                    remote_ip_blocks=Values((), ("10.1.0.0/16",)),
                ),
            ),
            operations=(
                AuthzOperation(
                    hosts=Values(("sessions*",)),
                    ports=Values(("8080",)),
                    methods=Values(("GET",)),
                    paths=Values(("/sessions/*",), ("*/admin",)),
                ),
            ),
            conditions=(
                AuthzCondition("request.headers[x-user]", Values(("alice",), ("bob*",))),
                AuthzCondition("source.ip", Values(("127.0.0.1",))),
            ),
        ),
        AuthzRule(),
    )


def test_empty_spec_is_an_allow_without_rules(tmp_path: Path) -> None:
    """Istio: ``spec: {}`` is an ALLOW policy that matches nothing (deny all)."""
    config = load_text(tmp_path / "ap.yaml", authorization_policy("  {}\n"))
    (policy,) = config.authorization_policies
    assert (policy.action, policy.rules, policy.selector) == (AuthzAction.ALLOW, (), None)


def test_destination_rule_tls_at_every_level(tmp_path: Path) -> None:
    config = load_text(
        tmp_path / "dr.yaml",
        destination_rule(
            """
host: svc
trafficPolicy:
  tls: {mode: ISTIO_MUTUAL, sni: svc.example, subjectAltNames: ["spiffe://td/ns/a/sa/b"]}
  portLevelSettings:
  - port: {number: 9090}
    tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}
subsets:
- name: plain
  labels: {v: "1"}
  trafficPolicy: {tls: {mode: DISABLE}}
- name: simple
  labels: {v: "2"}
  trafficPolicy: {tls: {mode: SIMPLE, caCertificates: /ca.pem}}
"""
        ),
    )
    (rule,) = config.destination_rules
    assert effective_policy(rule, 8080).tls == ClientTLSSettings(
        TlsMode.ISTIO_MUTUAL, sni="svc.example", subject_alt_names=("spiffe://td/ns/a/sa/b",)
    )
    assert effective_policy(rule, 9090).tls == ClientTLSSettings(
        TlsMode.MUTUAL, "/c.pem", "/k.pem", "/ca.pem"
    )
    assert effective_policy(rule, 8080, "plain").tls == ClientTLSSettings(TlsMode.DISABLE)
    assert effective_policy(rule, 8080, "simple").tls == ClientTLSSettings(
        TlsMode.SIMPLE, ca_certificates="/ca.pem"
    )


AP = "spec.rules[0]"
REFUSED = [
    # --- PeerAuthentication
    (
        "pa-mode",
        peer_authentication("  mtls: {mode: STRICTER}\n"),
        "spec.mtls.mode",
        "unknown mTLS mode 'STRICTER'",
    ),
    (
        "pa-port-no-selector",
        peer_authentication("  portLevelMtls: {8080: {mode: STRICT}}\n"),
        "spec.portLevelMtls",
        "needs a selector",
    ),
    (
        "pa-port-number",
        peer_authentication(
            "  selector: {matchLabels: {a: b}}\n  portLevelMtls: {http: {mode: STRICT}}\n"
        ),
        "spec.portLevelMtls.http",
        "must be a port number",
    ),
    (
        "pa-port-mode",
        peer_authentication("  selector: {matchLabels: {a: b}}\n  portLevelMtls: {80: {}}\n"),
        "spec.portLevelMtls.80.mode",
        "is required",
    ),
    (
        "pa-unknown",
        peer_authentication("  mtl: {mode: STRICT}\n"),
        "spec.mtl",
        "did you mean 'mtls'?",
    ),
    (
        "pa-api-version",
        peer_authentication("  {}\n").replace(SEC, "networking.istio.io/v1"),
        "apiVersion",
        "must be one of security.istio.io/v1",
    ),
    (
        "pa-two-namespace-wide",
        documents(
            peer_authentication("  mtls: {mode: STRICT}\n", "a"),
            peer_authentication("  mtls: {mode: DISABLE}\n", "b"),
        ),
        "spec",
        "already has a PeerAuthentication without selector",
    ),
    # --- AuthorizationPolicy
    (
        "ap-custom",
        authorization_policy("  action: CUSTOM\n"),
        "spec.action",
        "action CUSTOM is not supported",
    ),
    (
        "ap-provider",
        authorization_policy("  provider: {name: ext}\n"),
        "spec.provider",
        "CUSTOM authorization (provider) is not supported",
    ),
    (
        "ap-action",
        authorization_policy("  action: PERMIT\n"),
        "spec.action",
        "unknown action 'PERMIT'",
    ),
    (
        "ap-target-ref",
        authorization_policy("  targetRef: {kind: Gateway, name: g}\n"),
        "spec.targetRef",
        "not supported yet",
    ),
    (
        "ap-request-principals",
        authorization_policy("  rules: [{from: [{source: {requestPrincipals: ['a*/b']}}]}]\n"),
        f"{AP}.from[0].source.requestPrincipals[0]",
        "'*' only as the whole issuer or subject",
    ),
    (
        "ap-jwt-condition",
        authorization_policy("  rules: [{when: [{key: 'request.auth.audiences', values: [x]}]}]\n"),
        f"{AP}.when[0].key",
        "is not supported yet (use request.auth.principal",
    ),
    (
        "ap-condition-key",
        authorization_policy("  rules: [{when: [{key: 'request.body', values: [x]}]}]\n"),
        f"{AP}.when[0].key",
        "unknown or unsupported condition key",
    ),
    (
        "ap-condition-values",
        authorization_policy("  rules: [{when: [{key: source.ip}]}]\n"),
        f"{AP}.when[0]",
        "must set values or notValues",
    ),
    (
        "ap-wildcard-middle",
        authorization_policy("  rules: [{to: [{operation: {paths: ['/a*b']}}]}]\n"),
        f"{AP}.to[0].operation.paths[0]",
        "'*' may only start or end",
    ),
    (
        "ap-principal-scheme",
        authorization_policy(
            "  rules: [{from: [{source: {notPrincipals: ['spiffe://example.org/ns/a/sa/b']}}]}]\n"
        ),
        f"{AP}.from[0].source.notPrincipals[0]",
        "without the spiffe:// scheme",
    ),
    (
        "ap-principal-scheme-condition",
        authorization_policy(
            "  rules: [{when: [{key: source.principal, values: ['spiffe://td/ns/a/sa/b']}]}]\n"
        ),
        f"{AP}.when[0].values[0]",
        "without the spiffe:// scheme",
    ),
    (
        "ap-path-template",
        authorization_policy("  rules: [{to: [{operation: {paths: ['/a/{*}']}}]}]\n"),
        f"{AP}.to[0].operation.paths[0]",
        "path template",
    ),
    (
        "ap-port",
        authorization_policy("  rules: [{to: [{operation: {ports: ['http']}}]}]\n"),
        f"{AP}.to[0].operation.ports[0]",
        "must be a port number",
    ),
    (
        "ap-port-int",
        authorization_policy("  rules: [{to: [{operation: {ports: [8080]}}]}]\n"),
        f"{AP}.to[0].operation.ports[0]",
        "must be a string",
    ),
    (
        "ap-ip-block",
        authorization_policy("  rules: [{from: [{source: {ipBlocks: ['10.0.0.300']}}]}]\n"),
        f"{AP}.from[0].source.ipBlocks[0]",
        "must be an IP address or CIDR",
    ),
    (
        "ap-empty-source",
        authorization_policy("  rules: [{from: [{source: {}}]}]\n"),
        f"{AP}.from[0].source",
        "must set at least one of",
    ),
    (
        "ap-source-missing",
        authorization_policy("  rules: [{from: [{}]}]\n"),
        f"{AP}.from[0].source",
        "is required",
    ),
    (
        "ap-empty-from",
        authorization_policy("  rules: [{from: []}]\n"),
        f"{AP}.from",
        "must not be empty",
    ),
    (
        "ap-unknown-operation-field",
        authorization_policy("  rules: [{to: [{operation: {method: [GET]}}]}]\n"),
        f"{AP}.to[0].operation.method",
        "did you mean 'methods'?",
    ),
    (
        "ap-selector",
        authorization_policy("  selector: {labels: {a: b}}\n"),
        "spec.selector.labels",
        "unknown field",
    ),
    # --- DestinationRule tls
    (
        "tls-mode",
        destination_rule("host: svc\ntrafficPolicy: {tls: {mode: MTLS}}"),
        "spec.trafficPolicy.tls.mode",
        "unknown TLS mode 'MTLS'",
    ),
    (
        "tls-mode-missing",
        destination_rule("host: svc\ntrafficPolicy: {tls: {sni: a}}"),
        "spec.trafficPolicy.tls.mode",
        "is required",
    ),
    (
        "tls-mutual-files",
        destination_rule("host: svc\ntrafficPolicy: {tls: {mode: MUTUAL, caCertificates: /ca}}"),
        "spec.trafficPolicy.tls.clientCertificate",
        "is required with mode MUTUAL",
    ),
    (
        "tls-simple-ca",
        destination_rule("host: svc\ntrafficPolicy: {tls: {mode: SIMPLE}}"),
        "spec.trafficPolicy.tls.caCertificates",
        "is required with mode SIMPLE",
    ),
    (
        "tls-istio-files",
        destination_rule("host: svc\ntrafficPolicy: {tls: {mode: ISTIO_MUTUAL, privateKey: /k}}"),
        "spec.trafficPolicy.tls.privateKey",
        "must not be set with mode ISTIO_MUTUAL",
    ),
    (
        "tls-credential-name",
        destination_rule(
            "host: svc\ntrafficPolicy: {tls: {mode: SIMPLE, credentialName: c, "
            "caCertificates: /ca}}"
        ),
        "spec.trafficPolicy.tls.credentialName",
        "not supported yet",
    ),
    (
        "tls-disable-sni",
        destination_rule("host: svc\ntrafficPolicy: {tls: {mode: DISABLE, sni: a}}"),
        "spec.trafficPolicy.tls.sni",
        "no meaning with mode DISABLE",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "message"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED]
)
def test_bad_security_config_is_refused(tmp_path: Path, text: str, path: str, message: str) -> None:
    document = 2 if "already has" in message else 1  # reported at the second policy
    assert_refused(tmp_path / "bad.yaml", text, document, path, message)


def test_one_bad_policy_refuses_the_whole_load(tmp_path: Path) -> None:
    file = tmp_path / "mixed.yaml"
    file.write_text(
        documents(
            peer_authentication("  mtls: {mode: STRICT}\n", "good"),
            authorization_policy("  action: CUSTOM\n"),
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert [issue.document for issue in caught.value.issues] == [2]


JWKS = '{"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'  # noqa: E501


def request_authentication(rule: str) -> str:
    return _resource("RequestAuthentication", f"  jwtRules:\n  - {rule}\n", "ra", "conference")


def test_request_authentication_fields(tmp_path: Path) -> None:
    text = request_authentication(
        f"issuer: https://issuer\n    audiences: [a, b]\n    jwks: '{JWKS}'\n"
        "    fromHeaders: [{name: X-Jwt, prefix: 'Bearer '}]\n    fromParams: [token]\n"
        "    forwardOriginalToken: true\n    outputPayloadToHeader: x-payload"
    )
    (ra,) = load_text(tmp_path / "ra.yaml", text).request_authentications
    (rule,) = ra.rules
    assert (rule.issuer, rule.audiences, rule.jwks) == ("https://issuer", ("a", "b"), JWKS)
    assert [(h.name, h.prefix) for h in rule.from_headers] == [("x-jwt", "Bearer ")]
    assert (rule.from_params, rule.forward_original_token) == (("token",), True)
    assert rule.output_payload_to_header == "x-payload"


_ENCRYPTION = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
#: Keycloak's encryption key, as its JWKS lists it beside the signing keys.
ENC_KEY = {
    **json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_ENCRYPTION)),
    **{"alg": "RSA-OAEP", "use": "enc", "kid": "enc"},
}


@pytest.mark.parametrize(
    "jwks",
    [
        JWKS,
        json.dumps({"keys": [ENC_KEY, *json.loads(JWKS)["keys"]]}),  # Keycloak's: enc + sig
        json.dumps({"keys": [*json.loads(JWKS)["keys"], {"kty": "XX"}]}),
        json.dumps({"keys": [ENC_KEY]}),
        '{"keys": [{"kty": "EC"}]}',
        "{}",
    ],
    ids=["sig", "keycloak", "unknown-kty", "only-enc", "bad-sig-key", "no-keys"],
)
def test_inline_jwks_is_accepted_exactly_when_meshlib_accepts_it(tmp_path: Path, jwks: str) -> None:
    """The apply-time check and meshlib's servers (which NACK a set they cannot use)
    answer alike: an IdP's encryption key is skipped by both."""
    try:
        parse_jwks(jwks, "jwks")
        meshlib_accepts = True
    except JwtConfigError:
        meshlib_accepts = False
    file = tmp_path / "ra.yaml"
    file.write_text(request_authentication(f"issuer: https://issuer\n    jwks: '{jwks}'"))
    try:
        load_config(file)
        applied = True
    except ConfigError:
        applied = False
    assert applied is meshlib_accepts


def test_request_authentication_takes_a_jwks_uri(tmp_path: Path) -> None:
    text = request_authentication("issuer: https://issuer\n    jwksUri: https://keys/jwks.json")
    (ra,) = load_text(tmp_path / "ra.yaml", text).request_authentications
    (rule,) = ra.rules
    assert (rule.jwks_uri, rule.jwks) == ("https://keys/jwks.json", "")  # fetched later


JWT_REFUSED = [
    ("jwks-and-uri", f"issuer: i\n    jwks: '{JWKS}'\n    jwksUri: https://k", "not both"),
    ("jwks-uri-ftp", "issuer: i\n    jwksUri: ftp://keys/k.json", "http:// or https:// URL"),
    ("jwks-uri-no-host", "issuer: i\n    jwksUri: 'https:///k.json'", "with a host"),
    ("jwks-missing", "issuer: i", "is required (the issuer's JSON Web Key Set)"),
    ("jwks-not-json", "issuer: i\n    jwks: '{'", "is not JSON"),
    ("jwks-no-keys", "issuer: i\n    jwks: '{\"k\": 1}'", "must be a JSON Web Key Set"),
    ("jwks-bad-key", 'issuer: i\n    jwks: \'{"keys": [{"kty": "EC"}]}\'', "not a usable EC key"),
    (
        "jwks-key-reason",  # each key's reason, not PyJWT's hint about a missing library
        'issuer: i\n    jwks: \'{"keys": [{"kty": "EC", "crv": "P-256", "x": "abc"}]}\'',
        "jwks.keys[0]: not a usable EC key: Not an Elliptic curve key",
    ),
    (
        "jwks-key-missing-member",  # PyJWT raised KeyError: an unhandled exception
        'issuer: i\n    jwks: \'{"keys": [{"kty": "oct"}, 5]}\'',
        "jwks.keys[0]: not a usable oct key: missing 'k'",
    ),
    (
        "jwks-only-enc-keys",  # meshlib's servers skip them and would have no key: refused
        'issuer: i\n    jwks: \'{"keys": [{"kty": "RSA", "use": "enc"}, {"kty": "XX"}]}\'',
        "JWKS has no signing key: skipped keys[0] (use 'enc', not 'sig'), keys[1] (kty 'XX'",
    ),
    ("issuer-missing", f"jwks: '{JWKS}'", "is required"),
    ("from-cookies", f"issuer: i\n    jwks: '{JWKS}'\n    fromCookies: [c]", "not supported yet"),
]


@pytest.mark.parametrize(
    ("rule", "message"), [c[1:] for c in JWT_REFUSED], ids=[c[0] for c in JWT_REFUSED]
)
def test_bad_request_authentication_is_refused(tmp_path: Path, rule: str, message: str) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(request_authentication(rule))
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    (issue,) = caught.value.issues
    assert issue.path.startswith("spec.jwtRules[0]") and message in issue.message, issue
