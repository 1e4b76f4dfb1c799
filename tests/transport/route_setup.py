"""Publish a service with hand-written routes on a FakeXds feed (tests only)."""

from __future__ import annotations

from meshlib.xds_client.resources import (
    NO_HEADER_MUTATIONS,
    HeaderMutations,
    Route,
    RouteConfigResource,
    VirtualHost,
)
from tests.routing.builders import eds_cluster, endpoints, listener
from tests.routing.fake_xds import FakeXds


def serve_routes(
    feed: FakeXds,
    target: str,
    routes: list[Route],
    clusters: dict[str, list[int]],
    *,
    headers: HeaderMutations = NO_HEADER_MUTATIONS,
) -> None:
    """LDS ``target`` → RDS with ``routes`` → one EDS cluster per entry of
    ``clusters`` (name → loopback ports)."""
    host = target.rsplit(":", 1)[0]
    config = RouteConfigResource(
        f"{target}-routes", (VirtualHost("vh", (target, host), tuple(routes), headers=headers),)
    )
    feed.set("rds", config.name, config)
    for name, ports in clusters.items():
        feed.set("cds", name, eds_cluster(name))
        feed.set("eds", name, endpoints(name, [("127.0.0.1", p) for p in ports]))
    feed.set("lds", target, listener(target, config.name))
