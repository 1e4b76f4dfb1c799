"""The one error translate raises."""

from __future__ import annotations


class TranslationError(ValueError):
    """The mesh model cannot be turned into xDS; the message names what and where.

    Raised before anything is produced, so a caller keeps its last good
    resources (translate never returns a partial result).
    """
