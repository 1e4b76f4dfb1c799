"""meshlib's loggers: structlog events handed to the standard library's logging.

A library must not print. Unconfigured structlog writes every event, debug
included, to stdout; so meshlib binds its own small processor chain and
delivers each event to the stdlib logger named after its module
(``meshlib.xds_client.client``, ...). The application decides what is shown,
as for any library: nothing below WARNING unless it configures logging, and an
application that formats stdlib records with structlog gets them too.

    log = get_logger(__name__)
    log.info("xds_ack", type="Listener", version="3")   # -> "xds_ack type='Listener' version='3'"
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog


def _render(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[str], dict[str, Any]]:
    """``event key=value ...`` as the record's message; exc_info stays the record's."""
    exc_info = event_dict.pop("exc_info", None)
    event = str(event_dict.pop("event", ""))
    fields = " ".join(f"{key}={value!r}" for key, value in event_dict.items())
    message = f"{event} {fields}" if fields else event
    return (message,), ({"exc_info": exc_info} if exc_info else {})


_PROCESSORS = (structlog.stdlib.filter_by_level, _render)


def logger_name(module: str) -> str:
    """The stdlib logger a module logs to: its name without the private-module marks
    (``meshlib.routing._membership`` logs as ``meshlib.routing.membership``), so the
    names users configure do not change when a module goes private."""
    return ".".join(part.lstrip("_") or part for part in module.split("."))


def get_logger(name: str) -> Any:
    """A structlog logger for module ``name`` that writes to the stdlib logger
    :func:`logger_name` gives."""
    return structlog.wrap_logger(
        logging.getLogger(logger_name(name)),
        processors=list(_PROCESSORS),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
