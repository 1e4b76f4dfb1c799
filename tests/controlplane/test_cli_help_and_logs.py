"""Both commands show their defaults in ``--help`` and print the version with
``--version``; at the default log level the control plane logs changes, not the
xDS protocol chatter (every send and ACK is debug)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import structlog

from controlplane import cli, meshctl
from controlplane.translate.typeurls import CLUSTER_TYPE_URL, ENDPOINTS_TYPE_URL
from controlplane.xds import XdsService
from tests.controlplane.ads_harness import RawAdsClient, mesh, service_entry
from tests.controlplane.grpcio_probe import finish, start_grpcio_xds_client
from tests.support.meshconfig import service_entry as service_entry_yaml
from tests.support.meshconfig import write_config
from tests.support.processes import running_controlplane
from tests.support.waiting import wait_for
from tests.support.xds_service import xds_channel

COMMANDS = {"mesh-controlplane": "controlplane.cli", "meshctl": "controlplane.meshctl"}
# Events that may be logged at info or above while clients only talk xDS.
LIFECYCLE = {"xds_stream_opened", "xds_stream_closed", "xds_rebuilt", "xds_nack"}


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(("prog", "module"), sorted(COMMANDS.items()))
def test_version_prints_the_distribution_version(prog: str, module: str) -> None:
    result = run(module, "--version")
    assert (result.returncode, result.stdout) == (0, f"{prog} {version('meshlib-xds')}\n")


def parsers() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of both commands, subcommands included."""
    for parser in (cli._parser(), meshctl._parser()):
        yield parser.prog, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from action.choices.items()


def shown_defaults(parser: argparse.ArgumentParser) -> Iterator[tuple[str, object]]:
    """(option, default) for every option whose default means something."""
    for action in parser._actions:
        if action.option_strings and action.default not in (None, "", False, [], "==SUPPRESS=="):
            yield action.option_strings[-1], action.default


def test_help_of_every_command_shows_the_defaults() -> None:
    checked = 0
    for prog, parser in parsers():
        text = " ".join(parser.format_help().split())  # undo the line wrapping
        for option, default in shown_defaults(parser):
            assert f"(default: {default})" in text, f"{prog} --help: {option} hides {default!r}"
            checked += 1
    assert checked >= 6  # serve's addresses, log format and level, both debounces


def test_serve_help_as_printed() -> None:
    result = run("controlplane.cli", "serve", "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    for shown in ("(default: 127.0.0.1:15010)", "(default: 127.0.0.1:15014)", "(default: info)"):
        assert shown in text
    assert "--allow-empty-config" in text


async def test_sends_and_acks_are_debug_changes_and_nacks_are_not() -> None:
    service = XdsService(debounce_s=0.01)
    service.update(config=mesh(service_entry("a")))
    async with xds_channel(service) as channel:
        client = RawAdsClient(channel, "chatty")
        try:
            with structlog.testing.capture_logs() as logs:
                client.send(CLUSTER_TYPE_URL)
                client.ack(await client.recv())
                client.send(ENDPOINTS_TYPE_URL, ["outbound|80||a"])
                client.ack(await client.recv(), ["outbound|80||a"])
                service.update(config=mesh(service_entry("a"), service_entry("b")))
                cds, eds = await client.recv(), await client.recv()  # EDS: a type-wide version
                client.ack(eds, ["outbound|80||a"])
                client.send(CLUSTER_TYPE_URL, nonce=cds.nonce, error="refused for the test")
                await client.expect_silence(0.2)
        finally:
            await client.close()
    levels = {(entry["event"], entry["log_level"]) for entry in logs}
    assert {("xds_send", "debug"), ("xds_ack", "debug"), ("xds_nack", "warning")} <= levels
    loud = {event for event, level in levels if level != "debug"}
    assert loud <= LIFECYCLE, loud - LIFECYCLE


@pytest.mark.integration
def test_default_log_level_leaves_out_the_protocol_chatter(tmp_path: Path) -> None:
    config = write_config(tmp_path / "mesh.yaml", service_entry_yaml("sessions", 50051, [50052]))
    with running_controlplane(config) as cp:
        bootstrap = cp.write_bootstrap(tmp_path / "bootstrap.json", node_id="grpcio-quiet")
        client = start_grpcio_xds_client(bootstrap, "xds:///sessions:50051")
        try:
            wait_for(
                lambda: any("xds_stream_opened" in line for line in cp.stderr_lines),
                timeout=10,
                what="grpcio's ADS stream",
            )
            write_config(config, service_entry_yaml("sessions", 50051, [50052, 50053]))
            wait_for(
                lambda: any("config_changed" in line for line in cp.stderr_lines),
                timeout=10,
                what="the edit to be taken",
            )
        finally:
            code, stderr = finish(client)
        assert cp.stop() == 0
    assert code == 0, stderr
    chatter = [line for line in cp.stderr_lines if "xds_send" in line or "xds_ack" in line]
    assert chatter == []
