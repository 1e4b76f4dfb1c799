"""deploy/: the image's build steps run here (build-image.sh), and the Dockerfile and the
systemd unit checked statically: their flags parse with `mesh-controlplane serve`'s own parser,
and the unit passes `systemd-analyze verify` and its offline security review."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from argparse import Namespace
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

import pytest

from controlplane.cli import _parser
from controlplane.cli_security import secure_address

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "mesh-controlplane.service"
SCRIPT_TIMEOUT_S = 600


def _facts_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dockerfile_facts", DEPLOY / "dockerfile_facts.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


facts = _facts_module()


def _serve_args(argv: list[str]) -> Namespace:
    """What `mesh-controlplane serve` makes of these flags (a bad one fails the test)."""
    assert argv[0] == "serve", argv
    args = _parser().parse_args(argv)
    assert args.command == "serve"
    return args


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


# --- the Dockerfile ------------------------------------------------------------------------


def test_dockerfile_command_parses_and_matches_mounts_ports_and_volume() -> None:
    dockerfile = facts.parse(DEPLOY / "Dockerfile")
    assert dockerfile.exec_form("ENTRYPOINT") == ["mesh-controlplane"]
    args = _serve_args(dockerfile.exec_form("CMD"))
    assert args.config == "/etc/mesh"
    assert args.data_dir == "/var/lib/mesh"
    assert args.store is None  # the store is DATA_DIR/store.db, in the volume
    assert dockerfile.last("VOLUME") == '["/var/lib/mesh"]'
    assert dockerfile.last("WORKDIR") == "/var/lib/mesh"
    # Every interface, so the admin API needs --admin-allow-remote and then a token file.
    assert args.xds_address.startswith("0.0.0.0:")
    assert args.admin_address.startswith("0.0.0.0:")
    assert args.admin_allow_remote
    assert args.admin_token_file == "/etc/mesh-admin/tokens"
    # Every port the command listens on is exposed, and only those (15010/15012/15014 as istiod).
    secure = secure_address(args)
    assert secure is not None and secure.host == "0.0.0.0"
    exposed = {int(port) for port in dockerfile.last("EXPOSE").split()}
    assert exposed == {_port(args.xds_address), secure.port, _port(args.admin_address)}
    assert exposed == {15010, 15012, 15014}
    # The health check: Python's stdlib (no curl in slim images) on the admin port's /readyz.
    health = dockerfile.exec_form("HEALTHCHECK")
    assert health[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{_port(args.admin_address)}/readyz" in health[2]
    assert re.search(r"--start-period=\d+s", dockerfile.last("HEALTHCHECK"))
    assert dockerfile.last("STOPSIGNAL") == "SIGTERM"


def test_dockerfile_builds_a_wheel_and_runs_it_as_a_fixed_non_root_uid() -> None:
    dockerfile = facts.parse(DEPLOY / "Dockerfile")
    assert dockerfile.args["PYTHON_IMAGE"] == "python:3.12-slim"
    build, image = dockerfile.stages
    assert build.base == image.base == "${PYTHON_IMAGE}"
    assert build.name == "build"
    assert dockerfile.copy_sources() == ["pyproject.toml", "README.md", "meshlib/", "controlplane/"]
    assert any("pip wheel" in run and "--wheel-dir /wheels" in run for run in build.values("RUN"))
    installs = [run for run in image.values("RUN") if "pip install" in run]
    assert len(installs) == 1
    assert "--no-index --find-links /wheels meshlib-xds" in installs[0]
    assert "from=build" in installs[0]  # the wheels come from the build stage, not a layer
    assert not any(re.search(r"\b(apt-get|gcc|curl|wget)\b", run) for run in image.values("RUN"))
    uid, gid = dockerfile.user()
    assert uid != 0 and gid != 0
    assert any(f"--uid {uid}" in run for run in image.values("RUN"))


def test_dockerfile_facts_refuses_what_it_cannot_mirror(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.12-slim\nCOPY a.txt /elsewhere/\nCMD serve --config /x\n")
    dockerfile = facts.parse(bad)
    with pytest.raises(facts.DockerfileError, match="only 'COPY SOURCE"):
        dockerfile.copy_sources()
    with pytest.raises(facts.DockerfileError, match="CMD is not in exec"):
        dockerfile.exec_form("CMD")
    with pytest.raises(facts.DockerfileError, match="no USER"):
        dockerfile.user()
    assert facts.local_argv(["--a", "0.0.0.0:15010", "/etc/mesh", "x"], "/R") == [
        "--a",
        "127.0.0.1:0",
        "/R/etc/mesh",
        "x",
    ]


def test_dockerignore_keeps_the_copied_sources_and_drops_the_venv_and_git() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= ignored
    for source in facts.parse(DEPLOY / "Dockerfile").copy_sources():
        assert source.rstrip("/") not in ignored


# --- the systemd unit ----------------------------------------------------------------------


def _unit(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (keys may repeat), backslash continuations joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    text = re.sub(r"\\\n", " ", path.read_text())
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r} is not KEY=VALUE"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_runs_the_serve_command_with_its_own_state_and_config_directories() -> None:
    service = _unit()["Service"]
    executable, *argv = shlex.split(service["ExecStart"][0])
    assert executable == "/opt/meshlib/bin/mesh-controlplane"
    assert argv[-1] == "$MESH_CONTROLPLANE_OPTS"  # extra flags; given again, they win
    args = _serve_args(argv[:-1])
    assert args.data_dir == "/var/lib/" + service["StateDirectory"][0]
    assert args.config == "/etc/" + service["ConfigurationDirectory"][0]
    assert args.admin_allow_remote and args.admin_token_file == "/etc/mesh-admin/tokens"
    overridden = _serve_args([*argv[:-1], "--admin-address", "127.0.0.1:15014"])
    assert overridden.admin_address == "127.0.0.1:15014"
    assert service["EnvironmentFile"] == ["-/etc/default/mesh-controlplane"]
    # controlplane/cli.py re-reads the token file on SIGHUP.
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert signal.SIGHUP.name in (ROOT / "controlplane" / "cli.py").read_text()


def test_unit_is_hardened_and_restarts_on_failure() -> None:
    service = _unit()["Service"]
    expected = {
        "Type": "exec",
        "DynamicUser": "yes",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",  # bad flags/config: a restart loop would not help
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "SupplementaryGroups": "mesh-admin",
    }
    assert {key: service[key][-1] for key in expected} == expected
    assert int(service["LimitNOFILE"][0]) >= 10_000  # a stream per connected client
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def _analyzable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's mesh-controlplane (verify wants it)."""
    installed = Path(sys.executable).parent / "mesh-controlplane"
    assert installed.exists(), installed
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/meshlib/bin/mesh-controlplane", str(installed)))
    return copy


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_passes_systemd_analyze_verify_and_security(tmp_path: Path) -> None:
    unit = _analyzable_unit(tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert security.returncode == 0, security.stdout + security.stderr
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", security.stdout)
    assert exposure, security.stdout
    assert float(exposure[1]) <= 2.0 and exposure[2] == "OK", exposure[0]


# --- the image's build steps, run here -----------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 60)
def test_build_image_script_builds_installs_serves_and_stops_as_the_image_would() -> None:
    proc = subprocess.Popen(
        ["bash", str(DEPLOY / "build-image.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its server is in this group: killed with it on a timeout
    )
    try:
        output, _ = proc.communicate(timeout=SCRIPT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        pytest.fail(f"build-image.sh still running after {SCRIPT_TIMEOUT_S} s:\n{output}")
    assert proc.returncode == 0, output
    lines = output.splitlines()
    assert lines[-1] == "build-image: ok", output
    for step in (
        f"==> mesh-controlplane {version('meshlib-xds')}",
        "==> health check passed",
        "==> admin API: 401 without a token, 200 with the mounted one",
        "==> clean exit (0)",
        "==> the health check fails once it is gone",
    ):
        assert any(line.startswith(step) for line in lines), (step, output)
    if os.geteuid() == 0:
        uid = facts.parse(DEPLOY / "Dockerfile").user()[0]
        assert f"==> the server runs as uid {uid}" in lines, output
