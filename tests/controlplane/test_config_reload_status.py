"""Reloads through the real control plane: what is refused, and what clears the error.

* an emptied file (``: > mesh.yaml``) is refused: clients keep every service;
* an edit that removes every ServiceEntry is refused unless the control plane
  runs with ``allow_empty_config`` (``--allow-empty-config``);
* a start on an empty folder is fine (services may come from registrations);
* every re-read that validates clears ``last_error`` and moves ``loaded_at``,
  even when the files say what is already in force (a reverted bad edit);
* a config the control plane refuses to translate stays refused when saved again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from controlplane.app import ControlPlane
from controlplane.config import ConfigError
from controlplane.config.yaml_files import EMPTY_FILE_MESSAGE
from controlplane.model import MeshConfig, NodeInfo, RegisteredWorkload
from controlplane.translate import Resources, TranslationError, translate
from controlplane.translate.typeurls import CLUSTER_TYPE_URL
from tests.controlplane.ads_harness import RawAdsClient, resource_names
from tests.controlplane.polling import eventually_await
from tests.support.meshconfig import service_entry, write_config

SESSIONS = service_entry("sessions", 50051, [50052])
ATTENDEES = service_entry("attendees", 8080, [18080], protocol="HTTP")
BAD_HOST = service_entry("sessions", 50051, [50052])
BAD_HOST["spec"]["hosts"] = ["Not_A_Host"]  # type: ignore[index]


@dataclass
class Running:
    plane: ControlPlane
    http: httpx.AsyncClient
    cds: RawAdsClient
    clusters: list[str]

    async def shown(self) -> dict[str, Any]:
        config: dict[str, Any] = (await self.http.get("/v1/config")).json()
        return config

    async def refused(self, *, after: str = "") -> dict[str, Any]:
        """``GET /v1/config`` once it shows a ``last_error`` newer than ``after``."""
        latest: dict[str, Any] = {}

        async def probe() -> bool:
            latest.update(await self.shown())
            error = latest["last_error"]
            return error is not None and error["at"] > after

        await eventually_await(probe, what="the edit to be refused")
        return latest

    async def cleared(self, loaded_before: str) -> dict[str, Any]:
        """``GET /v1/config`` once ``last_error`` is null and ``loaded_at`` moved on."""
        latest: dict[str, Any] = {}

        async def probe() -> bool:
            latest.update(await self.shown())
            return latest["last_error"] is None and latest["loaded_at"] > loaded_before

        await eventually_await(probe, what="the error to clear")
        return latest


@asynccontextmanager
async def running(path: Path, **options: Any) -> AsyncIterator[Running]:
    """The control plane on ``path``, its admin API, and one wildcard CDS client."""
    plane = ControlPlane(path, "127.0.0.1:0", "127.0.0.1:0", debounce_s=0.01, **options)
    await plane.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{plane.xds_port}")
    cds = RawAdsClient(channel, "reload-test")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{plane.admin_port}") as http:
            cds.send(CLUSTER_TYPE_URL)
            first = await cds.recv()
            cds.ack(first)
            yield Running(plane, http, cds, resource_names(first))
    finally:
        await cds.close()
        await channel.close(None)
        await plane.stop()


async def test_emptied_file_is_refused_and_reverting_it_clears_the_error(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path / "mesh.yaml", SESSIONS, ATTENDEES)
    good = path.read_bytes()
    async with running(path) as run:
        assert sorted(run.clusters) == ["outbound|50051||sessions", "outbound|8080||attendees"]
        before = (await run.shown())["loaded_at"]
        path.write_bytes(b"")  # `: > mesh.yaml`: truncated in place
        shown = await run.refused()
        assert shown["last_error"]["issues"] == [f"{path}: {EMPTY_FILE_MESSAGE}"]
        assert len(shown["resources"]) == 2
        assert shown["loaded_at"] == before
        await run.cds.expect_silence(0.3)  # no client lost anything

        path.write_bytes(good)  # the byte-identical good file
        shown = await run.cleared(before)
        assert len(shown["resources"]) == 2
        assert (await run.http.get("/readyz")).status_code == 200
        await run.cds.expect_silence(0.3)  # nothing changed for clients


async def test_comment_only_change_after_a_bad_edit_clears_the_error(tmp_path: Path) -> None:
    path = write_config(tmp_path / "mesh.yaml", SESSIONS)
    good = path.read_text()
    async with running(path) as run:
        write_config(path, BAD_HOST)
        shown = await run.refused()
        assert f"{path}#1: spec.hosts[0]" in shown["last_error"]["message"]
        path.write_text("# reviewed\n" + good)
        await run.cleared(shown["loaded_at"])
        await run.cds.expect_silence(0.3)


async def test_deleting_the_offending_file_from_a_folder_clears_the_error(
    tmp_path: Path,
) -> None:
    write_config(tmp_path / "a.yaml", SESSIONS)
    async with running(tmp_path) as run:
        offending = write_config(tmp_path / "b.yaml", BAD_HOST)
        shown = await run.refused()
        assert f"{offending}#1: spec.hosts[0]" in shown["last_error"]["message"]
        offending.unlink()
        shown = await run.cleared(shown["loaded_at"])
        assert shown["files"] == [str(tmp_path / "a.yaml")]


async def test_removing_every_service_is_refused_without_allow_empty_config(
    tmp_path: Path,
) -> None:
    only = write_config(tmp_path / "a.yaml", SESSIONS)
    async with running(tmp_path) as run:
        only.unlink()
        shown = await run.refused()
        assert shown["last_error"]["issues"] == [
            f"{tmp_path}: the change removes every ServiceEntry (1 in force: default/sessions), "
            "which would take every configured service away from every client: refused; "
            "where that is meant, run the control plane with --allow-empty-config"
        ]
        assert [r["name"] for r in shown["resources"]] == ["sessions"]
        await run.cds.expect_silence(0.3)


async def test_allow_empty_config_lets_the_last_service_go(tmp_path: Path) -> None:
    only = write_config(tmp_path / "a.yaml", SESSIONS)
    async with running(tmp_path, allow_empty_config=True) as run:
        only.unlink()
        response = await run.cds.recv()
        assert resource_names(response) == []
        shown = await run.shown()
        assert (shown["last_error"], shown["resources"]) == (None, [])


async def test_start_on_an_empty_folder_serves_and_takes_the_first_file(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        assert run.clusters == []
        assert (await run.http.get("/readyz")).status_code == 200
        write_config(tmp_path / "a.yaml", SESSIONS)
        response = await run.cds.recv()
        assert resource_names(response) == ["outbound|50051||sessions"]


async def test_empty_file_at_start_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("# nothing yet\n")
    plane = ControlPlane(path, "127.0.0.1:0", "127.0.0.1:0")
    with pytest.raises(ConfigError, match="file holds no resources"):
        await plane.start()
    await plane.stop()


def refusing_host(host: str) -> Any:
    """A translation that refuses any config serving ``host``."""

    def translate_fn(
        config: MeshConfig, workloads: Sequence[RegisteredWorkload], node: NodeInfo
    ) -> Resources:
        if any(host in entry.hosts for entry in config.service_entries):
            raise TranslationError(f"{host} cannot be served")
        return translate(config, workloads, node)

    return translate_fn


async def test_untranslatable_edit_stays_refused_when_saved_again(tmp_path: Path) -> None:
    path = write_config(tmp_path / "mesh.yaml", SESSIONS)
    async with running(path, translate_fn=refusing_host("attendees")) as run:
        write_config(path, SESSIONS, ATTENDEES)
        first = (await run.refused())["last_error"]
        assert "attendees cannot be served" in first["message"]
        write_config(path, SESSIONS, ATTENDEES)  # the same config, saved again
        again = (await run.refused(after=first["at"]))["last_error"]
        assert again["issues"] == first["issues"]
        await run.cds.expect_silence(0.3)
