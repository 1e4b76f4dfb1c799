from __future__ import annotations

import random

import pytest


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Every balancing test draws from the same seeded global generator."""
    random.seed(20261121)
