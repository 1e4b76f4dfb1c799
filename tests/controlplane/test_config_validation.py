"""Bad configs are refused with file#document, field path and a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import ConfigError, ConfigIssue, load_config
from tests.controlplane.config_cases import (
    STATIC_SPEC,
    documents,
    service_entry,
    workload_entry,
)


def se_ports(ports: str) -> str:
    return service_entry(
        f"hosts: [svc]\nports: {ports}\nresolution: STATIC\nendpoints: [{{address: 127.0.0.1}}]"
    )


def se_endpoint(endpoint: str, resolution: str = "STATIC") -> str:
    return service_entry(
        f"hosts: [svc]\nports: [{{number: 80, name: http, protocol: HTTP}}]\n"
        f"resolution: {resolution}\nendpoints: [{endpoint}]"
    )


def se_hosts(hosts: str) -> str:
    return service_entry(
        f"hosts: {hosts}\nports: [{{number: 80, name: http, protocol: HTTP}}]\n"
        "resolution: STATIC\nendpoints: [{address: 127.0.0.1}]"
    )


def se_extra(extra: str) -> str:
    return service_entry(STATIC_SPEC + extra)


GOOD_WE = "address: 127.0.0.1\nports: {http: 8080}\nlabels: {app: web}"
HEADER = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
SE_BODY = (
    "spec: {hosts: [a], ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC}"
)

# (id, YAML, document, field path, message fragment)
# fmt: off
BAD_CONFIGS: list[tuple[str, str, int, str, str]] = [
    # --- ports
    ("port-too-big", se_ports("[{number: 70000, name: http, protocol: HTTP}]"), 1,
     "spec.ports[0].number", "must be between 1 and 65535, got 70000"),
    ("port-zero", se_ports("[{number: 0, name: http, protocol: HTTP}]"), 1,
     "spec.ports[0].number", "must be between 1 and 65535"),
    ("port-string", se_ports('[{number: "8080", name: http, protocol: HTTP}]'), 1,
     "spec.ports[0].number", 'must be an integer, got string "8080"'),
    ("port-bool", se_ports("[{number: true, name: http, protocol: HTTP}]"), 1,
     "spec.ports[0].number", "must be an integer, got boolean true"),
    ("port-float", se_ports("[{number: 80.5, name: http, protocol: HTTP}]"), 1,
     "spec.ports[0].number", "must be an integer, got number 80.5"),
    ("port-number-missing", se_ports("[{name: http, protocol: HTTP}]"), 1,
     "spec.ports[0].number", "is required"),
    ("port-name-missing", se_ports("[{number: 80, protocol: HTTP}]"), 1,
     "spec.ports[0].name", "is required"),
    ("port-name-invalid", se_ports("[{number: 80, name: Http_1, protocol: HTTP}]"), 1,
     "spec.ports[0].name", "must be a DNS-1123 label"),
    ("port-name-number", se_ports("[{number: 80, name: 80, protocol: HTTP}]"), 1,
     "spec.ports[0].name", "must be a string, got integer 80 (quote it)"),
    ("port-name-duplicate",
     se_ports("[{number: 80, name: http, protocol: HTTP},"
              " {number: 81, name: http, protocol: HTTP}]"),
     1, "spec.ports[1].name", "duplicate port name 'http'"),
    ("port-number-duplicate",
     se_ports("[{number: 80, name: a, protocol: HTTP}, {number: 80, name: b, protocol: GRPC}]"),
     1, "spec.ports[1].number", "duplicate port number 80"),
    ("protocol-missing", se_ports("[{number: 80, name: http}]"), 1,
     "spec.ports[0].protocol", "is required"),
    ("protocol-tcp", se_ports("[{number: 80, name: tcp, protocol: TCP}]"), 1,
     "spec.ports[0].protocol", "protocol TCP is not supported yet"),
    ("protocol-https", se_ports("[{number: 443, name: https, protocol: HTTPS}]"), 1,
     "spec.ports[0].protocol", "protocol HTTPS is not supported yet"),
    ("protocol-grpc-web", se_ports("[{number: 80, name: web, protocol: GRPC-WEB}]"), 1,
     "spec.ports[0].protocol", "protocol GRPC-WEB is not supported yet"),
    ("protocol-unknown", se_ports("[{number: 80, name: http, protocol: QUIC}]"), 1,
     "spec.ports[0].protocol", "unknown protocol 'QUIC'"),
    ("target-port-range", se_ports("[{number: 80, name: http, protocol: HTTP, targetPort: 0}]"),
     1, "spec.ports[0].targetPort", "must be between 1 and 65535, got 0"),
    ("port-unknown-field",
     se_ports("[{number: 80, name: http, protocol: HTTP, target_port: 8080}]"), 1,
     "spec.ports[0].target_port", "unknown field; did you mean 'targetPort'?"),
    ("port-not-mapping", se_ports("[80]"), 1, "spec.ports[0]", "must be a mapping, got integer 80"),
    ("ports-empty", se_ports("[]"), 1, "spec.ports", "must not be empty"),
    ("ports-missing", service_entry("hosts: [svc]\nresolution: DNS"), 1,
     "spec.ports", "is required"),
    ("ports-not-list", se_ports("{number: 80}"), 1, "spec.ports", "must be a list, got a mapping"),
    # --- hosts
    ("hosts-missing", service_entry("ports: [{number: 80, name: http, protocol: HTTP}]"), 1,
     "spec.hosts", "is required"),
    ("hosts-empty", se_hosts("[]"), 1, "spec.hosts", "must not be empty"),
    ("host-wildcard", se_hosts("['*.example.com']"), 1,
     "spec.hosts[0]", "wildcard host '*.example.com' is not supported yet"),
    ("host-upper", se_hosts("[svc, Attendees]"), 1,
     "spec.hosts[1]", "host 'Attendees' must be lower case"),
    ("host-with-port", se_hosts("['svc:8080']"), 1,
     "spec.hosts[0]", "must be a DNS name without port or path"),
    ("host-number", se_hosts("[42]"), 1, "spec.hosts[0]", "must be a string, got integer 42"),
    ("host-bad-chars", se_hosts("[svc_1]"), 1, "spec.hosts[0]", "must be a DNS-1123 name"),
    ("host-duplicate", se_hosts("[svc, svc]"), 1, "spec.hosts[1]", "duplicate host 'svc'"),
    # --- resolution, location, unsupported and unknown fields
    ("resolution-none", se_extra("").replace("STATIC", "NONE"), 1,
     "spec.resolution", "resolution NONE is not supported yet"),
    ("resolution-dns-rr", se_extra("").replace("STATIC", "DNS_ROUND_ROBIN"), 1,
     "spec.resolution", "resolution DNS_ROUND_ROBIN is not supported yet"),
    ("resolution-unknown", se_extra("").replace("STATIC", "static"), 1,
     "spec.resolution", "unknown resolution 'static' (use STATIC, DNS)"),
    ("resolution-required",
     service_entry("hosts: [svc]\nports: [{number: 80, name: http, protocol: HTTP}]"), 1,
     "spec.resolution", "is required without endpoints or workloadSelector"),
    ("location-unknown", se_extra("location: INTERNAL"), 1,
     "spec.location", "unknown location 'INTERNAL'"),
    ("addresses", se_extra("addresses: [10.0.0.1]"), 1,
     "spec.addresses", "field is not supported yet"),
    ("export-to", se_extra("exportTo: ['.']"), 1, "spec.exportTo", "field is not supported yet"),
    ("subject-alt-names", se_extra("subjectAltNames: [spiffe://a]"), 1,
     "spec.subjectAltNames", "field is not supported yet"),
    ("unknown-field-typo", se_extra("endpoint: []"), 1,
     "spec.endpoint", "unknown field; did you mean 'endpoints'?"),
    ("unknown-field", se_extra("colour: blue"), 1, "spec.colour", "unknown field"),
    # --- endpoints and workloadSelector
    ("endpoints-and-selector", se_extra("workloadSelector: {labels: {app: svc}}"), 1,
     "spec.workloadSelector", "only one of endpoints and workloadSelector may be set"),
    ("static-hostname", se_endpoint("{address: db.example.com}"), 1,
     "spec.endpoints[0].address", "must be an IP address (v4 or v6) with resolution STATIC"),
    ("static-bad-ip", se_endpoint("{address: 300.1.1.1}"), 1,
     "spec.endpoints[0].address", "must be an IP address"),
    ("unix-socket", se_endpoint("{address: 'unix:///tmp/s.sock'}"), 1,
     "spec.endpoints[0].address", "unix domain socket address"),
    ("endpoint-address-missing", se_endpoint("{ports: {http: 8080}}"), 1,
     "spec.endpoints[0].address", "is required"),
    ("endpoint-address-number", se_endpoint("{address: 10}"), 1,
     "spec.endpoints[0].address", "must be a string, got integer 10"),
    ("endpoint-port-unknown-name", se_endpoint("{address: 127.0.0.1, ports: {grpc: 9000}}"), 1,
     "spec.endpoints[0].ports.grpc", "'grpc' is not a port name of this ServiceEntry (http)"),
    ("endpoint-port-range", se_endpoint("{address: 127.0.0.1, ports: {http: 65536}}"), 1,
     "spec.endpoints[0].ports.http", "must be between 1 and 65535, got 65536"),
    ("endpoint-port-string", se_endpoint("{address: 127.0.0.1, ports: {http: '80'}}"), 1,
     "spec.endpoints[0].ports.http", 'must be an integer, got string "80"'),
    ("endpoint-network", se_endpoint("{address: 127.0.0.1, network: west}"), 1,
     "spec.endpoints[0].network", "field is not supported yet"),
    ("endpoint-unknown-field", se_endpoint("{address: 127.0.0.1, zone: a}"), 1,
     "spec.endpoints[0].zone", "unknown field"),
    ("endpoint-label-value-number", se_endpoint("{address: 127.0.0.1, labels: {version: 2}}"), 1,
     "spec.endpoints[0].labels.version", "must be a string, got integer 2 (quote it)"),
    ("endpoint-label-key", se_endpoint("{address: 127.0.0.1, labels: {'-bad': x}}"), 1,
     "spec.endpoints[0].labels.-bad", "label key '-bad' is invalid"),
    ("endpoint-label-value", se_endpoint("{address: 127.0.0.1, labels: {v: 'a b'}}"), 1,
     "spec.endpoints[0].labels.v", "label value 'a b' is invalid"),
    ("endpoint-locality-empty-part", se_endpoint("{address: 127.0.0.1, locality: us//a}"), 1,
     "spec.endpoints[0].locality", "must be 'region', 'region/zone' or 'region/zone/subzone'"),
    ("endpoint-locality-too-deep", se_endpoint("{address: 127.0.0.1, locality: a/b/c/d}"), 1,
     "spec.endpoints[0].locality", "must be 'region', 'region/zone' or 'region/zone/subzone'"),
    ("endpoint-weight-negative", se_endpoint("{address: 127.0.0.1, weight: -1}"), 1,
     "spec.endpoints[0].weight", "must be between 0 and 4294967295, got -1"),
    ("endpoint-weight-string", se_endpoint("{address: 127.0.0.1, weight: heavy}"), 1,
     "spec.endpoints[0].weight", 'must be an integer, got string "heavy"'),
    ("endpoint-not-mapping", se_endpoint("127.0.0.1"), 1,
     "spec.endpoints[0]", 'must be a mapping, got string "127.0.0.1"'),
    ("dns-two-endpoints",
     se_endpoint("{address: a.example.com}, {address: b.example.com}", resolution="DNS"), 1,
     "spec.endpoints", "resolution DNS with 2 endpoints is not supported yet"),
    ("dns-two-hosts",
     service_entry("hosts: [a.example.com, b.example.com]\n"
                   "ports: [{number: 80, name: http, protocol: HTTP}]\nresolution: DNS"), 1,
     "spec.hosts", "2 hosts are not supported yet"),
    ("dns-bad-hostname", se_endpoint("{address: 'not a host'}", resolution="DNS"), 1,
     "spec.endpoints[0].address", "must be an IP address or a DNS name"),
    ("dns-selector",
     service_entry("hosts: [svc]\nports: [{number: 80, name: http, protocol: HTTP}]\n"
                   "resolution: DNS\nworkloadSelector: {labels: {app: svc}}"), 1,
     "spec.workloadSelector", "workloadSelector with resolution DNS is not supported yet"),
    ("selector-empty-labels",
     service_entry("hosts: [svc]\nports: [{number: 80, name: http, protocol: HTTP}]\n"
                   "workloadSelector: {labels: {}}"), 1,
     "spec.workloadSelector.labels", "must not be empty"),
    ("selector-no-labels",
     service_entry("hosts: [svc]\nports: [{number: 80, name: http, protocol: HTTP}]\n"
                   "workloadSelector: {}"), 1,
     "spec.workloadSelector.labels", "is required"),
    ("selector-unknown-field",
     service_entry("hosts: [svc]\nports: [{number: 80, name: http, protocol: HTTP}]\n"
                   "workloadSelector: {matchLabels: {app: a}}"), 1,
     "spec.workloadSelector.matchLabels", "unknown field"),
    # --- WorkloadEntry
    ("we-address-missing", workload_entry("ports: {http: 8080}"), 1,
     "spec.address", "is required"),
    ("we-port-string", workload_entry("address: 10.0.0.1\nports: {http: 'x'}"), 1,
     "spec.ports.http", 'must be an integer, got string "x"'),
    ("we-port-name", workload_entry("address: 10.0.0.1\nports: {HTTP: 80}"), 1,
     "spec.ports.HTTP", "port name 'HTTP' must be a DNS-1123 label"),
    ("we-ports-list", workload_entry("address: 10.0.0.1\nports: [80]"), 1,
     "spec.ports", "must be a mapping, got a list"),
    ("we-label-key-prefix", workload_entry("address: 10.0.0.1\nlabels: {'Bad_Prefix/x': y}"), 1,
     'spec.labels["Bad_Prefix/x"]', "label key prefix"),
    ("we-network", workload_entry("address: 10.0.0.1\nnetwork: vpc-1"), 1,
     "spec.network", "field is not supported yet"),
    ("we-unknown", workload_entry("address: 10.0.0.1\nhealth: ok"), 1,
     "spec.health", "unknown field"),
    ("we-weight-bool", workload_entry("address: 10.0.0.1\nweight: true"), 1,
     "spec.weight", "must be an integer, got boolean true"),
    ("we-service-account-number", workload_entry("address: 10.0.0.1\nserviceAccount: 7"), 1,
     "spec.serviceAccount", "must be a string, got integer 7"),
    ("we-locality-spaces", workload_entry("address: 10.0.0.1\nlocality: 'us-east/ zone'"), 1,
     "spec.locality", "must not contain spaces"),
    # --- envelope
    ("api-version-wrong",
     service_entry(STATIC_SPEC).replace("networking.istio.io/v1", "networking.istio.io/v2"), 1,
     "apiVersion", '"networking.istio.io/v2" must be one of networking.istio.io/v1'),
    ("api-version-missing", service_entry(STATIC_SPEC).split("\n", 1)[1], 1,
     "apiVersion", "is required"),
    ("kind-missing", "apiVersion: networking.istio.io/v1\nmetadata: {name: a}\nspec: {}\n", 1,
     "kind", "is required"),
    ("kind-gateway",
     "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a}\nspec: {}\n",
     1, "kind", "kind Gateway is not supported yet"),
    ("kind-sidecar",
     "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a}\n", 1,
     "kind", "kind Sidecar is not supported yet"),
    ("kind-telemetry",
     "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: a}\n", 1,
     "kind", "kind Telemetry is not supported yet"),
    ("kind-unknown", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", 1,
     "kind", "unknown kind 'ConfigMap'"),
    ("metadata-missing", HEADER + SE_BODY, 1, "metadata", "is required"),
    ("name-missing", HEADER + "metadata: {namespace: x}\n" + SE_BODY, 1,
     "metadata.name", "is required"),
    ("name-invalid", HEADER + "metadata: {name: My_Service}\n" + SE_BODY, 1,
     "metadata.name", "must be a DNS-1123 name"),
    ("namespace-invalid", HEADER + "metadata: {name: a, namespace: a.b}\n" + SE_BODY, 1,
     "metadata.namespace", "must be a DNS-1123 label"),
    ("spec-missing", HEADER + "metadata: {name: a}\n", 1, "spec", "is required"),
    ("spec-not-mapping", HEADER + "metadata: {name: a}\nspec: [1]\n", 1,
     "spec", "must be a mapping, got a list"),
    ("top-level-unknown", service_entry(STATIC_SPEC) + "specs: {}\n", 1,
     "specs", "unknown field; did you mean 'spec'?"),
    # --- documents are numbered as written, empty ones included
    ("second-document",
     documents(service_entry(STATIC_SPEC, name="a"), "",
               service_entry(STATIC_SPEC.replace("8080", "0"), name="b")), 3,
     "spec.ports[0].number", "must be between 1 and 65535"),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "document", "path", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_CONFIGS],
)
def test_bad_config_is_refused_with_place_and_reason(
    tmp_path: Path, text: str, document: int, path: str, message: str
) -> None:
    file = tmp_path / "mesh.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    prefix = f"{file}#{document}: {path}: "
    lines = str(caught.value).splitlines()
    assert any(line.startswith(prefix) and message in line for line in lines), (
        f"expected a line starting {prefix!r} containing {message!r}, got:\n{caught.value}"
    )


def test_table_is_big_enough() -> None:
    assert len(BAD_CONFIGS) >= 30
    assert len({case[0] for case in BAD_CONFIGS}) == len(BAD_CONFIGS)


def load_error(tmp_path: Path, text: str) -> tuple[Path, ConfigError]:
    file = tmp_path / "mesh.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    return file, caught.value


def test_every_issue_of_a_load_is_reported_in_order(tmp_path: Path) -> None:
    text = documents(
        service_entry(
            "hosts: [Svc]\nports: [{number: 0, name: http, protocol: TCP}]\nresolution: NONE"
        ),
        workload_entry("ports: {http: x}"),
    )
    file, error = load_error(tmp_path, text)
    assert str(error).splitlines() == [
        f"{file}#1: spec.hosts[0]: host 'Svc' must be lower case",
        f"{file}#1: spec.ports[0].number: must be between 1 and 65535, got 0",
        f"{file}#1: spec.ports[0].protocol: protocol TCP is not supported yet"
        " (use HTTP, HTTP2, GRPC)",
        f"{file}#1: spec.resolution: resolution NONE is not supported yet (use STATIC, DNS)",
        f"{file}#2: spec.address: is required",
        f'{file}#2: spec.ports.http: must be an integer, got string "x"',
    ]
    assert error.issues[0] == ConfigIssue(
        str(file), 1, "spec.hosts[0]", "host 'Svc' must be lower case"
    )
    # Deterministic: the same input gives the same report.
    assert str(load_error(tmp_path, text)[1]) == str(error)


def test_one_bad_document_refuses_the_whole_config(tmp_path: Path) -> None:
    good = service_entry(STATIC_SPEC, name="good")
    bad = service_entry(STATIC_SPEC.replace("HTTP", "TCP"), name="bad")
    _, error = load_error(tmp_path, documents(good, bad))
    assert len(error.issues) == 1
    assert error.issues[0].document == 2


def test_yaml_syntax_error_names_file_document_and_line(tmp_path: Path) -> None:
    text = documents(service_entry(STATIC_SPEC), "kind: ServiceEntry\nspec: {hosts: [a}\n")
    file, error = load_error(tmp_path, text)
    [issue] = error.issues
    assert issue.file == str(file)
    assert issue.document == 2
    assert str(issue).startswith(f"{file}#2: invalid YAML at line 11, column 17: ")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    text = service_entry(STATIC_SPEC + "resolution: DNS")
    file, error = load_error(tmp_path, text)
    assert "duplicate key 'resolution'" in str(error)
    assert str(error).startswith(f"{file}#1: invalid YAML at line 9")


def test_unsafe_yaml_tags_are_refused(tmp_path: Path) -> None:
    _, error = load_error(tmp_path, "!!python/object/apply:os.system ['true']\n")
    assert "invalid YAML" in str(error)


def test_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    file, error = load_error(tmp_path, "- a\n- b\n")
    assert str(error) == f"{file}#1: must be a mapping, got a list"


def test_same_host_and_port_in_two_service_entries_names_both(tmp_path: Path) -> None:
    first = service_entry(STATIC_SPEC, name="one")
    second = service_entry(
        "hosts: [other, svc]\nports: [{number: 9090, name: grpc, protocol: GRPC},"
        " {number: 8080, name: http, protocol: HTTP}]\n"
        "endpoints: [{address: 127.0.0.2}]",
        name="two",
    )
    file, error = load_error(tmp_path, documents(first, second))
    assert str(error) == (
        f"{file}#2: spec.hosts[1]: svc:8080 (spec.ports[1]) is already declared by "
        f"ServiceEntry conference/one at {file}#1"
    )


def test_same_host_on_other_ports_is_fine(tmp_path: Path) -> None:
    first = service_entry(STATIC_SPEC, name="one")
    second = service_entry(STATIC_SPEC.replace("8080", "9090"), name="two")
    (tmp_path / "mesh.yaml").write_text(documents(first, second))
    config = load_config(tmp_path / "mesh.yaml")
    assert [se.name for se in config.service_entries] == ["one", "two"]


def test_duplicate_name_in_one_file_names_both_documents(tmp_path: Path) -> None:
    text = documents(service_entry(STATIC_SPEC), service_entry(STATIC_SPEC.replace("8080", "81")))
    file, error = load_error(tmp_path, text)
    assert str(error) == (
        f"{file}#2: metadata.name: duplicate ServiceEntry conference/svc: "
        f"already defined at {file}#1"
    )


def test_same_name_in_other_namespace_or_kind_is_fine(tmp_path: Path) -> None:
    text = documents(
        service_entry(STATIC_SPEC, name="svc", namespace="a"),
        service_entry(STATIC_SPEC.replace("8080", "81"), name="svc", namespace="b"),
        workload_entry(GOOD_WE, name="svc", namespace="a"),
    )
    (tmp_path / "mesh.yaml").write_text(text)
    config = load_config(tmp_path / "mesh.yaml")
    assert len(config.service_entries) == 2
    assert len(config.workload_entries) == 1


def test_static_selector_must_not_select_hostname_workloads(tmp_path: Path) -> None:
    text = documents(
        service_entry(
            "hosts: [web]\nports: [{number: 80, name: http, protocol: HTTP}]\n"
            "workloadSelector: {labels: {app: web}}",
            name="web",
        ),
        workload_entry("address: web-1.example.com\nlabels: {app: web, v: '1'}", name="web-1"),
        workload_entry("address: web-2.example.com\nlabels: {app: other}", name="web-2"),
    )
    file, error = load_error(tmp_path, text)
    assert str(error) == (
        f"{file}#2: spec.address: 'web-1.example.com' must be an IP address: ServiceEntry "
        f"conference/web at {file}#1 selects this workload with resolution STATIC"
    )


def test_missing_path_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(caught.value) == f"{missing}: config path does not exist"
    assert caught.value.issues[0].document is None


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    file = tmp_path / "mesh.yaml"
    file.write_bytes(b"kind: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(file)
