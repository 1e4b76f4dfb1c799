"""Errors of the xDS serving side."""

from __future__ import annotations


class SnapshotError(ValueError):
    """A snapshot was refused; nothing was set."""


class InconsistentSnapshotError(SnapshotError):
    """A listener names a route table, or a cluster an EDS resource, that the
    snapshot does not hold. The message lists every missing reference."""
