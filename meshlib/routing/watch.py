"""One xDS watch held by a service, and the xDS client surface it needs.

A :class:`Watch` forwards callbacks to its owner until it is stopped, so a
callback already queued when the watch was cancelled is dropped here rather
than applied to state that has moved on.
"""

from __future__ import annotations

from typing import Any, Protocol

from meshlib.errors import XdsError
from meshlib.observability.logging import get_logger
from meshlib.xds_client.watchers import CancelWatch

log = get_logger(__name__)


class WatchOwner(Protocol):
    target: str

    def watch_changed(self, watch: Watch, resource: object) -> None: ...

    def watch_failed(self, watch: Watch, error: XdsError) -> None: ...


class WatchSource(Protocol):
    """What routing needs from the xDS client: named and wildcard watches, cancellable."""

    def watch(self, resource_type: Any, name: str, watcher: Any) -> CancelWatch: ...

    def watch_all(self, resource_type: Any, watcher: Any) -> CancelWatch: ...


class Watch:
    """Routes one watch's callbacks to the service, dropping them once cancelled."""

    def __init__(self, service: WatchOwner, kind: str, name: str) -> None:
        self.service, self.kind, self.name = service, kind, name
        self.cancel: CancelWatch = lambda: None
        self.active = True

    def stop(self) -> None:
        self.active = False
        self.cancel()

    def on_changed(self, resource: object) -> None:
        if self.active:
            self.service.watch_changed(self, resource)

    def on_resource_error(self, error: XdsError) -> None:
        if self.active:
            self.service.watch_failed(self, error)

    def on_ambient_error(self, error: XdsError) -> None:
        # Debug: the xDS client warns once per lost stream (xds_stream_lost); a warning
        # per watched resource repeated it four times per service the process calls.
        if self.active:
            log.debug(
                "xds_ambient_error",
                service=self.service.target,
                kind=self.kind,
                name=self.name,
                error=str(error),
            )
