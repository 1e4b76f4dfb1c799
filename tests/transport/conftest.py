from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.routing.fake_xds import FakeXds
from tests.transport.recording import Recorder, install_recorder


@pytest.fixture
def feed() -> Iterator[FakeXds]:
    fake = FakeXds()
    yield fake
    fake.close()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Every cluster state built during the test reports to one Recorder."""
    return install_recorder(monkeypatch)
