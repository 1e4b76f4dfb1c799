"""What the data path asks of a load balancer: pick one endpoint, now.

A picker is built from one EDS update and replaced (by reference) on the
next; its structure never changes after construction.
"""

from __future__ import annotations

from typing import Protocol

from meshlib.errors import NoHealthyEndpointError
from meshlib.xds_client.resources import Endpoint


class Picker(Protocol):
    """Chooses the endpoint for one request.

    ``request_hash`` is for hash-based policies (ring_hash, maglev); others
    ignore it. Raises :class:`~meshlib.errors.NoHealthyEndpointError`.
    """

    def pick(self, request_hash: int | None = None) -> Endpoint: ...


class FailingPicker:
    """A picker for a cluster that cannot take traffic; says why on every pick."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def pick(self, request_hash: int | None = None) -> Endpoint:
        raise NoHealthyEndpointError(self.reason)
