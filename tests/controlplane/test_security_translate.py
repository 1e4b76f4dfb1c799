"""Security config -> xDS: auto mTLS and DestinationRule ``tls`` in CDS, inbound
listeners (proxyless and Envoy sidecar) with the PeerAuthentication mode and the
AuthorizationPolicy RBAC filters, as tables over config loaded from YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2, json_format

from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import PolicySettings, translate
from controlplane.translate.security_tls import sds_files
from controlplane.translate.typeurls import CLUSTER_TYPE_URL, LISTENER_TYPE_URL
from controlplane.xds.delta_subscription import DeltaSubscription
from controlplane.xds.snapshot import TypeSnapshot
from controlplane.xds.subscription import Subscription
from tests.controlplane.config_cases import documents, load_text

PROXYLESS = NodeInfo(id="p")
SIDECAR = NodeInfo(
    id="s",
    metadata={
        "mesh.proxy": "sidecar",
        "mesh.outbound_port": 15001,
        "mesh.inbound_port": 15006,
        "mesh.app_port": 18091,
        "mesh.cert_dir": "/run/mesh",
        "NAMESPACE": "conference",
        "LABELS": {"app": "sessions"},
    },
)
SESSIONS_ID = "spiffe://cluster.local/ns/conference/sa/sessions"
INBOUND = "xds.istio.io/grpc/lds/inbound/127.0.0.1:18091"
MESH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sessions, namespace: conference}
spec:
  hosts: [sessions]
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  resolution: STATIC
  workloadSelector: {labels: {app: sessions}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sessions-v1, namespace: conference}
spec:
  address: 127.0.0.1
  ports: {grpc: 18091}
  labels: {app: sessions}
  serviceAccount: sessions
"""


def sec(kind: str, spec: str, name: str = "p", namespace: str = "conference") -> str:
    return (
        f"apiVersion: security.istio.io/v1\nkind: {kind}\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )


def strict(namespace: str = "conference") -> str:
    return sec("PeerAuthentication", "  mtls: {mode: STRICT}\n", "default", namespace)


def load(tmp_path: Path, *docs: str) -> MeshConfig:
    return load_text(tmp_path / "mesh.yaml", documents(MESH, *docs))


def cluster(resources: Any, name: str = "outbound|50051||sessions") -> cluster_pb2.Cluster:
    found = resources[CLUSTER_TYPE_URL][name]
    assert isinstance(found, cluster_pb2.Cluster)
    return found


def upstream_tls(found: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext | None:
    if not found.HasField("transport_socket"):
        return None
    context = tls_pb2.UpstreamTlsContext()
    assert found.transport_socket.name == "envoy.transport_sockets.tls"
    assert found.transport_socket.typed_config.Unpack(context)
    return context


def listener(resources: Any, name: str) -> listener_pb2.Listener:
    found = resources[LISTENER_TYPE_URL][name]
    assert isinstance(found, listener_pb2.Listener)
    return found


def manager(chain: Any) -> hcm_pb2.HttpConnectionManager:
    found = hcm_pb2.HttpConnectionManager()
    assert chain.filters[0].typed_config.Unpack(found)
    return found


def rbac_rules(found: hcm_pb2.HttpConnectionManager) -> list[tuple[str, dict[str, Any]]]:
    """(filter name, RBAC rules as JSON) for every RBAC filter, in chain order."""
    rules = []
    for http_filter in found.http_filters:
        config = rbac_filter_pb2.RBAC()
        if http_filter.typed_config.Unpack(config):
            assert config.HasField("rules")  # absent rules would allow everything
            as_json = json_format.MessageToDict(
                config.rules, always_print_fields_with_no_presence=True
            )
            rules.append((http_filter.name, as_json))
    return rules


# --- CDS ---------------------------------------------------------------------------


def test_strict_destination_gets_mtls_with_provider_instances_and_its_spiffe_id(
    tmp_path: Path,
) -> None:
    context = upstream_tls(cluster(translate(load(tmp_path, strict()), (), PROXYLESS)))
    assert context is not None
    common = context.common_tls_context
    assert common.tls_certificate_provider_instance.instance_name == "default"
    assert common.tls_certificate_certificate_provider_instance.instance_name == "default"
    combined = common.combined_validation_context
    assert combined.validation_context_certificate_provider_instance.instance_name == "default"
    validation = combined.default_validation_context
    assert validation.ca_certificate_provider_instance.instance_name == "default"
    assert [m.exact for m in validation.match_subject_alt_names] == [SESSIONS_ID]


def test_trust_domain_names_the_expected_identity(tmp_path: Path) -> None:
    settings = PolicySettings(trust_domain="example.org")
    resources = translate(load(tmp_path, strict()), (), PROXYLESS, settings)
    context = upstream_tls(cluster(resources))
    assert context is not None
    sans = context.common_tls_context.combined_validation_context.default_validation_context
    assert [m.exact for m in sans.match_subject_alt_names] == [
        "spiffe://example.org/ns/conference/sa/sessions"
    ]


WORKLOAD_PA = "  selector: {matchLabels: {app: sessions}}\n"
AUTO_MTLS = [
    ("no-policy-permissive", (), False),
    ("mesh-wide-strict", (strict("istio-system"),), True),
    ("namespace-strict", (strict(),), True),
    ("other-namespace-strict", (strict("elsewhere"),), False),
    (
        "workload-disable-beats-namespace",
        (strict(), sec("PeerAuthentication", WORKLOAD_PA + "  mtls: {mode: DISABLE}\n", "w")),
        False,
    ),
    (
        "workload-unset-inherits",
        (strict(), sec("PeerAuthentication", WORKLOAD_PA + "  mtls: {mode: UNSET}\n", "w")),
        True,
    ),
    (
        "port-level-permissive",
        (
            strict(),
            sec(
                "PeerAuthentication",
                WORKLOAD_PA + "  portLevelMtls: {18091: {mode: PERMISSIVE}}\n",
                "w",
            ),
        ),
        False,
    ),
    (
        "dr-disable-beats-strict",
        (
            strict(),
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
            "metadata: {name: d, namespace: conference}\n"
            "spec: {host: sessions, trafficPolicy: {tls: {mode: DISABLE}}}\n",
        ),
        False,
    ),
    (
        "dr-istio-mutual-without-policy",
        (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
            "metadata: {name: d, namespace: conference}\n"
            "spec: {host: sessions, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}\n",
        ),
        True,
    ),
]


@pytest.mark.parametrize(
    ("docs", "mtls"), [c[1:] for c in AUTO_MTLS], ids=[c[0] for c in AUTO_MTLS]
)
def test_auto_mtls_follows_peer_authentication_and_destination_rule(
    tmp_path: Path, docs: tuple[str, ...], mtls: bool
) -> None:
    context = upstream_tls(cluster(translate(load(tmp_path, *docs), (), PROXYLESS)))
    assert (context is not None) is mtls


def test_endpoints_without_identity_get_plaintext(tmp_path: Path) -> None:
    config = load(tmp_path, strict())
    stranger = RegisteredWorkload(
        id="x",
        service="sessions",
        address="127.0.0.2",
        ports={50051: 7000},
        namespace="conference",
    )
    assert upstream_tls(cluster(translate(config, [stranger], PROXYLESS))) is None


def test_destination_rule_files_and_sidecar_cert_dir(tmp_path: Path) -> None:
    mutual = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: d, namespace: conference}\n"
        "spec:\n  host: sessions\n  trafficPolicy:\n    tls: {mode: MUTUAL, clientCertificate: "
        "/c.pem, privateKey: /k.pem, caCertificates: /ca.pem, sni: s.example, "
        "subjectAltNames: [s.example]}\n"
    )
    context = upstream_tls(cluster(translate(load(tmp_path, mutual), (), PROXYLESS)))
    assert context is not None and context.sni == "s.example"
    common = context.common_tls_context
    assert common.tls_certificates[0].certificate_chain.filename == "/c.pem"
    assert common.tls_certificates[0].private_key.filename == "/k.pem"
    assert common.validation_context.trusted_ca.filename == "/ca.pem"
    assert common.validation_context.match_typed_subject_alt_names[0].matcher.exact == "s.example"
    # The Envoy sidecar reads the mesh certificate through file-based SDS over its cert
    # dir (default and ROOTCA, as Istio names them), URI SANs typed.
    sidecar = upstream_tls(cluster(translate(load(tmp_path, strict()), (), SIDECAR)))
    assert sidecar is not None
    sds = sidecar.common_tls_context
    (identity,) = sds.tls_certificate_sds_secret_configs
    assert identity.name == "default"
    assert identity.sds_config.path_config_source.path == "/run/mesh/default.sds.json"
    combined = sds.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "ROOTCA"
    root_source = combined.validation_context_sds_secret_config.sds_config.path_config_source
    assert root_source.path == "/run/mesh/rootca.sds.json"
    assert not sds.tls_certificates and not sds.HasField("validation_context")
    (san,) = combined.default_validation_context.match_typed_subject_alt_names
    assert (san.san_type, san.matcher.exact) == (san.URI, SESSIONS_ID)


def test_sds_files_name_the_cert_dirs_files_and_watch_the_folder() -> None:
    files = {name: json.loads(text) for name, text in sds_files("/run/mesh").items()}
    (default,) = files["default.sds.json"]["resources"]
    assert default["name"] == "default"
    assert default["tlsCertificate"] == {
        "certificateChain": {"filename": "/run/mesh/cert-chain.pem"},
        "privateKey": {"filename": "/run/mesh/key.pem"},
        "watchedDirectory": {"path": "/run/mesh"},
    }
    (root,) = files["rootca.sds.json"]["resources"]
    assert root["name"] == "ROOTCA"
    assert root["validationContext"] == {
        "trustedCa": {"filename": "/run/mesh/root-cert.pem"},
        "watchedDirectory": {"path": "/run/mesh"},
    }


# --- inbound listeners --------------------------------------------------------------


@pytest.mark.parametrize(("docs", "tls"), [((), False), ((strict(),), True)])
def test_proxyless_inbound_listener_per_served_address(
    tmp_path: Path, docs: tuple[str, ...], tls: bool
) -> None:
    found = listener(translate(load(tmp_path, *docs), (), PROXYLESS), INBOUND)
    assert found.address.socket_address.address == "127.0.0.1"
    assert found.address.socket_address.port_value == 18091
    (chain,) = found.filter_chains
    assert chain.HasField("transport_socket") is tls
    if tls:
        context = tls_pb2.DownstreamTlsContext()
        assert chain.transport_socket.typed_config.Unpack(context)
        assert context.require_client_certificate.value is True
        common = context.common_tls_context
        assert common.tls_certificate_provider_instance.instance_name == "default"
        assert common.tls_certificate_certificate_provider_instance.instance_name == "default"
    route = manager(chain).route_config.virtual_hosts[0].routes[0]
    assert route.HasField("non_forwarding_action")  # gRFC A36
    assert [f.name for f in manager(chain).http_filters] == ["envoy.filters.http.router"]


def allow(spec: str, name: str = "p", namespace: str = "conference") -> str:
    return sec("AuthorizationPolicy", spec, name, namespace)


RBAC = [
    ("no-policy", (), []),
    ("empty-spec-denies-all", (allow("  {}\n"),), [("allow", {"action": "ALLOW", "policies": {}})]),
    (
        "empty-rule-allows-all",
        (allow("  rules: [{}]\n"),),
        [
            (
                "allow",
                {
                    "action": "ALLOW",
                    "policies": {
                        "ns[conference]-policy[p]-rule[0]": {
                            "permissions": [{"any": True}],
                            "principals": [{"any": True}],
                        }
                    },
                },
            )
        ],
    ),
    (
        "deny-before-allow",
        (allow("  rules: [{}]\n", "a"), allow("  action: DENY\n", "d")),
        ["deny", "allow"],
    ),
    ("other-namespace-ignored", (allow("  {}\n", namespace="elsewhere"),), []),
    ("root-namespace-applies", (allow("  {}\n", namespace="istio-system"),), ["allow"]),
    ("selector-mismatch", (allow("  selector: {matchLabels: {app: other}}\n"),), []),
    # A LOG filter: meshlib logs it, grpcio ignores LOG filters (gRFC A41).
    ("audit-logged", (allow("  action: AUDIT\n  rules: [{}]\n"),), ["audit"]),
]


@pytest.mark.parametrize(("docs", "expected"), [c[1:] for c in RBAC], ids=[c[0] for c in RBAC])
def test_rbac_filters_follow_istio_evaluation_order(
    tmp_path: Path, docs: tuple[str, ...], expected: list[Any]
) -> None:
    found = listener(translate(load(tmp_path, *docs), (), PROXYLESS), INBOUND)
    rules = rbac_rules(manager(found.filter_chains[0]))
    if expected and isinstance(expected[0], tuple):
        assert [(n.rsplit(".", 1)[1], r) for n, r in rules] == expected
    else:
        assert [n.rsplit(".", 1)[1] for n, _ in rules] == expected
    assert manager(found.filter_chains[0]).http_filters[-1].name == "envoy.filters.http.router"


def test_rule_fields_translate_to_rbac_matchers(tmp_path: Path) -> None:
    policy = allow(
        """  rules:
  - from:
    - source: {principals: ["cluster.local/ns/conference/sa/app", "*/sa/admin"]}
    - source: {namespaces: [conference], notIpBlocks: ["10.0.0.0/8"]}
    to:
    - operation: {methods: [GET], paths: ["/sessions/*", "*.json", "*"], ports: ["18091"]}
    when:
    - {key: "request.headers[X-User]", values: [alice], notValues: ["*"]}
"""
    )
    found = listener(translate(load(tmp_path, policy), (), PROXYLESS), INBOUND)
    ((_, rules),) = rbac_rules(manager(found.filter_chains[0]))
    rule = rbac_pb2.Policy()
    json_format.ParseDict(rules["policies"]["ns[conference]-policy[p]-rule[0]"], rule)
    (permission,) = rule.permissions
    op, header = permission.and_rules.rules
    port, method, paths = op.and_rules.rules
    assert method.header.name == ":method" and method.header.string_match.exact == "GET"
    assert [p.url_path.path.WhichOneof("match_pattern") for p in paths.or_rules.rules] == [
        "prefix",
        "suffix",
        "safe_regex",
    ]
    assert port.destination_port == 18091
    wanted, unwanted = header.and_rules.rules
    assert (wanted.header.name, wanted.header.string_match.exact) == ("x-user", "alice")
    assert unwanted.not_rule.header.present_match is True
    (principal,) = rule.principals
    by_principal, by_namespace = principal.or_ids.ids
    exact, suffix = by_principal.or_ids.ids
    assert exact.authenticated.principal_name.exact == "spiffe://cluster.local/ns/conference/sa/app"
    assert suffix.authenticated.principal_name.suffix == "/sa/admin"
    namespace, not_ip = by_namespace.and_ids.ids
    regex = namespace.authenticated.principal_name.safe_regex.regex
    assert regex == "spiffe://[^/]+/ns/conference/sa/[^/]+"
    assert not_ip.not_id.direct_remote_ip.address_prefix == "10.0.0.0"


MODES = [
    ("DISABLE", [("inbound-plaintext", "", False)]),
    ("STRICT", [("inbound-mtls", "", True)]),
    ("PERMISSIVE", [("inbound-mtls", "tls", True), ("inbound-plaintext", "raw_buffer", False)]),
]


@pytest.mark.parametrize(("mode", "chains"), MODES, ids=[m[0] for m in MODES])
def test_sidecar_inbound_listener_forwards_to_the_app(
    tmp_path: Path, mode: str, chains: list[tuple[str, str, bool]]
) -> None:
    policy = sec("PeerAuthentication", f"  mtls: {{mode: {mode}}}\n", "default")
    resources = translate(
        load(tmp_path, policy, allow("  action: DENY\n  rules: [{}]\n")), (), SIDECAR
    )
    found = listener(resources, "mesh_inbound")
    assert found.address.socket_address.port_value == 15006
    assert [
        (c.name, c.filter_chain_match.transport_protocol, c.HasField("transport_socket"))
        for c in found.filter_chains
    ] == chains
    assert bool(found.listener_filters) is (mode == "PERMISSIVE")
    hcm = manager(found.filter_chains[0])
    assert [n for n, _ in rbac_rules(hcm)] == ["envoy.filters.http.rbac.deny"]
    target = hcm.route_config.virtual_hosts[0].routes[0].route.cluster
    app = cluster(resources, target)
    endpoint = app.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (endpoint.address, endpoint.port_value) == ("127.0.0.1", 18091)
    # The sidecar never gets the proxyless inbound listeners.
    assert INBOUND not in resources[LISTENER_TYPE_URL]


def test_wildcard_lds_leaves_inbound_listeners_to_those_who_name_them() -> None:
    available = ["sessions:50051", INBOUND]
    wildcard = Subscription(type_url="lds", wildcard_capable=True)
    wildcard.update_names(["*"])
    assert wildcard.wanted(available) == ("sessions:50051",)
    wildcard.update_names(["*", INBOUND])
    assert wildcard.wanted(available) == ("sessions:50051", INBOUND)
    named = Subscription(type_url="lds", wildcard_capable=True)
    named.update_names([INBOUND])
    assert named.wanted(available) == (INBOUND,)


def test_a_registered_identity_is_the_expected_san(tmp_path: Path) -> None:
    registered = RegisteredWorkload(
        id="r",
        service="sessions",
        address="127.0.0.3",
        ports={50051: 7000},
        namespace="conference",
        identity="spiffe://cluster.local/ns/conference/sa/registered",
    )
    context = upstream_tls(cluster(translate(load(tmp_path, strict()), [registered], PROXYLESS)))
    assert context is not None
    validation = context.common_tls_context.combined_validation_context.default_validation_context
    assert [m.exact for m in validation.match_subject_alt_names] == [
        "spiffe://cluster.local/ns/conference/sa/registered",
        SESSIONS_ID,
    ]


def test_permissive_sidecar_without_cert_dir_serves_plaintext_only(tmp_path: Path) -> None:
    metadata = {k: v for k, v in SIDECAR.metadata.items() if k != "mesh.cert_dir"}
    node = NodeInfo(id="bare", metadata=metadata)
    found = listener(translate(load(tmp_path), (), node), "mesh_inbound")
    assert [c.name for c in found.filter_chains] == ["inbound-plaintext"]
    assert not found.listener_filters


JWKS = '{"keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}'  # noqa: E501
REQUEST_AUTHN = sec(
    "RequestAuthentication",
    f"  jwtRules:\n  - issuer: https://issuer\n    jwks: '{JWKS}'\n"
    "    fromHeaders: [{name: x-jwt, prefix: 'Token '}]\n    forwardOriginalToken: true\n",
    "jwt",
)


def test_request_authentication_is_a_jwt_filter_optional_for_proxyless(tmp_path: Path) -> None:
    policy = allow("  rules: [{from: [{source: {requestPrincipals: ['*']}}]}]\n")
    config = load(tmp_path, REQUEST_AUTHN, policy)
    sidecar = manager(listener(translate(config, (), SIDECAR), "mesh_inbound").filter_chains[0])
    assert [f.name for f in sidecar.http_filters] == [
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.rbac.allow",
        "envoy.filters.http.router",
    ]
    jwt_config = jwt_pb2.JwtAuthentication()
    assert sidecar.http_filters[0].typed_config.Unpack(jwt_config)
    provider = jwt_config.providers["conference/jwt/0"]
    assert provider.issuer == "https://issuer" and provider.forward is True
    assert provider.payload_in_metadata == "payload"
    assert (provider.from_headers[0].name, provider.from_headers[0].value_prefix) == (
        "x-jwt",
        "Token ",
    )
    either = jwt_config.rules[0].requires.requires_any.requirements
    assert [r.WhichOneof("requires_type") for r in either] == ["provider_name", "allow_missing"]
    # Proxyless listeners carry it too, optional: meshlib enforces it, grpcio (no JWT
    # filter) skips it and its RBAC metadata matchers never match (gRFC A41).
    proxyless = manager(listener(translate(config, (), PROXYLESS), INBOUND).filter_chains[0])
    assert [(f.name, f.is_optional) for f in proxyless.http_filters] == [
        ("envoy.filters.http.jwt_authn", True),
        ("envoy.filters.http.rbac.allow", False),
        ("envoy.filters.http.router", False),
    ]
    ((_, rules),) = rbac_rules(proxyless)
    (policy_json,) = rules["policies"].values()
    assert "metadata" in json.dumps(policy_json["principals"])


def test_delta_wildcard_leaves_inbound_listeners_to_those_who_name_them() -> None:
    names = ("sessions:50051", INBOUND)
    current = TypeSnapshot(
        version="1",
        resources=dict.fromkeys(names, any_pb2.Any()),
        resource_versions=dict.fromkeys(names, "v"),
    )
    wildcard = DeltaSubscription(type_url="lds", wildcard_capable=True)
    wildcard.apply(["*"], [], {})
    assert wildcard.change(current).send == ("sessions:50051",)
    wildcard.apply([INBOUND], [], {})
    assert wildcard.change(current).send == names
