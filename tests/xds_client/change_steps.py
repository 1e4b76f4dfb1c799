"""Compose in-place protobuf edits for the decoder test tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def all_of(*changes: Callable[[Any], object]) -> Callable[[Any], None]:
    """One change that applies ``changes`` in order to the same message."""

    def change(msg: Any) -> None:
        for step in changes:
            step(msg)

    return change
