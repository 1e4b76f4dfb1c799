from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.routing.fake_xds import FakeXds


@pytest.fixture
def feed() -> Iterator[FakeXds]:
    fake = FakeXds()
    yield fake
    fake.close()
