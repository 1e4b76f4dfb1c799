"""ConfigWatcher on real files: edits are noticed fast, bad edits never replace good config."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controlplane.config import ConfigError, ConfigIssue, ConfigWatcher, load_config
from controlplane.model import MeshConfig
from tests.controlplane.config_cases import CONFERENCE, STATIC_SPEC, service_entry

DEADLINE_S = 3.0


@dataclass
class Recorder:
    """Collects what the watcher hands over, with the time it arrived."""

    configs: list[tuple[float, MeshConfig]] = field(default_factory=list)
    errors: list[tuple[float, ConfigError]] = field(default_factory=list)

    def on_config(self, config: MeshConfig) -> None:
        self.configs.append((time.monotonic(), config))

    def on_error(self, error: ConfigError) -> None:
        self.errors.append((time.monotonic(), error))


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def replace_file(path: Path, text: str) -> float:
    """Save the way editors do: write a temporary file, rename it over the old one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    started = time.monotonic()
    os.replace(temporary, path)
    return started


@dataclass
class Running:
    watcher: ConfigWatcher
    recorder: Recorder
    path: Path
    initial: MeshConfig


@asynccontextmanager
async def start(path: Path, *, wait_ready: bool = True) -> AsyncIterator[Running]:
    initial = load_config(path)
    recorder = Recorder()
    watcher = ConfigWatcher(path, recorder.on_config, recorder.on_error, last_good=initial)
    task = asyncio.create_task(watcher.run())
    try:
        if wait_ready:
            await asyncio.wait_for(watcher.ready.wait(), DEADLINE_S)
        yield Running(watcher, recorder, path, initial)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, DEADLINE_S)


@pytest.fixture
async def on_file(tmp_path: Path) -> AsyncIterator[Running]:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFERENCE)
    async with start(path) as running:
        yield running


async def test_edit_is_noticed_within_a_few_hundred_ms(on_file: Running) -> None:
    started = replace_file(on_file.path, CONFERENCE.replace("18091", "18095"))
    await eventually(lambda: bool(on_file.recorder.configs), "on_config")
    arrived, config = on_file.recorder.configs[0]
    assert config.workload_entries[0].spec.ports["grpc"] == 18095
    assert on_file.watcher.last_good == config
    # The requirement is ~300 ms; leave room for a busy machine.
    assert arrived - started < 1.0, f"took {arrived - started:.3f}s"
    assert on_file.recorder.errors == []


async def test_in_place_write_is_noticed(on_file: Running) -> None:
    on_file.path.write_text(CONFERENCE.replace("us-east/zone-a", "us-west/zone-a"))
    await eventually(
        lambda: any(
            c.workload_entries[0].spec.locality == "us-west/zone-a"
            for _, c in on_file.recorder.configs
        ),
        "the new locality",
    )


async def test_bad_edit_keeps_last_good_then_fix_applies(on_file: Running) -> None:
    replace_file(on_file.path, CONFERENCE.replace("protocol: GRPC", "protocol: TCP"))
    await eventually(lambda: bool(on_file.recorder.errors), "on_error")
    _, error = on_file.recorder.errors[0]
    assert str(error) == (
        f"{on_file.path}#2: spec.ports[0].protocol: protocol TCP is not supported yet "
        "(use HTTP, HTTP2, GRPC)"
    )
    assert on_file.recorder.configs == []
    assert on_file.watcher.last_good == on_file.initial
    assert on_file.watcher.last_error is error

    replace_file(on_file.path, CONFERENCE.replace("50051", "50052"))
    await eventually(lambda: bool(on_file.recorder.configs), "on_config after the fix")
    _, config = on_file.recorder.configs[0]
    assert config.service_entries[1].ports[0].number == 50052
    assert on_file.watcher.last_error is None
    assert len(on_file.recorder.errors) == 1


async def test_unchanged_content_calls_nothing(on_file: Running) -> None:
    reloads = on_file.watcher.reloads
    replace_file(on_file.path, CONFERENCE)
    await eventually(lambda: on_file.watcher.reloads > reloads, "a reload")
    assert on_file.recorder.configs == []
    assert on_file.recorder.errors == []


async def test_fixing_back_to_last_good_clears_the_error(on_file: Running) -> None:
    replace_file(on_file.path, "kind: Nope\n")
    await eventually(lambda: bool(on_file.recorder.errors), "on_error")
    replace_file(on_file.path, CONFERENCE)
    await eventually(lambda: on_file.watcher.last_error is None, "the error to clear")
    assert on_file.recorder.configs == []  # same as the config in force: nothing to apply


async def test_a_reread_that_validates_unchanged_calls_on_unchanged(tmp_path: Path) -> None:
    """So the caller can clear the error it shows once a bad edit is reverted."""
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFERENCE)
    recorder, rereads = Recorder(), []
    watcher = ConfigWatcher(
        path,
        recorder.on_config,
        recorder.on_error,
        on_unchanged=rereads.append,
        last_good=load_config(path),
    )
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.ready.wait(), DEADLINE_S)
        count = len(rereads)  # the re-check once the watch is in place
        replace_file(path, "kind: Nope\n")
        await eventually(lambda: bool(recorder.errors), "on_error")
        path.write_text(CONFERENCE + "# only a comment more\n")
        await eventually(lambda: len(rereads) > count, "on_unchanged")
        assert rereads[-1] == watcher.last_good
        assert watcher.last_error is None
        assert recorder.configs == []
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, DEADLINE_S)


async def test_on_config_refusing_keeps_last_good_and_reports_the_error(tmp_path: Path) -> None:
    """A caller refuses a config that validates (it cannot be served) by raising
    ConfigError: that config never becomes last_good, so saving it again is
    refused again instead of passing as unchanged."""
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFERENCE)
    refusal = ConfigError([ConfigIssue(str(path), 2, "", "cannot be served")])
    recorder = Recorder()

    def on_config(config: MeshConfig) -> None:
        recorder.on_config(config)
        raise refusal

    initial = load_config(path)
    watcher = ConfigWatcher(path, on_config, recorder.on_error, last_good=initial)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.ready.wait(), DEADLINE_S)
        edited = CONFERENCE.replace("18081", "18071")
        replace_file(path, edited)
        await eventually(lambda: len(recorder.errors) == 1, "the refusal")
        assert recorder.errors[0][1] is refusal and watcher.last_error is refusal
        assert watcher.last_good == initial
        replace_file(path, edited)
        await eventually(lambda: len(recorder.errors) == 2, "the refusal, again")
        assert len(recorder.configs) == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, DEADLINE_S)


async def test_other_files_next_to_the_config_are_ignored(on_file: Running) -> None:
    reloads = on_file.watcher.reloads
    (on_file.path.parent / "notes.txt").write_text("hello")
    replace_file(on_file.path, CONFERENCE.replace("18081", "18089"))
    await eventually(lambda: bool(on_file.recorder.configs), "on_config")
    assert on_file.watcher.reloads == reloads + 1


async def test_folder_watch_sees_new_changed_and_removed_files(tmp_path: Path) -> None:
    (tmp_path / "conference.yaml").write_text(CONFERENCE)
    async with start(tmp_path) as running:
        extra = tmp_path / "more" / "web.yaml"
        extra.parent.mkdir()
        extra.write_text(service_entry(STATIC_SPEC, name="web"))
        await eventually(
            lambda: any(len(c.service_entries) == 3 for _, c in running.recorder.configs),
            "the new file's ServiceEntry",
        )
        count = len(running.recorder.configs)
        extra.unlink()
        await eventually(lambda: len(running.recorder.configs) > count, "the removal")
        _, config = running.recorder.configs[-1]
        assert [se.name for se in config.service_entries] == ["attendees", "sessions"]
        assert running.recorder.errors == []


async def test_change_made_before_the_watch_is_ready_is_not_missed(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFERENCE)
    async with start(path, wait_ready=False) as running:
        replace_file(path, CONFERENCE.replace("18082", "18083"))
        await eventually(lambda: bool(running.recorder.configs), "on_config")
        _, config = running.recorder.configs[-1]
        assert config.service_entries[0].endpoints[1].ports["http"] == 18083


async def test_failing_callback_does_not_stop_the_watch(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFERENCE)
    seen: list[MeshConfig] = []

    def on_config(config: MeshConfig) -> None:
        seen.append(config)
        if len(seen) == 1:
            raise RuntimeError("caller bug")

    watcher = ConfigWatcher(path, on_config, lambda error: None, last_good=load_config(path))
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.ready.wait(), DEADLINE_S)
        replace_file(path, CONFERENCE.replace("18081", "18071"))
        await eventually(lambda: len(seen) == 1, "the first hand-over")
        assert watcher.last_good != seen[0]  # not handed over: retried on the next change
        replace_file(path, CONFERENCE.replace("18081", "18072"))
        await eventually(lambda: len(seen) == 2, "the second hand-over")
        assert watcher.last_good == seen[1]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, DEADLINE_S)


async def test_cancel_stops_promptly(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(CONFERENCE)
    watcher = ConfigWatcher(path, lambda c: None, lambda e: None)
    task = asyncio.create_task(watcher.run())
    await asyncio.wait_for(watcher.ready.wait(), DEADLINE_S)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0


async def test_folder_removed_and_recreated_is_watched_again(tmp_path: Path) -> None:
    folder = tmp_path / "mesh"
    folder.mkdir()
    (folder / "conference.yaml").write_text(CONFERENCE)
    async with start(folder) as running:
        shutil.rmtree(folder)
        await eventually(lambda: bool(running.recorder.errors), "on_error for the lost folder")
        assert "config path does not exist" in str(running.recorder.errors[-1][1])
        assert running.watcher.last_good == running.initial

        staging = tmp_path / "staging"
        staging.mkdir()
        (staging / "conference.yaml").write_text(CONFERENCE.replace("18081", "18061"))
        staging.rename(folder)
        await eventually(lambda: bool(running.recorder.configs), "the recreated folder's config")
        _, config = running.recorder.configs[-1]
        assert config.service_entries[0].endpoints[0].ports["http"] == 18061

        (folder / "conference.yaml").write_text(CONFERENCE.replace("18081", "18062"))
        await eventually(
            lambda: (
                running.recorder.configs[-1][1].service_entries[0].endpoints[0].ports["http"]
                == 18062
            ),
            "a change inside the new folder",
        )
