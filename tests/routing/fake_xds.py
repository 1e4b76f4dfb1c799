"""The xDS test double now ships as :mod:`meshlib.testing`; kept for the tests'
imports."""

from __future__ import annotations

from meshlib.testing import KINDS, FakeXds

__all__ = ["KINDS", "FakeXds"]
