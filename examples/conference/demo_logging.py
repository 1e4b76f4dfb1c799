"""Logging set-up shared by the example's processes.

stdout is kept for what the demo shows (the "serving" line, one line per call),
so structlog (meshlib's and ours) writes to stderr instead.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
}


def configure_logging() -> None:
    """Send structlog output to stderr; level from ``DEMO_LOG_LEVEL`` (default INFO)."""
    level = _LEVELS.get(os.environ.get("DEMO_LOG_LEVEL", "INFO").upper(), logging.INFO)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
