"""Good configs become the expected model; files, folders and documents load in order."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from controlplane.config import ConfigError, load_config
from controlplane.config.yaml_files import EMPTY_FILE_MESSAGE
from controlplane.model import (
    Location,
    MeshConfig,
    Resolution,
    ServiceEntry,
    ServicePort,
    Source,
    WorkloadEntry,
    WorkloadSpec,
)
from tests.controlplane.config_cases import (
    CONFERENCE,
    STATIC_SPEC,
    documents,
    service_entry,
    workload_entry,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_conference_example_gives_the_expected_model(tmp_path: Path) -> None:
    file = write(tmp_path / "mesh.yaml", CONFERENCE)
    name = str(file)
    assert load_config(file) == MeshConfig(
        service_entries=(
            ServiceEntry(
                name="attendees",
                namespace="conference",
                hosts=("attendees",),
                ports=(ServicePort(number=8080, name="http", protocol="HTTP"),),
                resolution=Resolution.STATIC,
                location=Location.MESH_INTERNAL,
                endpoints=(
                    WorkloadSpec("127.0.0.1", ports={"http": 18081}, locality="us-east/zone-a"),
                    WorkloadSpec("127.0.0.1", ports={"http": 18082}, locality="us-east/zone-b"),
                ),
                source=Source(name, 1),
            ),
            ServiceEntry(
                name="sessions",
                namespace="conference",
                hosts=("sessions",),
                ports=(ServicePort(number=50051, name="grpc", protocol="GRPC"),),
                resolution=Resolution.STATIC,
                workload_selector={"app": "sessions"},
                source=Source(name, 2),
            ),
        ),
        workload_entries=(
            WorkloadEntry(
                name="sessions-v1",
                namespace="conference",
                spec=WorkloadSpec(
                    "127.0.0.1",
                    ports={"grpc": 18091},
                    labels={"app": "sessions", "version": "v1"},
                    locality="us-east/zone-a",
                ),
                source=Source(name, 3),
            ),
        ),
    )


def test_loaded_config_is_immutable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "mesh.yaml", CONFERENCE))
    endpoint = config.service_entries[0].endpoints[0]
    assert isinstance(endpoint.ports, MappingProxyType)
    with pytest.raises(TypeError):
        endpoint.ports["http"] = 1  # type: ignore[index]
    selector = config.service_entries[1].workload_selector
    assert isinstance(selector, MappingProxyType)


def test_defaults_and_istio_spellings(tmp_path: Path) -> None:
    text = documents(
        "apiVersion: networking.istio.io/v1beta1\nkind: ServiceEntry\n"
        "metadata: {name: web, labels: {team: a}, annotations: {note: x}}\n"
        "spec:\n"
        "  hosts: [web.example.com]\n"
        "  ports: [{number: 80, name: http, protocol: http, targetPort: 8080},"
        " {number: 81, name: h2, protocol: Http2}]\n"
        "  location: MESH_EXTERNAL\n"
        "  endpoints: [{address: '::1', weight: 0, serviceAccount: web-sa}]\n"
        "status: {conditions: []}\n",
        "apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\n"
        "metadata: {name: w}\nspec: {address: 10.0.0.1, weight: 7, "
        "labels: {app.kubernetes.io/name: w, empty: ''}}\n",
    )
    config = load_config(write(tmp_path / "mesh.yaml", text))
    [web] = config.service_entries
    assert web.namespace == "default"
    assert web.resolution is Resolution.STATIC  # default when endpoints are given
    assert web.location is Location.MESH_EXTERNAL
    assert web.ports == (
        ServicePort(80, "http", "HTTP", target_port=8080),
        ServicePort(81, "h2", "HTTP2"),
    )
    assert web.endpoints == (WorkloadSpec("::1", weight=1, service_account="web-sa"),)
    [workload] = config.workload_entries
    assert workload.namespace == "default"
    assert workload.spec.weight == 7
    assert dict(workload.spec.labels) == {"app.kubernetes.io/name": "w", "empty": ""}


def test_resolution_defaults_to_static_with_a_selector(tmp_path: Path) -> None:
    text = service_entry(
        "hosts: [s]\nports: [{number: 80, name: http, protocol: GRPC}]\n"
        "workloadSelector: {labels: {app: s}}"
    )
    [entry] = load_config(write(tmp_path / "m.yaml", text)).service_entries
    assert entry.resolution is Resolution.STATIC
    assert entry.endpoints == ()


def test_static_without_endpoints_is_allowed_for_registrations(tmp_path: Path) -> None:
    text = service_entry(
        "hosts: [s]\nports: [{number: 80, name: http, protocol: HTTP}]\nresolution: STATIC"
    )
    [entry] = load_config(write(tmp_path / "m.yaml", text)).service_entries
    assert entry.endpoints == ()
    assert entry.workload_selector is None


def test_dns_service_entries(tmp_path: Path) -> None:
    text = documents(
        service_entry(
            "hosts: [api]\nports: [{number: 443, name: grpc, protocol: GRPC}]\n"
            "resolution: DNS\nendpoints: [{address: api.example.com, ports: {grpc: 8443}}]",
            name="api",
        ),
        service_entry(
            "hosts: [localhost]\nports: [{number: 80, name: http, protocol: HTTP}]\n"
            "resolution: DNS",
            name="local",
        ),
    )
    api, local = load_config(write(tmp_path / "m.yaml", text)).service_entries
    assert api.resolution is Resolution.DNS
    assert api.endpoints == (WorkloadSpec("api.example.com", ports={"grpc": 8443}),)
    assert local.resolution is Resolution.DNS
    assert local.endpoints == ()


def test_multi_document_file_skips_empty_documents(tmp_path: Path) -> None:
    text = (
        "# a comment before the first document\n---\n"
        + service_entry(STATIC_SPEC, name="a")
        + "---\n---\n# only a comment\n---\n"
        + workload_entry("address: 10.0.0.1", name="w")
    )
    file = write(tmp_path / "m.yaml", text)
    config = load_config(file)
    assert [se.source for se in config.service_entries] == [Source(str(file), 1)]
    assert [we.source for we in config.workload_entries] == [Source(str(file), 4)]


def test_folder_loads_yaml_files_recursively_in_path_order(tmp_path: Path) -> None:
    write(tmp_path / "b.yml", service_entry(STATIC_SPEC.replace("svc", "b"), name="b"))
    write(tmp_path / "a" / "z.yaml", service_entry(STATIC_SPEC.replace("svc", "az"), name="az"))
    write(tmp_path / "a.yaml", service_entry(STATIC_SPEC.replace("svc", "a"), name="a"))
    write(tmp_path / "c" / "d" / "e.yaml", workload_entry("address: 10.0.0.9", name="e"))
    write(tmp_path / "notes.txt", "not: [yaml")
    write(tmp_path / ".hidden.yaml", "broken: [")
    write(tmp_path / ".git" / "x.yaml", "broken: [")
    write(tmp_path / "mesh.yaml.swp", "broken: [")
    write(tmp_path / ".empty.yaml", "")
    config = load_config(tmp_path)
    # Path order, folder by folder (as kubectl -R walks): a/ sorts before a.yaml.
    assert [se.name for se in config.service_entries] == ["az", "a", "b"]
    assert [se.source.file for se in config.service_entries if se.source] == [
        str(tmp_path / "a" / "z.yaml"),
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.yml"),
    ]
    assert [we.name for we in config.workload_entries] == ["e"]


def test_empty_folder_is_an_empty_config(tmp_path: Path) -> None:
    assert load_config(tmp_path) == MeshConfig()
    assert load_config(str(tmp_path)) == MeshConfig()


@pytest.mark.parametrize(
    "text", ["", "\n\n", "# all commented out\n# kind: ServiceEntry\n", "---\n---\n", "~\n"]
)
def test_file_without_resources_is_refused(tmp_path: Path, text: str) -> None:
    """A truncated save looks just like this; deleting the file removes its resources."""
    empty = write(tmp_path / "mesh.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(empty)
    assert str(caught.value) == f"{empty}: {EMPTY_FILE_MESSAGE}"
    assert "delete the file" in str(caught.value)


def test_empty_file_in_a_folder_refuses_the_folder(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", service_entry(STATIC_SPEC, name="a"))
    empty = write(tmp_path / "b.yaml", "")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert [issue.file for issue in caught.value.issues] == [str(empty)]


def test_file_given_by_name_loads_whatever_its_extension(tmp_path: Path) -> None:
    file = write(tmp_path / "mesh.conf", CONFERENCE)
    assert len(load_config(file).service_entries) == 2


def test_duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", service_entry(STATIC_SPEC, name="svc"))
    second = write(
        tmp_path / "b.yaml",
        documents(
            workload_entry("address: 10.0.0.1", name="w"),
            service_entry(STATIC_SPEC.replace("8080", "9090"), name="svc"),
        ),
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == (
        f"{second}#2: metadata.name: duplicate ServiceEntry conference/svc: "
        f"already defined at {first}#1"
    )


def test_issues_of_every_file_are_reported_in_file_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "kind: [\n")
    b = write(tmp_path / "b.yaml", workload_entry("address: 10.0.0.1\nweight: -2"))
    c = write(tmp_path / "c.yaml", service_entry(STATIC_SPEC, name="c"))
    d = write(tmp_path / "d.yaml", service_entry(STATIC_SPEC.replace("STATIC", "NONE"), name="d"))
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    lines = str(caught.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{a}#1", f"{b}#1", f"{d}#1"]
    assert "spec.weight: must be between 0 and 4294967295, got -2" in lines[1]
    assert "resolution NONE is not supported yet" in lines[2]
    assert str(c) not in str(caught.value)


def test_error_lists_issues_one_per_line(tmp_path: Path) -> None:
    file = write(tmp_path / "m.yaml", workload_entry("ports: {http: 0}", name="w"))
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    assert str(caught.value) == (
        f"{file}#1: spec.address: is required\n"
        f"{file}#1: spec.ports.http: must be between 1 and 65535, got 0"
    )
    assert [issue.path for issue in caught.value.issues] == ["spec.address", "spec.ports.http"]


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    text = documents(
        service_entry(
            "hosts: [a]\nports: &ports [{number: 80, name: http, protocol: HTTP}]\n"
            "endpoints:\n"
            "- &ep {address: 10.0.0.1, locality: r/z, weight: 2}\n"
            "- {<<: *ep, address: 10.0.0.2}",
            name="a",
        ),
    )
    [entry] = load_config(write(tmp_path / "m.yaml", text)).service_entries
    assert [(e.address, e.locality, e.weight) for e in entry.endpoints] == [
        ("10.0.0.1", "r/z", 2),
        ("10.0.0.2", "r/z", 2),
    ]
