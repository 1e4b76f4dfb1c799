"""Re-load the config when its files change, and hand over only good, new configs.

``ConfigWatcher.run()`` watches the config path with ``watchfiles`` (inotify and
friends), groups a burst of changes, re-runs :func:`load_config` off the event
loop and calls ``on_config`` when the result differs from the last good config,
``on_unchanged`` when it validates and equals it (a reverted bad edit: the
caller clears the error it shows), or ``on_error`` when the new config is bad
(the caller keeps the last good one). ``on_config`` may refuse a config that
validates by raising :class:`ConfigError` (e.g. it cannot be translated): that
is handled like a bad config.

A single file is watched through its folder: editors save by writing a new file
and renaming it over the old one, which a watch on the file itself would miss.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import TypeVar

import structlog
from watchfiles import Change, DefaultFilter, awatch

from controlplane.config.errors import ConfigError, ConfigIssue
from controlplane.config.loader import load_config
from controlplane.model import MeshConfig

log = structlog.get_logger(__name__)

__all__ = ["ConfigWatcher"]

_T = TypeVar("_T")


class ConfigWatcher:
    """Watches a config file or folder; cancel the task running :meth:`run` to stop.

    ``last_good`` is the config the caller already serves (from its own
    ``load_config`` at start-up), so an unchanged reload calls nothing.
    ``load`` replaces :func:`load_config` (run on a worker thread), e.g. to layer the
    files with config from elsewhere.
    ``quiet_ms`` is how long the files must be still before a reload;
    ``max_batch_ms`` caps how long a continuous burst can delay it.
    """

    def __init__(
        self,
        path: str | Path,
        on_config: Callable[[MeshConfig], None],
        on_error: Callable[[ConfigError], None],
        *,
        on_unchanged: Callable[[MeshConfig], None] | None = None,
        last_good: MeshConfig | None = None,
        load: Callable[[Path], MeshConfig] = load_config,
        quiet_ms: int = 20,
        max_batch_ms: int = 250,
    ) -> None:
        self.path = Path(path)
        self._on_config = on_config
        self._on_error = on_error
        self._on_unchanged = on_unchanged
        self._last_good = last_good
        self._load = load
        self._last_error: ConfigError | None = None
        self.reloads = 0
        """How many reloads finished (good, bad or unchanged): for status and tests."""
        self._quiet_ms = quiet_ms
        self._max_batch_ms = max_batch_ms
        self._is_dir = self.path.is_dir()
        self._watched = ""
        self._stop = threading.Event()
        self.ready = asyncio.Event()
        """Set once the watch is in place and the config was re-checked after it."""

    @property
    def last_good(self) -> MeshConfig | None:
        """The last config handed to ``on_config`` (or given at construction)."""
        return self._last_good

    @property
    def last_error(self) -> ConfigError | None:
        """The error of the latest reload, or None if the latest reload was good."""
        return self._last_error

    async def run(self) -> None:
        """Watch until cancelled. Changes made before the watch was in place are
        caught by one reload right after it is (then ``ready`` is set)."""
        self._stop.clear()
        self._is_dir = self.path.is_dir()
        watch = asyncio.ensure_future(self._watch())
        try:
            await asyncio.shield(watch)
        except asyncio.CancelledError:
            # The watch thread checks the stop event every few ms; wait for it so
            # no thread outlives this task and no callback fires after cancel.
            self._stop.set()
            await asyncio.wait({watch})
            raise
        finally:
            self._stop.set()

    async def _watch(self) -> None:
        """Watch sessions, one per life of the watched folder: if it is removed or
        replaced, the OS watch stays with the old one, so watch the new one anew."""
        watched, recursive = self._watch_target()
        self._watched = str(watched)
        missing_reported = False
        while not self._stop.is_set():
            if not _folder_exists(watched):
                if not missing_reported:
                    await self._reload()  # reports the missing path, once
                    missing_reported = True
                await asyncio.sleep(_TICK_MS / 1000)
                continue
            missing_reported = False
            log.info("config_watch_started", path=str(self.path), watched=str(watched))
            await self._watch_session(watched, recursive)

    async def _watch_session(self, watched: Path, recursive: bool) -> None:
        in_place = lost = False
        identity = _identity(watched)
        batches = awatch(
            watched,
            watch_filter=self._relevant,
            debounce=self._max_batch_ms,
            step=self._quiet_ms,
            stop_event=self._stop,
            rust_timeout=_TICK_MS,
            yield_on_timeout=True,
            recursive=recursive,
        )
        async with aclosing(batches):
            async for changes in batches:
                if changes:
                    log.debug("config_files_changed", count=len(changes))
                elif in_place:
                    if _identity(watched) == identity:
                        continue  # an idle tick
                    lost = True  # replaced by another folder: the OS watch is on the old one
                # The first yield (often an idle tick) means the OS watch is in place:
                # re-check once to catch changes made before it was.
                in_place = True
                lost = lost or (Change.deleted, str(watched)) in changes
                await self._reload()
                if not self.ready.is_set():
                    self.ready.set()
                    log.debug("config_watch_ready", watched=str(watched))
                if lost:  # the folder went away (maybe already back): watch it anew
                    log.warning("config_watch_lost", watched=str(watched))
                    return

    def _watch_target(self) -> tuple[Path, bool]:
        # Absolute, so the paths in change events compare with it as strings.
        if self._is_dir:
            return self.path.absolute(), True
        return self.path.absolute().parent, False

    def _relevant(self, change: Change, path: str) -> bool:
        if path == self._watched:
            return True  # the watched folder itself went away
        if self._is_dir:
            return bool(_DEFAULT_FILTER(change, path))
        # A symlinked file (e.g. a Kubernetes ConfigMap) changes through its link target.
        return Path(path).name == self.path.name or self.path.is_symlink()

    async def _reload(self) -> None:
        try:
            await self._load_and_hand_over()
        finally:
            self.reloads += 1

    async def _load_and_hand_over(self) -> None:
        try:
            config = await asyncio.to_thread(self._load, self.path)
        except Exception as exc:
            if not isinstance(exc, ConfigError):  # a bug, but the watch must go on
                log.exception("config_reload_failed", path=str(self.path))
                exc = ConfigError([ConfigIssue(str(self.path), None, "", f"cannot load: {exc}")])
            if not self._stop.is_set():
                self._refuse(exc)
            return
        if self._stop.is_set():
            return
        if config == self._last_good:
            if self._last_error is not None:  # the refusal logged at warning is over
                log.info("config_error_cleared", path=str(self.path))
            else:
                log.debug("config_unchanged", path=str(self.path))
            self._last_error = None
            if self._on_unchanged is not None:
                self._call(self._on_unchanged, config)
            return
        try:
            handed_over = self._call(self._on_config, config, may_refuse=True)
        except ConfigError as refusal:  # the caller refuses a config that validates
            self._refuse(refusal)
            return
        self._last_error = None
        if handed_over:
            self._last_good = config  # a failed hand-over is retried on the next change
            log.info(
                "config_changed",
                path=str(self.path),
                service_entries=len(config.service_entries),
                workload_entries=len(config.workload_entries),
            )

    def _refuse(self, error: ConfigError) -> None:
        self._last_error = error
        log.warning("config_rejected", path=str(self.path), issues=len(error.issues))
        self._call(self._on_error, error)

    def _call(
        self, callback: Callable[[_T], None], argument: _T, *, may_refuse: bool = False
    ) -> bool:
        """Run a caller's callback; its bug is logged, and the watch goes on.
        With ``may_refuse``, a :class:`ConfigError` is a refusal: raised on."""
        try:
            callback(argument)
        except Exception as exc:
            if may_refuse and isinstance(exc, ConfigError):
                raise
            log.exception("config_callback_failed", callback=getattr(callback, "__name__", "?"))
            return False
        return True


def _folder_exists(path: Path) -> bool:
    """One stat per idle tick: cheap enough for the event loop."""
    return path.is_dir()


def _identity(path: Path) -> tuple[int, int] | None:
    """Which folder ``path`` is now (device, inode); None when it is gone."""
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_dev, status.st_ino)


_DEFAULT_FILTER = DefaultFilter()
# How often the watch thread comes back when nothing changes: the first tick
# tells us the watch is in place, later ones check the folder is still the same.
_TICK_MS = 200
