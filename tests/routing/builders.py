"""The resource builders now ship in :mod:`meshlib.testing`; kept for the tests' imports."""

from __future__ import annotations

from meshlib.testing import eds_cluster, endpoints, listener, prefix_route, route_config

__all__ = ["eds_cluster", "endpoints", "listener", "prefix_route", "route_config"]
