"""What a watcher of one xDS resource is told, and in which order.

As in gRPC's xDS clients, a watcher gets three kinds of news, delivered one at
a time, in order, on the xDS client's own thread (never on the request path):

- ``on_changed(resource)``: a new valid version of the resource. Also called
  once, right after ``watch()``, when the resource is already cached.
- ``on_resource_error(error)``: the resource is gone (deleted from a SotW
  response, or the does-not-exist timer fired) — an ``XdsResourceNotFound`` —
  or the first version received was invalid (``XdsValidationError``), so
  there is nothing good to keep.
- ``on_ambient_error(error)``: something went wrong but the last good version
  still stands (stream broke, or a newer version was NACKed). Keep serving.

``XdsClient.watch`` returns a cancel function; calling it twice is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from meshlib.errors import XdsError

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

CancelWatch = Callable[[], None]


class ResourceWatcher(Protocol[T_contra]):
    def on_changed(self, resource: T_contra) -> None: ...

    def on_resource_error(self, error: XdsError) -> None: ...

    def on_ambient_error(self, error: XdsError) -> None: ...


class CallbackWatcher(Generic[T]):
    """A watcher built from plain functions; handy in tests and small glue."""

    def __init__(
        self,
        on_changed: Callable[[T], None],
        on_resource_error: Callable[[XdsError], None] | None = None,
        on_ambient_error: Callable[[XdsError], None] | None = None,
    ) -> None:
        self._changed = on_changed
        self._resource_error = on_resource_error
        self._ambient_error = on_ambient_error

    def on_changed(self, resource: T) -> None:
        self._changed(resource)

    def on_resource_error(self, error: XdsError) -> None:
        if self._resource_error is not None:
            self._resource_error(error)

    def on_ambient_error(self, error: XdsError) -> None:
        if self._ambient_error is not None:
            self._ambient_error(error)
