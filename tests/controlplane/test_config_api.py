"""``meshctl apply / get / delete`` against a real control plane with a data dir and a
``--config`` file: validation as for files, all or nothing, idempotence, optimistic
concurrency (409), file-owned resources read-only, namespaces, exit codes."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.controlplane.meshctl_harness import (
    Ctl,
    controlplane_with_ctl,
    destination_rule,
    service_entry,
    virtual_service,
    write_yaml,
)
from tests.support.processes import running_controlplane
from tests.support.waiting import free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def ctl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    with controlplane_with_ctl(
        tmp_path, capsys, service_entry("sessions"), destination_rule("sessions", "v1", "v2")
    ) as (ctl, _):
        yield ctl


def test_apply_get_and_reapply(ctl: Ctl) -> None:
    code, out, _ = ctl.apply(virtual_service("sessions", "v1"), service_entry("attendees", 8080))
    assert code == 0
    assert out.splitlines() == [
        "VirtualService default/sessions created (resourceVersion 1)",
        "ServiceEntry default/attendees created (resourceVersion 1)",
    ]
    got = ctl.get_json("vs", "sessions")
    assert got == {
        **virtual_service("sessions", "v1"),
        "metadata": {"name": "sessions", "namespace": "default", "resourceVersion": "1"},
    }
    code, out, _ = ctl.apply(virtual_service("sessions", "v1"), service_entry("attendees", 8080))
    assert code == 0
    assert out.splitlines() == [
        "VirtualService default/sessions unchanged (resourceVersion 1)",
        "ServiceEntry default/attendees unchanged (resourceVersion 1)",
    ]
    listed = ctl.get_json("serviceentries")
    assert [
        (i["metadata"]["name"], i["metadata"].get("resourceVersion")) for i in listed["items"]
    ] == [
        ("attendees", "1"),
        ("sessions", None),
    ]
    code, out, _ = ctl("get", "VirtualService", "sessions")  # yaml by default
    assert "resourceVersion: '1'" in out and "subset: v1" in out


def test_file_owned_resources_show_their_file_and_are_read_only(ctl: Ctl, tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    got = ctl.get_json("se", "sessions")
    assert got["metadata"]["annotations"] == {"meshlib.dev/source": f"{config}#1"}
    assert got["spec"] == service_entry("sessions")["spec"]
    changed = service_entry("sessions", 50052)
    code, _, err = ctl.apply(changed)
    assert code == 1
    assert "409" in err and f"defined by the config file {config}#1" in err
    code, _, err = ctl("delete", "destinationrule", "sessions")
    assert code == 1 and f"{config}#2" in err and "cannot be deleted through the API" in err
    assert ctl.get_json("se", "sessions")["spec"] == service_entry("sessions")["spec"]


def test_stale_resource_version_is_refused_with_409(ctl: Ctl) -> None:
    assert ctl.apply(virtual_service("sessions", "v1"))[0] == 0
    read = ctl.get_json("vs", "sessions")
    read["spec"]["http"][0]["timeout"] = "3s"
    code, out, _ = ctl.apply(read)
    assert code == 0 and "configured (resourceVersion 2)" in out
    read["spec"]["http"][0]["timeout"] = "4s"  # still carries resourceVersion 1
    code, _, err = ctl.apply(read)
    assert code == 1
    assert "409" in err and "resourceVersion 2, not 1" in err
    assert ctl.get_json("vs", "sessions")["spec"]["http"][0]["timeout"] == "3s"
    code, _, err = ctl("delete", "vs", "sessions", "--resource-version", "1")
    assert code == 1 and "409" in err
    assert ctl("delete", "vs", "sessions", "--resource-version", "2")[0] == 0


def test_invalid_documents_are_refused_whole_naming_file_document_and_field(
    ctl: Ctl, tmp_path: Path
) -> None:
    bad = virtual_service("attendees")
    bad["spec"]["http"][0]["timeout"] = "soon"
    code, _, err = ctl.apply(service_entry("attendees", 8080), bad, name="two.yaml")
    assert code == 1
    assert f"{tmp_path / 'two.yaml'}#2: spec.http[0].timeout: invalid duration 'soon'" in err
    code, _, err = ctl("get", "se", "attendees")
    assert code == 1 and "not found" in err  # the valid first document was not applied
    # A subset the DestinationRule (from the file) does not define: checked across layers.
    code, _, err = ctl.apply(virtual_service("sessions", "v3"))
    assert code == 1 and "subset 'v3' is not defined" in err
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    code, _, err = ctl("apply", "-f", str(tmp_path / "broken.yaml"))
    assert code == 1 and "broken.yaml#1: invalid YAML at line 2" in err
    assert ctl.get_json("virtualservices") == {"items": []}


def test_a_delete_the_rest_of_the_config_needs_is_refused(ctl: Ctl) -> None:
    assert ctl.apply(destination_rule("attendees", "v1"), service_entry("attendees", 8080))[0] == 0
    assert ctl.apply(virtual_service("attendees", "v1"), name="vs.yaml")[0] == 0
    code, _, err = ctl("delete", "dr", "attendees")
    assert code == 1 and "subset 'v1' is not defined" in err
    assert ctl.get_json("dr", "attendees")["metadata"]["resourceVersion"] == "1"
    assert ctl("delete", "vs", "attendees")[0] == 0
    code, out, _ = ctl("delete", "dr", "attendees")
    assert code == 0 and out == "DestinationRule default/attendees deleted\n"
    code, _, err = ctl("delete", "dr", "attendees")
    assert code == 1 and "404" in err and "not found" in err


def test_namespaces(ctl: Ctl) -> None:
    assert ctl.apply(service_entry("ledger", 9000, namespace="shop"))[0] == 0
    assert ctl.get_json("se", "ledger", "-n", "shop")["metadata"]["namespace"] == "shop"
    code, _, err = ctl("get", "se", "ledger")  # one resource without -n: default
    assert code == 1 and "ServiceEntry default/ledger not found" in err
    names = [i["metadata"]["name"] for i in ctl.get_json("se")["items"]]
    assert names == ["sessions", "ledger"]  # a list without -n: every namespace
    assert [i["metadata"]["name"] for i in ctl.get_json("se", "-n", "shop")["items"]] == ["ledger"]
    assert ctl("delete", "se", "ledger")[0] == 1
    assert ctl("delete", "se", "ledger", "-n", "shop")[0] == 0


def test_apply_from_a_folder_and_stdin(ctl: Ctl, tmp_path: Path, monkeypatch: Any) -> None:
    folder = tmp_path / "apply"
    (folder / "nested").mkdir(parents=True)
    write_yaml(folder / "a.yaml", service_entry("attendees", 8080))
    write_yaml(folder / "nested" / "b.yml", destination_rule("attendees", "v1"))
    (folder / "notes.txt").write_text("not config")
    code, out, _ = ctl("apply", "-f", str(folder))
    assert code == 0 and len(out.splitlines()) == 2
    text = write_yaml(tmp_path / "x.yaml", virtual_service("attendees", "v1")).read_text()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, out, _ = ctl("apply", "-f", "-", "-o", "json")
    assert code == 0 and '"result": "created"' in out


def test_file_edits_clashing_with_stored_resources_are_refused(ctl: Ctl, tmp_path: Path) -> None:
    assert ctl.apply(virtual_service("sessions", "v1"))[0] == 0
    config = tmp_path / "mesh.yaml"
    write_yaml(
        config,
        service_entry("sessions"),
        destination_rule("sessions", "v1", "v2"),
        virtual_service("sessions", "v2"),
    )

    def refused() -> Any:
        status = httpx.get(f"{ctl.cp.admin_url}/v1/config", timeout=5).json()
        return status["last_error"]

    error = wait_for(refused, timeout=10)
    assert (
        f"{config}#3: metadata.name: VirtualService default/sessions is also stored"
        in (error["message"])
    )
    assert ctl.get_json("vs", "sessions")["metadata"]["resourceVersion"] == "1"


def test_exit_codes_for_bad_arguments_and_unreachable_api(
    ctl: Ctl, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from controlplane.meshctl import main

    assert ctl("get", "gateway")[0] == 2  # not supported yet: a bad argument
    assert ctl("apply", "-f", str(tmp_path / "missing.yaml"))[0] == 2
    assert main(["get", "vs", "--admin-address", "no port"]) == 2
    assert main(["get"]) == 2
    capsys.readouterr()
    nobody = f"127.0.0.1:{free_port()}"
    assert main(["get", "vs", "--admin-address", nobody]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_address_and_token_from_the_environment(
    ctl: Ctl, monkeypatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from controlplane.meshctl import main

    monkeypatch.setenv("MESH_ADMIN_ADDRESS", ctl.cp.admin_address)
    monkeypatch.setenv("MESH_ADMIN_TOKEN", "not-checked-here")
    assert main(["get", "se", "-o", "json"]) == 0
    assert '"sessions"' in capsys.readouterr().out


def test_tokens_are_sent_as_bearer_and_scopes_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from controlplane.meshctl import main

    tokens = tmp_path / "tokens"
    tokens.write_text("reader-0123456789 read\nwriter-0123456789 read,write\n")
    documents = write_yaml(tmp_path / "vs.yaml", service_entry("attendees", 8080))
    monkeypatch.delenv("MESH_ADMIN_TOKEN", raising=False)
    extra = ["--admin-token-file", str(tokens), "--data-dir", str(tmp_path / "data")]
    with running_controlplane(None, extra_args=extra) as cp:
        admin = ["--admin-address", cp.admin_address]
        assert main(["get", "se", *admin]) == 1
        assert "401" in capsys.readouterr().err
        assert main(["get", "se", *admin, "--token", "reader-0123456789"]) == 0
        assert main(["apply", "-f", str(documents), *admin, "--token", "reader-0123456789"]) == 1
        assert "403" in capsys.readouterr().err
        monkeypatch.setenv("MESH_ADMIN_TOKEN", "writer-0123456789")
        assert main(["apply", "-f", str(documents), *admin]) == 0
        assert main(["delete", "se", "attendees", *admin]) == 0
