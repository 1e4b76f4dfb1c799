"""What the transports need of a mesh: its service directory and how long to wait.

The transports are built from this, not from :class:`meshlib.Mesh` (which builds
them), so the transport package never imports the mesh: a ``Mesh`` is one
:class:`MeshServices`, a test's directory with a timeout is another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from meshlib.routing.directory import ServiceDirectory

if TYPE_CHECKING:
    from meshlib.security.keeper import CertificateKeeper


class MeshServices(Protocol):
    """The service directory the transports route with, how long a request waits
    for a service's first config, and the workload's certificate."""

    @property
    def directory(self) -> ServiceDirectory: ...

    @property
    def ready_timeout_s(self) -> float: ...

    @property
    def certificates(self) -> CertificateKeeper | None:
        """The workload's certificate (presented on every endpoint connection), or None
        when the mesh has no identity (plaintext)."""
        ...


__all__ = ["MeshServices"]
