"""gRPC status codes as plain ints, so resilience code needs no ``grpc`` import.

The values are the wire values (``grpc.StatusCode.X.value[0]``).
"""

from __future__ import annotations

import enum

from meshlib.errors import ResilienceValueError


class GrpcCode(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


def parse_grpc_code(value: str | int, *, where: str) -> int:
    """A gRPC code from a name (``"UNAVAILABLE"``, ``"unavailable"``) or a number.

    Numbers outside 0..16 are allowed (Envoy's fault header allows any uint32),
    names must be known; ``where`` names the setting in the error.
    """
    if isinstance(value, int):
        if value < 0:
            raise ResilienceValueError(f"{where}: gRPC status {value} is negative")
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        return GrpcCode[text.upper().replace("-", "_")].value
    except KeyError:
        raise ResilienceValueError(f"{where}: unknown gRPC status name {value!r}") from None
