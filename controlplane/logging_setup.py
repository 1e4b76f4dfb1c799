"""Log set-up for the control plane process: structlog events on stderr.

stdout is kept for the one machine-readable ``serving`` line; everything
else (our structlog events and stdlib records from aiohttp, asyncio, ...)
is rendered by the same processors, as console text or one JSON per line.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from structlog.typing import Processor

LogFormat = Literal["console", "json"]
# Libraries whose info records are chatter here: httpx logs every etcd call (each heartbeat
# of each workload), watchfiles every change it sees (ours follows as config_changed).
# They log at --log-level debug.
_CHATTY_LIBRARIES = ("httpx", "httpcore", "watchfiles")
LOG_FORMATS: tuple[LogFormat, ...] = ("console", "json")


def _renderer(fmt: LogFormat) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer(sort_keys=True)
    return structlog.dev.ConsoleRenderer(colors=False)


def configure_logging(
    fmt: LogFormat = "console", *, level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr) in one format."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
