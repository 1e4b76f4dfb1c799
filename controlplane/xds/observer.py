"""Stream callbacks: what the xDS server tells an observer (metrics) as it works.

As go-control-plane's stream callbacks, one seam for everything that watches
the protocol without taking part in it. Calls happen on the event loop, in
protocol order per stream, and must not block.
"""

from __future__ import annotations

from typing import Protocol

from controlplane.xds.subscription import Rejection, Sent


class XdsObserver(Protocol):
    def change_accepted(self) -> None:
        """A config or registration change was accepted; a rebuild follows."""

    def rebuilt(self, ok: bool) -> None:
        """A rebuild finished: ``ok`` False when it was refused (no client got it)."""

    def stream_opened(self, stream: object, kind: str) -> None:
        """A stream named its node; ``kind`` is meshlib / grpc / envoy / unknown."""

    def stream_closed(self, stream: object) -> None:
        """A stream that had opened ended."""

    def sent(self, stream: object, type_url: str, sent: Sent, *, push: bool) -> None:
        """A response went out; ``push`` when a new snapshot caused it (not a request)."""

    def send_failed(self, stream: object, type_url: str) -> None:
        """A response could not be written to the client."""

    def acked(self, stream: object, type_url: str, sent: Sent) -> None:
        """The client ACKed ``sent``."""

    def nacked(self, stream: object, type_url: str, rejection: Rejection) -> None:
        """The client NACKed a response."""


class NullObserver:
    """Observes nothing (the default)."""

    def change_accepted(self) -> None:
        pass

    def rebuilt(self, ok: bool) -> None:
        pass

    def stream_opened(self, stream: object, kind: str) -> None:
        pass

    def stream_closed(self, stream: object) -> None:
        pass

    def sent(self, stream: object, type_url: str, sent: Sent, *, push: bool) -> None:
        pass

    def send_failed(self, stream: object, type_url: str) -> None:
        pass

    def acked(self, stream: object, type_url: str, sent: Sent) -> None:
        pass

    def nacked(self, stream: object, type_url: str, rejection: Rejection) -> None:
        pass


def client_kind(user_agent_name: str) -> str:
    """meshlib / grpc / envoy from ``node.user_agent_name``, else unknown."""
    name = user_agent_name.strip().lower()
    if name == "meshlib":
        return "meshlib"
    if name.startswith("grpc") or " grpc" in name:
        return "grpc"
    if name == "envoy":
        return "envoy"
    return "unknown"
