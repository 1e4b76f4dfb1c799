"""meshlib is a library: its events go to stdlib logging, never straight to stdout."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from meshlib.observability.logging import get_logger

MESHLIB = Path(__file__).resolve().parents[2] / "meshlib"


def test_debug_events_are_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    get_logger("meshlib.test").debug("xds_ack", type="Listener")
    get_logger("meshlib.test").info("xds_rebuilt", nodes=3)
    captured = capsys.readouterr()
    assert captured.out == ""


def test_events_reach_the_module_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="meshlib"):
        get_logger("meshlib.xds_client.client").debug("xds_ack", type="Listener", version="3")
    (record,) = caplog.records
    assert record.name == "meshlib.xds_client.client"
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == "xds_ack type='Listener' version='3'"


def test_a_private_module_logs_under_its_public_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="meshlib"):
        get_logger("meshlib.routing._membership").info("mesh_services_changed", added=1)
    (record,) = caplog.records
    assert record.name == "meshlib.routing.membership"


def test_exceptions_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="meshlib"):
        try:
            raise ValueError("bad watcher")
        except ValueError:
            get_logger("meshlib.x").exception("watcher_failed", name="a")
    (record,) = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is ValueError


def test_no_meshlib_module_uses_unconfigured_structlog() -> None:
    offenders = [
        str(path.relative_to(MESHLIB))
        for path in MESHLIB.rglob("*.py")
        if re.search(r"structlog\.(get_logger|getLogger)\(", path.read_text())
    ]
    assert offenders == [], "use meshlib.observability.logging.get_logger instead"
