"""What both commands (``mesh-controlplane``, ``meshctl``) share on their command line:
``--version`` and help texts that show each option's default."""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "meshlib-xds"
# argparse fills in the option's default when it prints --help.
DEFAULT = " (default: %(default)s)"


def distribution_version() -> str:
    """The installed meshlib-xds version ("unknown" when run from a bare checkout)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {distribution_version()}",
        help=f"print the {DISTRIBUTION} version and exit",
    )
